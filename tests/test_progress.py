"""Progress through the ``robustprune`` logger: shown by default, silenced by -q, pytest's live logging when
asked for, and from pytest-xdist workers."""

from __future__ import annotations

import re

import pytest
from conftest import TOY_PLUGIN, TOY_SUITE_HEAD

CHECKS = """
def test_nominal(case):
    assert case.prune_potential() >= 0.0
"""

LINE = re.compile(r"^robustprune +\d+\.\ds \[toynet-toy\] training the parent", re.M)


def test_progress_is_one_line_per_event_by_default(run_suite):
    result = run_suite(CHECKS)
    assert result.ret == 0
    assert LINE.search(result.stdout.str()), result.stdout.str()[-2000:]


def test_quiet_silences_progress(run_suite):
    result = run_suite(CHECKS, "-q")
    assert result.ret == 0
    assert not LINE.search(result.stdout.str()) and "training the parent" not in result.stdout.str()


def test_live_logging_shows_progress_in_pytests_format(run_suite):
    result = run_suite(CHECKS, "--log-cli-level=INFO")
    assert result.ret == 0
    output = result.stdout.str()
    assert re.search(r"INFO +robustprune:\S+ \[toynet-toy\] training the parent", output), output[-2000:]
    assert not LINE.search(output)  # once, in pytest's format


def test_live_logging_above_info_leaves_progress_to_robustprune(run_suite):
    result = run_suite(CHECKS, "--log-cli-level=WARNING")
    assert result.ret == 0 and LINE.search(result.stdout.str())


def test_a_failing_check_carries_the_progress_of_its_work(run_suite):
    result = run_suite("""
def test_fails(case):
    assert case.prune_potential() > 1.0
""", "-q")
    assert result.ret == 1
    result.stdout.fnmatch_lines(["*Captured log setup*", "INFO *robustprune*training the parent*"])


@pytest.mark.slow
def test_xdist_workers_progress_reaches_the_terminal(pytester):
    pytest.importorskip("xdist")
    pytester.makepyfile(toy_plugin=TOY_PLUGIN, suite_toy=TOY_SUITE_HEAD.format(
        methods=["wt", "erase"], shifts=["darken@0.5"], plugins=["toy_plugin"], extra="") + CHECKS)
    summary = pytester.path / "summary.md"
    result = pytester.runpytest_subprocess("suite_toy.py", f"--rp-store={pytester.path / 'store'}", "-n", "2",
                                           "-p", "no:cacheprovider", f"--rp-summary={summary}")
    assert result.ret == 0
    assert summary.read_text().count("# robustprune report") == 1  # the controller's merged report, once
    output = result.stdout.str() + "\n" + result.stderr.str()
    assert re.search(r"^\[gw[01]\] robustprune +\d+\.\ds \[toynet-toy\] training the parent", output, re.M), \
        output[-3000:]


class _Reporter:
    def __init__(self, isatty: bool) -> None:
        self.isatty, self.lines = isatty, []

    def write_line(self, line: str) -> None:
        self.lines.append(line)


class _Plugins:
    def __init__(self, reporter: _Reporter) -> None:
        self.reporter = reporter

    def get_plugin(self, name: str):
        return self.reporter if name == "terminalreporter" else None


class _Config:
    def __init__(self, reporter: _Reporter) -> None:
        self.pluginmanager = _Plugins(reporter)


@pytest.mark.parametrize("isatty", [True, False])
def test_on_a_terminal_the_work_count_is_a_bar_not_a_line_per_piece(isatty, monkeypatch):
    import io
    import logging
    import sys

    from robustprune.harness.progress import TerminalProgress

    class Stderr(io.StringIO):
        def isatty(self) -> bool:
            return isatty

    stderr = Stderr()
    monkeypatch.setattr(sys, "stderr", stderr)
    reporter = _Reporter(isatty)
    handler = TerminalProgress(_Config(reporter), started=0.0)  # type: ignore[arg-type]
    for message in ["2 worker processes: 1 parents, 2 cascades, 0 measures", "1/3 parent toynet-toy done (1 s)",
                    "[wt-toynet-toy] ratio 0.25 (1/2): pruning", "2/3 wt-toynet-toy repeat 1 failed: boom",
                    "3/3 erase-toynet-toy repeat 1 done (3 s)"]:
        handler.emit(logging.LogRecord("robustprune", logging.INFO, __file__, 1, message, None, None))
    handler.close()
    counted = [line for line in reporter.lines if re.search(r"s \d/3 ", line)]
    # a failure is always a line; on a terminal the pieces done are the bar's
    assert [line.split("s ", 1)[1] for line in counted] == (
        ["2/3 wt-toynet-toy repeat 1 failed: boom"] if isatty else
        ["1/3 parent toynet-toy done (1 s)", "2/3 wt-toynet-toy repeat 1 failed: boom",
         "3/3 erase-toynet-toy repeat 1 done (3 s)"])
    assert ("robustprune work" in stderr.getvalue()) == isatty  # tqdm drew the bar on stderr
