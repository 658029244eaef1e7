"""Suites run in-process through pytester: parametrization, fixtures, gate items, messages, report, store reuse.

The fast lane's view of the harness: a toy dataset and model (tests/conftest.py) make a whole grid cost
well under a second, so every behaviour a suite author relies on is checked on every run of
``pytest -m "not slow"``. The subprocess runs in test_suites_e2e.py check the same as a user's shell sees it.
"""

from __future__ import annotations

import re

import pytest

CHECKS = """
def test_nominal(case):
    assert case.prune_potential() >= 0.0


def test_shift(shift_case):
    assert shift_case.delta_excess_error <= 1.0


def test_group(group_case):
    assert group_case.min_prune_potential >= 0.0
"""


def test_every_check_is_parametrized_over_the_grid(run_suite):
    result = run_suite(CHECKS, "-v", methods=("wt", "erase"), shifts=("darken@0.5,0.9", "uniform_noise@0.2"))
    result.assert_outcomes(passed=2 * (1 + 3 + 2))  # per method: one case, three shifts, two shift entries
    ids = set(re.findall(r"suite_toy.py::(test_\w+\[[^\]]+\]) PASSED", result.stdout.str()))
    assert {"test_nominal[wt-toynet-toy]", "test_nominal[erase-toynet-toy]",
            "test_shift[wt-toynet-toy-darken@0.5]", "test_shift[wt-toynet-toy-darken@0.9]",
            "test_shift[wt-toynet-toy-uniform_noise@0.2]",
            "test_group[wt-toynet-toy-darken@0.5,0.9]", "test_group[erase-toynet-toy-uniform_noise@0.2]"} <= ids
    assert result.ret == 0


def test_report_rows_follow_the_checks(run_suite):
    result = run_suite(CHECKS, methods=("wt", "erase"))
    out = result.stdout.str()
    assert "robustprune report" in out and "toynet on toy" in out
    table = out[out.index("toynet on toy"):out.index("delta excess error against the prune ratio")]
    rows: dict[str, str] = {}
    for line in table.splitlines():  # the main table's row: the first of each method (details follow)
        if line.startswith(("wt ", "erase ")):
            rows.setdefault(line.split()[0], line)
    assert rows["wt"].rstrip().endswith("pass") and rows["erase"].rstrip().endswith("pass")


def test_a_failed_limit_reads_as_a_sentence(run_suite):
    result = run_suite("""
        def test_nominal(case):
            assert case.prune_potential() >= 0.9
        """)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.assert_outcomes(failed=1)
    # the value, its bootstrap interval over the test images, then what it was held against
    result.stdout.re_match_lines([r"E\s+assert prune potential 0\.\d\d \[0\.\d\d, 0\.\d\d\] \(1 repeat, 95 %\) "
                                  r"under nominal < required 0\.90 \(delta 0\.5 %\)"])
    result.stdout.re_match_lines([r"^wt .*FAIL \(1/1 checks\)"])


def test_mirrored_comparison_is_phrased_from_the_measure(run_suite):
    result = run_suite("""
        def test_nominal(case):
            assert 0.9 <= case.prune_potential()
        """)
    result.stdout.re_match_lines([r"E\s+assert prune potential 0\.\d\d \[.*\] \(1 repeat, 95 %\) under nominal "
                                  r"< required 0\.90"])


def test_deploy_gate_checks_are_generated_per_case(run_suite):
    result = run_suite("""
        def test_nominal(case):
            assert case.prune_potential() >= 0.0
        """, "-v", methods=("wt", "erase"), extra="gate=DeployGate(max_accuracy_loss=0.05),")
    out = result.stdout.str()
    assert re.search(r"suite_toy.py::deploy_gate\[wt-toynet-toy\] PASSED", out)
    assert re.search(r"suite_toy.py::deploy_gate\[erase-toynet-toy\] FAILED", out)
    # the gate's own sentence, without a traceback; and the verdict column says why
    result.stdout.re_match_lines([r"deploy gate failed for erase at ratio 0\.25: accuracy loss \d+\.\d % under "
                                  r"\S+ > limit 5 %"])
    result.stdout.re_match_lines([r"^erase .*FAIL \(1/2 checks\)"])
    assert result.ret == pytest.ExitCode.TESTS_FAILED


def test_a_bad_suite_is_one_collection_error_that_suggests_the_name(run_suite):
    result = run_suite(CHECKS, methods=("wtt",))
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines(["*suite suite_toy.py: unknown method 'wtt'; did you mean 'wt'?*"])
    assert result.stdout.str().count("unknown method 'wtt'") == 1
    result.assert_outcomes(errors=1)


