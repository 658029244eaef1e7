"""End to end: a user's own project (docs/example-project) gates a deploy ratio and exports what passed.

The project is copied to a temporary folder; its own script trains the parent
and prunes it with torch.nn.utils.prune; robustprune then runs suites that name
the project's model and dataset through a local plugin module, the parent and
pruned checkpoints, and a deploy gate, in subprocesses as a user would.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from suite_runner import run

import robustprune
from robustprune.compute.data import prepare
from robustprune.compute.store import Store

pytestmark = pytest.mark.slow

EXAMPLE = Path(__file__).resolve().parents[1] / "docs" / "example-project"

SUITE = """
from robustprune import DeployGate, Suite

suite = Suite(
    models=["mynet"],
    datasets=["mydigits"],
    methods=["wt", "ft"],
    shifts=["noise@3"],
    ratios=[0.5, 0.8],
    retrain_epochs=1,
    plugins=["robustprune_local"],
    dataset_params={{"mydigits": {{"root": "../data"}}}},
    parent_checkpoints={{"mynet": "../checkpoints/parent.pt"}},
    pruned_checkpoints={{"ours": {{"model": "mynet", "path": "../checkpoints/pruned.pt"}}}},
    gate=DeployGate(ratio={{"wt": 0.8, "ft": 0.5, "ours": 0.5}}, shifts=["nominal", "noise@3"],
                    max_accuracy_loss={limit!r}),
)


def test_nominal_prune_potential(case):
    assert case.prune_potential() >= 0.0
