"""The terminal report fits the width it is given; the Markdown keeps every number.

``data/quickstart-report.json.gz`` is a real quickstart report (suites/quickstart.py: 3 repeats, 4 methods,
19 corruptions and 3 noise levels, similarity and features; written by ``--report DIR`` on this project's
CI-like machine, its paths replaced).
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from robustprune.report.tables import render_text, terminal_width

QUICKSTART_JSON = json.loads(gzip.decompress((Path(__file__).parent / "data" / "quickstart-report.json.gz")
                                             .read_bytes()))
QUICKSTART = QUICKSTART_JSON["suites"][0]


@pytest.mark.parametrize("width", [80, 100, 120])
def test_the_quickstart_report_fits_the_width(width):
    text = render_text(QUICKSTART, width=width)
    too_long = [line for line in text.splitlines() if len(line) > width]
    assert not too_long, too_long[:3]
    # still the report: every method with its nominal prune potential and verdict in the main table
    main = text[text.index("small_cnn on digits"):]
    for row in QUICKSTART["tables"][0]["rows"]:
        line = next(line for line in main.splitlines() if line.startswith(row["method"] + " "))
        assert f"{row['nominal_prune_potential'] * 100:.1f}" in line and row["verdict"] in line


def test_without_a_width_and_in_markdown_every_number_keeps_its_spread():
    full, markdown = render_text(QUICKSTART), render_text(QUICKSTART, "github")
    for text in (full, markdown):
        assert "70.6 ±5.8 / 23.3 ±25.2 (elastic_transform@3)" in text and "parent acc %" in text
    assert max(len(line) for line in full.splitlines()) > 120  # what the width option exists for


def test_the_default_width_is_the_terminals_or_100():
    assert terminal_width(None, isatty=False) == 100
    assert terminal_width(72, isatty=True) == 72 and terminal_width(0, isatty=False) is None


CHECKS = """
def test_nominal(case):
    assert case.prune_potential() >= 0.0
"""


def test_a_run_prints_its_report_within_the_width_option(run_suite):
    result = run_suite(CHECKS, "--rp-width=70", methods=("wt", "erase"), shifts=("darken@0.5,0.9",),
                       extra="gate=DeployGate(shifts=['darken@0.5,0.9'], max_accuracy_loss=0.9),")
    assert result.ret == 0
    out = result.stdout.str()
    report = out[out.index("robustprune report"):].splitlines()[1:]
    assert report and all(len(line) <= 70 for line in report if not line.startswith("=")), \
        [line for line in report if len(line) > 70 and not line.startswith("=")]
    assert any(line.startswith("wt gate pass:") for line in report)  # the gate's outcome as its own line


def test_a_failing_verdict_is_never_broken_and_the_gate_is_said_once():
    import copy

    report = copy.deepcopy(QUICKSTART)
    row = report["tables"][0]["rows"][0]
    row["verdict"] = "FAIL (gate)"
    row["gate"] = {"passed": False, "summary": "accuracy loss 3.1 % under glass_blur@3 > limit 2 % (worst of "
                                                 "corruptions@3)"}
    text = render_text(report, width=60)
    main = text[text.index("small_cnn on digits"):]
    first = next(line for line in main.splitlines() if line.startswith(row["method"] + " "))
    assert first.rstrip().endswith("FAIL (gate)")  # whole, on the row's first line: a CI grep finds it
    assert f"{row['method']} gate FAIL: accuracy loss 3.1 %" in text.replace("\n  ", " ")
