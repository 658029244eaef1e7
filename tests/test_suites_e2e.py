"""End-to-end: real suites on the digits data, run through pytest and the CLI in subprocesses."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from suite_runner import run, write_suite

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def cold(tmp_path_factory):
    """One cold run of the tiny suite; later tests reuse its store."""
    folder = tmp_path_factory.mktemp("e2e")
    write_suite(folder, shifts=("contrast@3", "uniform_noise@0.1"))
    store = folder / "store"
    result = run(["-m", "pytest", "suite_tiny.py", f"--rp-store={store}", "--junitxml=junit.xml",
                  "--rp-report=report"], cwd=folder)
    return folder, store, result


def test_cold_run_passes_and_reports(cold):
    folder, _, result = cold
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    out = result.stdout
    assert "training the parent" in out  # progress says what it does
    assert "robustprune report" in out
    assert re.search(r"^wt\s+\d", out, re.M), out[-2000:]
    # JUnit XML carries one test case per check, with the grid in the id
    cases = [c.get("name") for c in ET.parse(folder / "junit.xml").getroot().iter("testcase")]
    assert "test_shift[wt-small_cnn-digits-contrast@3]" in cases
    assert "test_shift[wt-small_cnn-digits-uniform_noise@0.1]" in cases
    assert "test_nominal[wt-small_cnn-digits]" in cases


def test_report_files_hold_curves_and_keys(cold):
    folder, _, _ = cold
    data = json.loads((folder / "report" / "robustprune-report.json").read_text())
    (suite,) = data["suites"]
    (case,) = suite["cases"]
    assert case["id"] == "wt-small_cnn-digits"
    assert case["ratios"] == [0.3, 0.6]
    assert all(abs(a - r) <= 0.005 * r for a, r in zip(case["achieved_ratios"], case["ratios"]))
    assert set(case["accuracy"]) == {"nominal", "contrast@3", "uniform_noise@0.1"}
    assert all(len(v) == 3 for v in case["accuracy"].values())  # parent + two ratios
    assert len(case["parent_key"]) == 64 and len(case["step_keys"]) == 2
    markdown = (folder / "report" / "robustprune-report.md").read_text()
    assert "| wt " in markdown


def test_warm_run_computes_nothing(cold):
    folder, store, first = cold
    result = run(["-m", "pytest", "suite_tiny.py", f"--rp-store={store}"], cwd=folder)
    assert result.returncode == 0, result.stdout[-3000:]
    for work in ("training the parent", "retrain", "generating", "evaluating"):
        assert work not in result.stdout
    table = lambda text: text[text.index("robustprune report"):].splitlines()[1:8]  # noqa: E731
    assert table(result.stdout) == table(first.stdout)


def test_cli_run_takes_pytest_options(cold):
    folder, store, _ = cold
    result = run(["-m", "robustprune.cli", "run", "suite_tiny.py", "--store", str(store), "-k", "nominal", "-q"],
                 cwd=folder)
    assert result.returncode == 0, result.stdout[-3000:]
    assert re.search(r"\b1 passed, 4 deselected\b", result.stdout), result.stdout[-1000:]


def test_failed_gate_names_the_numbers(cold):
    folder, store, _ = cold
    write_suite(folder, "suite_strict.py", shifts=("contrast@3", "uniform_noise@0.1"), nominal_gate=0.7)
    result = run(["-m", "pytest", "suite_strict.py", f"--rp-store={store}"], cwd=folder)
    assert result.returncode == 1
    assert re.search(r"prune potential 0\.\d\d \[0\.\d\d, 0\.\d\d\] \(1 repeat, 95 %\) under nominal < required 0\.70 "
                     r"\(delta 0\.5 %\)", result.stdout)
    assert "FAIL (1/5 checks)" in result.stdout


def test_damaged_store_entry_is_recomputed(cold):
    folder, store, first = cold
    networks = sorted((store / "network").rglob("*.pt"))
    victim = networks[0]
    victim.write_bytes(victim.read_bytes()[:100])  # truncated, as by a full disk
    result = run(["-m", "pytest", "suite_tiny.py", f"--rp-store={store}", "-W", "always"], cwd=folder)
    assert result.returncode == 0, result.stdout[-3000:]
    assert "is damaged" in result.stdout + result.stderr
    assert victim.stat().st_size > 100
    # evaluations are keyed by network: unchanged networks reuse them; results match the first run
    table = lambda text: text[text.index("robustprune report"):].splitlines()[1:8]  # noqa: E731
    assert table(result.stdout) == table(first.stdout)


BOOM_PLUGIN = """
from robustprune import PruneMethod, hookimpl

class Boom(PruneMethod):
    name = "boom"
    def prune(self, network, ratio, context):
        raise RuntimeError("kaboom")

@hookimpl
def robustprune_register_methods(register):
    register(Boom())
"""


def test_plugin_crash_fails_only_its_checks(cold):
    folder, store, _ = cold
    (folder / "boom_plugin.py").write_text(BOOM_PLUGIN)
    write_suite(folder, "suite_boom.py", methods=("wt", "boom"), plugins=("boom_plugin",))
    result = run(["-m", "pytest", "suite_boom.py", f"--rp-store={store}", "-rA"], cwd=folder)
    assert result.returncode == 1
    assert "method 'boom' raised at ratio 0.3: RuntimeError: kaboom" in result.stdout
    assert re.search(r"PASSED suite_boom.py::test_nominal\[wt-small_cnn-digits\]", result.stdout)
    assert re.search(r"ERROR suite_boom.py::test_nominal\[boom-small_cnn-digits\]", result.stdout)
    assert re.search(r"^boom\s.*\berror\b", result.stdout, re.M)


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("methods", ["wtt"], "unknown method 'wtt'; did you mean 'wt'?"),
        ("models", ["small_cn"], "unknown model 'small_cn'; did you mean 'small_cnn'?"),
        ("datasets", ["digit"], "unknown dataset 'digit'; did you mean 'digits'?"),
        ("shifts", ["contrast@9"], "severity must be an integer from 1 to 5, got 9"),
        ("shifts", ["uniform_noise@-1"], "eps must be a number >= 0, got -1"),
        ("shifts", ["contrst@3"], "unknown shift 'contrst'; did you mean 'contrast'?"),
    ],
)
def test_bad_names_fail_at_collection(tmp_path, field, value, message):
    suite = tmp_path / "suite_bad.py"
    suite.write_text(
        "from robustprune import Suite\n"
        "suite = Suite(**{**dict(models=['small_cnn'], datasets=['digits'], methods=['wt']), "
        f"{field!r}: {value!r}}})\n"
        "def test_x(case):\n    assert case.prune_potential() >= 0\n"
    )
    result = run(["-m", "pytest", str(suite), f"--rp-store={tmp_path / 'store'}"], cwd=tmp_path)
    assert result.returncode == 2  # pytest's "interrupted": a collection error
    assert message in result.stdout, result.stdout[-2000:]
    assert not (tmp_path / "store").exists()  # nothing was computed


def test_missing_suite_file(tmp_path):
    result = run(["-m", "robustprune.cli", "run", "no_such_suite.py"], cwd=tmp_path)
    assert result.returncode != 0
    assert "suite file 'no_such_suite.py' not found" in result.stderr


def test_suites_folder_holds_the_packaged_quickstart():
    packaged = REPO / "robustprune" / "suites" / "quickstart.py"
    assert (REPO / "suites" / "quickstart.py").read_text() == packaged.read_text()