"""


def gate_run(project: Path, name: str, limit: float, *extra: str):
    (project / "robustness" / name).write_text(SUITE.format(limit=limit))
    # the full-width report: the checks below read its notes as whole lines
    return run(["-m", "robustprune.cli", "run", f"robustness/{name}", "--store", "store", "--workers", "1",
                "--export", "exported", "--report", f"report-{name[:-3]}", "-rA", "--width", "0", *extra],
               cwd=project)


def report_rows(project: Path, name: str) -> dict[str, dict]:
    data = json.loads((project / f"report-{name[:-3]}" / "robustprune-report.json").read_text())
    (suite,) = data["suites"]
    rows = {row["case"]: row for table in suite["tables"] for row in table["rows"]}
    cases = {case["id"]: case for case in suite["cases"]}
    return {cid: {**rows[cid], "curves": cases[cid]} for cid in rows}


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    folder = tmp_path_factory.mktemp("user") / "project"
    shutil.copytree(EXAMPLE, folder, ignore=shutil.ignore_patterns("data", "checkpoints", "__pycache__"))
    made = run(["train.py", "--epochs", "6", "--finetune-epochs", "1"], cwd=folder)
    assert made.returncode == 0, made.stdout + made.stderr
    return folder


@pytest.fixture(scope="module")
def loose(project):
    """Every case passes a gate that tolerates any loss: all three networks are exported."""
    result = gate_run(project, "gate_loose.py", 0.99)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    return result


def test_loose_gate_passes_every_case_and_skips_prune_potential_of_the_checkpoint(loose):
    out = loose.stdout
    for case in ("wt", "ft", "ours"):
        assert f"PASSED robustness/gate_loose.py::deploy_gate[{case}-mynet-mydigits]" in out
    assert "PASSED robustness/gate_loose.py::test_nominal_prune_potential[wt-mynet-mydigits]" in out
    assert "SKIPPED" in out and "prune potential: n/a for ours-mynet-mydigits (single network" in out
    assert "prune potential: n/a (single network)" in out  # the report's note under the table
    assert "gate pass: accuracy loss" in out


def test_pruned_checkpoint_is_evaluated_against_its_parent(project, loose):
    row = report_rows(project, "gate_loose.py")["ours-mynet-mydigits"]
    assert row["single_network"] and row["nominal_prune_potential"] is None
    assert all(g["mean"] is None for g in row["groups"].values())
    # sparsity as measured independently from the file torch.nn.utils.prune wrote
    state = torch.load(project / "checkpoints" / "pruned.pt", weights_only=True)
    weights = [state[k.replace("_mask", "_orig")] * state[k] for k in state if k.endswith("weight_mask")]
    assert len(weights) == 4  # train.py prunes every Conv2d and Linear weight of MyNet
    zeros = sum(int((w == 0).sum()) for w in weights)
    assert row["pruned_checkpoint"]["sparsity"] == pytest.approx(zeros / sum(w.numel() for w in weights))
    assert row["pruned_checkpoint"]["layout"] == "torch.nn.utils.prune"
    accuracy = row["curves"]["accuracy"]
    assert set(accuracy) == {"nominal", "gaussian_noise@3", "shot_noise@3", "impulse_noise@3"}
    gate = row["gate"]
    for label, numbers in gate["shifts"].items():
        parent, pruned = accuracy[label]
        assert numbers["accuracy_loss"] == pytest.approx(parent - pruned)
        if label != "nominal":  # delta excess error from the curves, by its definition
            expected = ((1 - pruned) - (1 - accuracy["nominal"][1])) - ((1 - parent) - (1 - accuracy["nominal"][0]))
            assert numbers["delta_excess_error"] == pytest.approx(expected)


def _load_test_inputs(project: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """The project's test set, normalised as its plugin declares, read with the project's own code."""
    sys.path[:0] = [str(project), str(project / "robustness")]
    try:
        import robustprune_local

        from robustprune import DatasetRequest

        splits = robustprune_local.load_mydigits(DatasetRequest(root=project / "data"))
    finally:
        del sys.path[:2]
    data = prepare("mydigits", "test", splits)
    return data.normalize(splits.test.images), data.test_labels


def _mynet(project: Path):
    sys.path.insert(0, str(project))
    try:
        from mynet import MyNet
    finally:
        sys.path.remove(str(project))
    return MyNet(10)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("case_id", ["wt-mynet-mydigits", "ft-mynet-mydigits", "ours-mynet-mydigits"])
def test_exported_network_reloads_to_the_evaluated_one(project, loose, case_id):
    folder = project / "exported" / case_id
    sidecar = json.loads((folder / "network.json").read_text())
    row = report_rows(project, "gate_loose.py")[case_id]
    assert sidecar["case"] == case_id and sidecar["method"] == case_id.split("-")[0]
    assert sidecar["robustprune_version"] == robustprune.__version__
    assert sidecar["suite"] == str(project / "robustness" / "gate_loose.py")
    assert sidecar["parent"]["sha256"] == _sha256(project / "checkpoints" / "parent.pt")
    assert sidecar["gate"]["passed"] and sidecar["gate"] == row["gate"]
    index = row["curves"]["step_keys"].index(sidecar["network_store_key"])
    assert sidecar["ratio_achieved"] == row["curves"]["achieved_ratios"][index]
    for label, numbers in sidecar["shifts"].items():
        assert numbers["accuracy"] == row["curves"]["accuracy"][label][index + 1]
    assert sidecar["files"]["state_dict"]["sha256"] == _sha256(folder / "network.pt")

    inputs, labels = _load_test_inputs(project)
    evaluated = _mynet(project)
    evaluated.load_state_dict(Store(project / "store").load("network", sidecar["network_store_key"])["state"])
    exported = _mynet(project)
    exported.load_state_dict(torch.load(folder / "network.pt", weights_only=True))
    with torch.no_grad():
        expected, got = evaluated.eval()(inputs), exported.eval()(inputs)
    assert torch.equal(got, expected)
    # and it is the network whose accuracy the report shows
    assert float((got.argmax(1) == labels).float().mean()) == pytest.approx(sidecar["shifts"]["nominal"]["accuracy"])

    if case_id.startswith("ft"):  # structured: the compacted network as well, smaller and equal up to rounding
        compacted = sidecar["files"]["compacted"]
        assert compacted["sha256"] == _sha256(folder / "compacted.pt2")
        program = torch.export.load(str(folder / "compacted.pt2")).module()
        with torch.no_grad():
            assert torch.allclose(program(inputs), expected, atol=1e-4, rtol=1e-4)
        assert compacted["params"] < sum(p.numel() for p in evaluated.parameters())
    else:
        assert sidecar["files"].get("compacted") is None and not (folder / "compacted.pt2").exists()


def test_strict_gate_fails_naming_the_worst_shift_and_exports_nothing_for_it(project, loose):
    rows = report_rows(project, "gate_loose.py")
    worst = {cid: next(c for c in row["gate"]["checks"] if c["what"] == "accuracy loss") for cid, row in rows.items()}
    victim = max(worst, key=lambda cid: worst[cid]["value"])
    loss, shift = worst[victim]["value"], worst[victim]["shift"]
    assert loss > 0.004, f"the setup needs a case that loses accuracy somewhere: {worst}"
    limit = math.floor(loss * 1000 - 1) / 1000  # a round limit at least 0.1 point below the worst loss

    result = gate_run(project, "gate_strict.py", limit)
    assert result.returncode == 1, result.stdout[-3000:]
    name = victim.split("-")[0]
    where = f"at ratio {rows[victim]['gate_ratio']:g}" if name != "ours" else "at sparsity"
    head = f"deploy gate failed for {name} {where}"
    assert head in result.stdout
    shown_limit = f"{limit * 100:.1f}".rstrip("0").rstrip(".")  # limits print without trailing zeros
    assert f"accuracy loss {loss * 100:.1f} % under {shift} > limit {shown_limit} %" in result.stdout
    assert f"FAILED robustness/gate_strict.py::deploy_gate[{victim}]" in result.stdout
    assert "gate FAIL: accuracy loss" in result.stdout  # the verdict column
    strict_rows = report_rows(project, "gate_strict.py")
    assert strict_rows[victim]["verdict"].startswith("FAIL") and not strict_rows[victim]["gate"]["passed"]

    # the export folder of the loose run held the victim: removed, so that it holds only what passed now
    assert not (project / "exported" / victim).exists()
    assert f"removed the earlier export {project / 'exported' / victim}" in result.stdout
    for cid, row in strict_rows.items():
        assert (project / "exported" / cid / "network.json").is_file() == row["gate"]["passed"]


def test_unwritable_export_folder_fails_before_any_work(project):
    (project / "not_a_folder").write_text("")
    result = run(["-m", "robustprune.cli", "run", "robustness/deploy_gate.py", "--store", "fresh-store",
                  "--export", "not_a_folder/exported"], cwd=project)
    assert result.returncode == 6, result.stdout + result.stderr  # ExitStatus.ENVIRONMENT_ERROR
    output = result.stdout + result.stderr
    assert "export folder" in output and "cannot be written: Not a directory" in output
    assert not (project / "fresh-store").exists()


def test_the_ci_workflow_is_a_valid_github_workflow(project):
    pytest.importorskip("check_jsonschema")
    workflow = project / ".github" / "workflows" / "robustness-gate.yml"
    result = run(["-m", "check_jsonschema", "--builtin-schema", "vendor.github-workflows", str(workflow)],
                 cwd=project)
    assert result.returncode == 0, result.stdout + result.stderr
    text = workflow.read_text()
    # the store is saved after the gate even when it failed, under the key the restore step computed
    assert "actions/cache/restore@v4" in text and "actions/cache/save@v4" in text
    save = text[text.index("name: Save the artifact store"):]
    assert save.index("if: always()") < save.index("uses: actions/cache/save@v4")
    assert text.index("name: Run the deploy gate") < text.index("name: Save the artifact store")
    # the install step names what to set instead of installing a version the index does not have
    yaml = pytest.importorskip("yaml")
    steps = {s.get("name"): s for s in yaml.safe_load(text)["jobs"]["gate"]["steps"]}
    guard = steps["Install"]["run"].splitlines()[0]
    unset = subprocess.run(["bash", "-c", guard], capture_output=True, text=True,
                           env={k: v for k, v in os.environ.items() if k != "ROBUSTPRUNE"})
    assert unset.returncode == 1 and "set the repository variable ROBUSTPRUNE_REQUIREMENT" in unset.stdout
    assert "==" not in yaml.safe_load(text)["jobs"]["gate"]["env"]["ROBUSTPRUNE"]


def test_the_ci_workflow_gate_step_gates_and_exports(project):
    """The workflow of docs/ci-recipe.md: its gate command, its exit status and the folders its uploads name."""
    yaml = pytest.importorskip("yaml")
    workflow = yaml.safe_load((project / ".github" / "workflows" / "robustness-gate.yml").read_text())
    steps = {step.get("name"): step for step in workflow["jobs"]["gate"]["steps"]}
    command = shlex.split(steps["Run the deploy gate"]["run"])
    assert command[:2] == ["robustprune", "run"]
    shutil.rmtree(project / "exported", ignore_errors=True)  # left by the other tests of this module

    summary = project / "step-summary.md"  # what GitHub gives the step as $GITHUB_STEP_SUMMARY
    summary.unlink(missing_ok=True)
    command = [arg.replace("$GITHUB_STEP_SUMMARY", str(summary)) for arg in command]
    result = run(["-m", "robustprune.cli", *command[1:], "--workers", "1"], cwd=project)
    assert "mynet on mydigits" in summary.read_text() and "| wt " in summary.read_text()  # the run's page
    data = json.loads((project / "reports" / "robustprune-report.json").read_text())
    rows = {row["case"]: row for table in data["suites"][0]["tables"] for row in table["rows"]}
    assert set(rows) == {"wt-mynet-mydigits", "ft-mynet-mydigits", "ours-mynet-mydigits"}
    passed = {cid for cid, row in rows.items() if row["verdict"] == "pass"}
    assert all(rows[cid]["gate"]["passed"] for cid in passed)
    # the job fails exactly when a gate (or another check) fails
    assert result.returncode == (0 if passed == set(rows) else 1), result.stdout[-3000:]
    exported = project / steps["Upload the deployable networks"]["with"]["path"]
    assert {p.name for p in exported.iterdir()} == passed
    report_folder = project / steps["Upload the report"]["with"]["path"]
    assert {"robustprune-report.md", "junit.xml"} <= {p.name for p in report_folder.iterdir()}

    # the next run restores this store from the cache; its verify step reads it back
    store = command[command.index("--store") + 1]
    verify = steps["Verify the restored store"]
    assert steps["Restore the artifact store"]["with"]["path"] == store
    assert "if" not in verify  # always: a cold cache (no store) verifies as nothing to distrust
    verified = run(["-m", "robustprune.cli", *shlex.split(verify["run"])[1:]], cwd=project)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert re.search(r"store \S+: (\d+) entries read back, \1 sound", verified.stdout), verified.stdout
