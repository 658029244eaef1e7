"""``--rp-select KEY=VALUE``: checks chosen by method, model, dataset or shift, names matched whole."""

from __future__ import annotations

import pytest

from robustprune.harness.exitcodes import ExitStatus

CHECKS = """
def test_nominal(case):
    assert case.prune_potential() >= 0.0


def test_each_shift(shift_case):
    assert shift_case.prune_potential >= 0.0


def test_each_entry(group_case):
    assert group_case.mean_prune_potential >= 0.0
"""

SHIFTS = ("darken@0.5", "darken@0.25,0.75")


def _ran(result: pytest.RunResult) -> set[str]:
    return {line.split("::", 1)[1].split(" ")[0] for line in result.stdout.lines if line.startswith("PASSED ")}


def test_select_by_method_keeps_that_methods_checks(run_suite):
    result = run_suite(CHECKS, "-rA", "--rp-select=method=erase", methods=("wt", "erase"), shifts=SHIFTS)
    assert result.ret == ExitStatus.OK
    ran = _ran(result)
    assert ran and all("erase-toynet-toy" in test_id for test_id in ran)
    assert "test_nominal[erase-toynet-toy]" in ran


def test_select_by_shift_matches_the_shift_and_the_entries_holding_it(run_suite):
    result = run_suite(CHECKS, "-rA", "--rp-select=shift=darken@0.25", methods=("wt",), shifts=SHIFTS)
    assert result.ret == ExitStatus.OK
    # its own check, and the entry darken@0.25,0.75 it belongs to; not darken@0.5 (-k darken@0.25 would
    # not even parse: @ and . are not keywords)
    assert _ran(result) == {"test_each_shift[wt-toynet-toy-darken@0.25]",
                            "test_each_entry[wt-toynet-toy-darken@0.25,0.75]"}
    assert "incomplete" in result.stdout.str()  # the case's other checks did not run


def test_different_keys_must_all_match_and_values_of_one_key_add_up(run_suite):
    result = run_suite(CHECKS, "-rA", "--rp-select=method=wt", "--rp-select=shift=darken@0.5",
                       "--rp-select=shift=darken@0.75", methods=("wt", "erase"), shifts=SHIFTS)
    assert _ran(result) == {"test_each_shift[wt-toynet-toy-darken@0.5]", "test_each_shift[wt-toynet-toy-darken@0.75]",
                            "test_each_entry[wt-toynet-toy-darken@0.5]",
                            "test_each_entry[wt-toynet-toy-darken@0.25,0.75]"}


def test_a_selector_matching_nothing_is_a_configuration_error(run_suite):
    result = run_suite(CHECKS, "--rp-select=method=wtt", methods=("wt", "erase"), shifts=SHIFTS)
    assert result.ret == ExitStatus.CONFIGURATION_ERROR
    assert "--select method=wtt: no collected check has that method; the suites' methods: erase, wt" in \
        result.stdout.str() + result.stderr.str()


def test_a_malformed_selector_stops_before_collection(pytester):
    pytester.makepyfile(suite_empty="")
    result = pytester.runpytest_subprocess("suite_empty.py", "--rp-select=colour=red", "-p", "no:cacheprovider")
    assert result.ret == ExitStatus.CONFIGURATION_ERROR
    result.stderr.fnmatch_lines(["*--select 'colour=red': write KEY=VALUE with KEY one of method, model, dataset, "
                                 "shift*"])
