"""The paper's resnet20 / CIFAR-10 suites, run as users run them: skipped without CIFAR-10, and end to end
on tiny CIFAR files written in the real formats (few epochs, two ratios, two shifts)."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from ondisk_formats import write_cifar10, write_corruption_arrays
from suite_runner import run, run_shrunk_suite, skip_without_data

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
SUITES = ("resnet20_cifar10.py", "resnet20_cifar10_cpu.py")
PAPER_METHODS = ("wt", "sipp", "ft", "pfp")


@pytest.mark.parametrize("suite", SUITES)
def test_skipped_with_a_reason_when_cifar10_is_not_on_disk(tmp_path, suite):
    empty, output, reason = skip_without_data(REPO / "suites" / suite, tmp_path)
    assert "1 skipped" in output
    assert f"looked for {empty / 'cifar-10-batches-py'}" in reason
    for how in ("--rp-data DIR", "ROBUSTPRUNE_DATA=DIR", "--rp-download"):
        assert how in reason


def test_skip_reason_without_any_data_root(tmp_path):
    result = run(["-m", "pytest", str(REPO / "suites" / SUITES[0]), "-rs", "-p", "no:cacheprovider"], cwd=tmp_path)
    assert result.returncode == 5 and "no data root is set" in result.stdout, result.stdout[-2000:]


def _registered_methods() -> list[str]:
    from robustprune.plugin.host import create_host
    from robustprune.plugin.registry import Registry

    names = Registry(create_host([])).names("method")
    return [m for m in PAPER_METHODS if m in names]


def test_resnet20_suite_end_to_end_on_tiny_cifar_files(tmp_path):
    data = tmp_path / "data"
    written = write_cifar10(data)
    write_corruption_arrays(data / "CIFAR-10-C", written["test_images"], written["test_labels"], names=("contrast",))
    methods = _registered_methods()
    assert {"wt", "ft"} <= set(methods)
    # the real suite file, its grid shrunk: two ratios, two shifts (one published, one generated), few epochs, one
    # parent (repeats are tested end to end in test_repeats_e2e.py); the structured networks are compacted and
    # counted but not timed (a third of this test's time; timing: test_latency.py, test_methods_doc_example.py)
    result = run_shrunk_suite(REPO / "suites" / SUITES[0], tmp_path,
                              f"methods={methods!r}, ratios=[0.3, 0.6], gate_ratio=0.3, shifts=['contrast@3', "
                              "'uniform_noise@0.1'], recipe={'epochs': 2}, retrain_epochs=1, repeats=1, noise_draws=1",
                              "--no-latency")
    # the gates compare with the paper's numbers, which two epochs on 200 images cannot reach: 0 or 1, never an error
    assert result.returncode in (0, 1), result.stdout[-3000:] + result.stderr[-2000:]
    cases = list(ET.parse(tmp_path / "junit.xml").getroot().iter("testcase"))
    assert not [c for c in cases if c.find("error") is not None], result.stdout[-3000:]
    names = {c.get("name") for c in cases}
    for method in methods:
        assert f"test_nominal_prune_potential_reproduces_the_paper[{method}-resnet20-cifar10]" in names
        assert f"test_delta_excess_error_at_gate[{method}-resnet20-cifar10-contrast@3]" in names
        assert f"test_delta_excess_error_at_gate[{method}-resnet20-cifar10-uniform_noise@0.1]" in names

    report = json.loads((tmp_path / "report" / "robustprune-report.json").read_text())
    (suite_report,) = report["suites"]
    (table,) = suite_report["tables"]
    assert [row["method"] for row in table["rows"]] == methods
    assert not [row for row in table["rows"] if "error" in row]
    assert table["shift_sources"] == {"contrast@3": f"published: {data / 'CIFAR-10-C' / 'contrast.npy'}",
                                      "uniform_noise@0.1": "generated"}
    for case in suite_report["cases"]:
        assert case["ratios"] == [0.3, 0.6]
        assert all(abs(a - r) <= 0.005 * r for a, r in zip(case["achieved_ratios"], case["ratios"]))
        assert set(case["accuracy"]) == {"nominal", "contrast@3", "uniform_noise@0.1"}
        assert all(len(curve) == 3 for curve in case["accuracy"].values())
        if case["method"]["structured"]:  # compacted (fewer parameters at the higher ratio), not timed
            assert [c.get("timed") for c in case["costs"]] == [False] * 3
            assert case["costs"][0]["params"] > case["costs"][1]["params"] > case["costs"][2]["params"]
    assert "shift sources: published, read from" in result.stdout
    assert "training the parent (2 epochs)" in result.stdout
