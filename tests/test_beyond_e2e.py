"""End-to-end: similarity, features, robust training and figures in real (tiny) suites, run in subprocesses."""

from __future__ import annotations

import importlib.util
import json
import re

import pytest
from suite_runner import run

pytestmark = pytest.mark.slow

SUITE = """
from robustprune import Features, ShiftMix, Similarity, Suite

suite = Suite(
    models=["small_cnn"],
    datasets=["digits"],
    methods=["wt"],
    shifts=["contrast@3", "uniform_noise@0.1"],
    ratios=[0.3, 0.6],
    gate_ratio=0.3,
    recipe={{"epochs": 2}},
    retrain_epochs=1,
    {extra}
)


def test_agreement(case):
    assert case.agreement(0.2) >= {agreement}


def test_features(case):
    assert 0 <= case.feature_overlap() <= 1
    assert 0 <= case.cross_confidence("parent") <= 1
"""

BEYOND = ('similarity=Similarity(eps=(0.0, 0.1, 0.2), images=60, draws=2, baseline=True),\n'
          '    features=Features(images=4, patch=8, max_forward=60),')


def _table(text: str) -> list[str]:
    """The report as printed: from the suite line to the end of the last table."""
    lines = []
    for line in text[text.index("robustprune report"):].splitlines()[1:]:
        if line.startswith(("report written", "=")):
            break
        lines.append(line)
    return lines


@pytest.fixture(scope="module")
def cold(tmp_path_factory):
    folder = tmp_path_factory.mktemp("beyond")
    (folder / "suite_beyond.py").write_text(SUITE.format(extra=BEYOND, agreement=0.0))
    store = folder / "store"
    result = run(["-m", "pytest", "suite_beyond.py", f"--rp-store={store}", "--rp-report=report"], cwd=folder)
    return folder, store, result


def test_report_holds_similarity_features_and_series(cold):
    folder, _, result = cold
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "training the parent (2 epochs)" in result.stdout
    assert "[small_cnn-digits-seed1] training the parent" in result.stdout  # the separately trained parent
    data = json.loads((folder / "report" / "robustprune-report.json").read_text())
    (suite,) = data["suites"]
    (case,) = suite["cases"]
    sim = case["similarity"]
    assert sim["eps"] == [0.0, 0.1, 0.2] and sim["images"] == 60 and sim["draws"] == 2
    (pruned,) = sim["pruned"]
    assert pruned["ratio"] == 0.3 and len(pruned["agreement"]) == 3
    assert all(0 <= a <= 1 for a in pruned["agreement"] + sim["baseline"]["agreement"])
    assert sim["baseline"]["seed"] == 1 and sim["baseline"]["key"] != case["parent_key"]
    assert case["features"]["patches"] == 16 and 0 <= case["features"]["overlap"] <= 1
    assert case["series"]["noise"]["uniform_noise"]["eps"] == [0.0, 0.1]
    assert set(case["series"]["per_shift"]) == {"contrast@3"}
    assert suite["shift_kinds"]["uniform_noise@0.1"] == "tensor"
    assert "functional similarity to the parent" in result.stdout and "informative features" in result.stdout
    if importlib.util.find_spec("matplotlib") is not None:
        figures = sorted(p.name for p in (folder / "report" / "figures").glob("*.png"))
        assert figures == sorted(f"small_cnn-digits-{k}.png" for k in (
            "accuracy", "prune-potential-vs-noise", "delta-excess-error", "prune-potential-per-shift", "similarity"))
        assert "![small_cnn-digits-similarity](figures/small_cnn-digits-similarity.png)" in \
            (folder / "report" / "robustprune-report.md").read_text()


def test_warm_run_recomputes_nothing_and_report_rerenders_the_same_tables(cold):
    folder, store, first = cold
    result = run(["-m", "pytest", "suite_beyond.py", f"--rp-store={store}"], cwd=folder)
    assert result.returncode == 0, result.stdout[-3000:]
    for work in ("training the parent", "functional similarity:", "informative features of", "retrain"):
        assert work not in result.stdout
    assert _table(result.stdout) == _table(first.stdout)
    rendered = run(["-m", "robustprune.cli", "report", "report/robustprune-report.json", "--no-figures"], cwd=folder)
    assert rendered.returncode == 0, rendered.stderr
    assert rendered.stdout.splitlines() == _table(first.stdout)


def test_failed_agreement_names_the_numbers(cold):
    folder, store, _ = cold
    (folder / "suite_strict.py").write_text(SUITE.format(extra=BEYOND, agreement=1.01))
    result = run(["-m", "pytest", "suite_strict.py", f"--rp-store={store}"], cwd=folder)
    assert result.returncode == 1
    assert re.search(r"top-1 agreement with the parent \d\.\d{3} under uniform noise eps 0\.2 at ratio 0\.3 < "
                     r"required 1\.010 \(60 images x 2 draws\)", result.stdout), result.stdout[-2000:]


def test_robust_training_reports_train_and_test_distributions(tmp_path):
    extra = 'train_shifts=ShiftMix(("contrast", "motion_blur"), pool=1), held_out=["fog", "snow"],'
    (tmp_path / "suite_robust.py").write_text(
        SUITE.format(extra=extra, agreement=0.0).split("def test_agreement")[0]
        + "def test_test_distribution(case):\n    assert case.test_distribution.min_prune_potential >= 0\n")
    result = run(["-m", "pytest", "suite_robust.py", "--rp-width=0", f"--rp-store={tmp_path / 'store'}",
                  "--rp-report=report"], cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "generating 1 corrupted copy of 1437 training images" in result.stdout
    (suite,) = json.loads((tmp_path / "report" / "robustprune-report.json").read_text())["suites"]
    assert suite["shifts"] == ["contrast@3", "uniform_noise@0.1", "train_shifts@3", "held_out@3"]
    (row,) = suite["tables"][0]["rows"]
    assert set(row["groups"]["train_shifts@3"]["members"]) == {"contrast@3", "motion_blur@3"}
    assert set(row["groups"]["held_out@3"]["members"]) == {"fog@3", "snow@3"}
    assert suite["robust_training"]["members"] == ["contrast", "motion_blur"]
    assert "P held_out@3 %" in result.stdout and "robust training: parents and retrains" in result.stdout
    log = (tmp_path / "store" / "work.log").read_text()
    assert log.count(" train_pool ") == 1