def test_a_crashing_method_fails_only_its_own_checks(run_suite):
    result = run_suite(CHECKS, methods=("wt", "broken"))
    result.assert_outcomes(passed=3, errors=3)  # the case fails where its view is made: in the fixture
    out = result.stdout.str()
    assert "method 'broken' raised at ratio 0.25: RuntimeError: broken on purpose" in out
    assert "error in broken: broken-toynet-toy: method 'broken' raised" in out  # under the report's table


def test_case_fixture_outside_a_suite_says_what_to_declare(pytester, run_suite):
    pytester.makepyfile(test_lonely="def test_it(case):\n    pass\n")
    result = pytester.runpytest_inprocess("test_lonely.py", "-p", "no:cacheprovider")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*the 'case' fixture needs a suite: declare `suite = robustprune.Suite(*"])


def test_selected_checks_compute_only_their_cases_and_a_second_run_computes_nothing(pytester, run_suite):
    run_suite(CHECKS, "-k", "wt", methods=("wt", "erase")).assert_outcomes(passed=3)
    log = (pytester.path / "store" / "work.log").read_text()
    assert "wt-toynet-toy ratio 0.25" in log and "erase-toynet-toy" not in log
    result = run_suite(CHECKS, "-k", "wt", methods=("wt", "erase"))
    result.assert_outcomes(passed=3)
    assert (pytester.path / "store" / "work.log").read_text() == log


def test_junit_xml_carries_the_failure_message(pytester, run_suite):
    run_suite("""
        def test_nominal(case):
            assert case.prune_potential() >= 0.9
        """, f"--junitxml={pytester.path / 'junit.xml'}")
    xml = (pytester.path / "junit.xml").read_text()
    assert 'testcase classname="suite_toy" name="test_nominal[wt-toynet-toy]"' in xml
    assert "prune potential 0." in xml and "required 0.90" in xml


OLD_STYLE_PLUGIN = '''
"""A plugin as written against robustprune 0.1: the flat layout's import paths."""

from robustprune.api import PruneContext, PruneMethod, hookimpl
from robustprune.pruning import Masks, global_top_masks, prunable_weights
from robustprune.sensitivity import SampledSensitivityMethod
from robustprune.structure import allocate_uniform, channel_groups


class OldStyle(PruneMethod):
    name = "old_style"

    def prune(self, network, ratio, context: PruneContext) -> Masks:
        assert channel_groups is not None and allocate_uniform is not None and SampledSensitivityMethod is not None
        return global_top_masks({n: w.detach().abs() for n, w in prunable_weights(network).items()}, ratio,
                                context.masks)


@hookimpl
def robustprune_register_methods(register):
    register(OldStyle())
'''


def test_a_plugin_written_against_the_flat_layout_still_runs(pytester, run_suite):
    pytester.makepyfile(old_style_plugin=OLD_STYLE_PLUGIN)
    result = run_suite(CHECKS, methods=("old_style",), plugins=("toy_plugin", "old_style_plugin"))
    result.assert_outcomes(passed=3)


PAIR = """
def test_nominal(case):
    assert case.prune_potential() >= 0.0


def test_shift(shift_case):
    assert shift_case.delta_excess_error <= 1.0
"""


def _verdicts(out: str) -> dict[str, str]:
    table = out[out.index("toynet on toy"):out.index("delta excess error against the prune ratio")]
    rows: dict[str, str] = {}
    for line in table.splitlines():  # the main table's row: the first of each method (details follow)
        if line.startswith(("wt ", "erase ")):
            rows.setdefault(line.split()[0], line.rstrip())
    return rows


def test_a_case_whose_checks_did_not_all_run_is_incomplete_not_pass(run_suite):
    result = run_suite(PAIR, "-k", "nominal", methods=("wt", "erase"))
    assert result.ret == 0
    rows = _verdicts(result.stdout.str())
    assert rows["wt"].endswith("incomplete (1 of 2 checks)") and rows["erase"].endswith("incomplete (1 of 2 checks)")
    everything = run_suite(PAIR, methods=("wt", "erase"))
    assert _verdicts(everything.stdout.str())["wt"].endswith("pass")


def test_ctrl_c_leaves_the_unfinished_case_incomplete_and_exits_130(run_suite):
    result = run_suite(PAIR + """

def test_stop(case):
    if case.method == "erase":
        raise KeyboardInterrupt
""", methods=("wt", "erase"))
    assert result.ret == 130
    rows = _verdicts(result.stdout.str())
    assert "incomplete" in rows["erase"] and not rows["erase"].endswith("pass")
