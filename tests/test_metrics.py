"""robustprune.core.metrics: prune potential, excess error and group summaries on hand-worked curves."""

from __future__ import annotations

import pytest

from robustprune.core.metrics import (
    GroupSummary,
    accuracy_loss,
    bisect_last_qualifying,
    delta_excess_error,
    excess_error,
    prune_potential,
    summarize_group,
)

RATIOS = (0.2, 0.4, 0.6, 0.8)


# --------------------------------------------------------------------------- prune potential


def test_monotone_curve_takes_last_ratio_within_delta():
    # threshold 0.90 - 0.01 = 0.89: 0.90 and 0.895 qualify, 0.88 and 0.70 do not
    assert prune_potential(RATIOS, [0.90, 0.895, 0.88, 0.70], 0.90, 0.01) == 0.4


def test_every_point_qualifying_gives_the_largest_ratio():
    assert prune_potential(RATIOS, [0.95, 0.94, 0.93, 0.92], 0.90, 0.005) == 0.8


def test_failing_point_inside_grid_does_not_end_the_search():
    # 0.4 fails (0.85 < 0.895) but 0.6 recovers: the largest qualifying ratio counts
    assert prune_potential(RATIOS, [0.90, 0.85, 0.90, 0.70], 0.90, 0.005) == 0.6


def test_only_the_first_point_failing_still_finds_later_ones():
    assert prune_potential(RATIOS, [0.10, 0.10, 0.10, 0.899], 0.90, 0.005) == 0.8


def test_ratios_need_not_be_sorted_largest_qualifying_wins():
    assert prune_potential((0.6, 0.2, 0.8, 0.4), [0.90, 0.90, 0.50, 0.90], 0.90, 0.005) == 0.6


@pytest.mark.parametrize(
    "parent, pruned, qualifies",
    [
        (360 / 400, 358 / 400, True),  # 0.900 - 0.005 = 0.895 exactly
        (360 / 400, 357 / 400, False),  # 0.8925: just below
        (361 / 400, 359 / 400, True),  # 0.9025 - 0.005 = 0.8975 exactly
        (361 / 400, 358 / 400, False),
        # in floating point 301/600 - 0.005 > 298/600 although they are equal in exact arithmetic
        (301 / 600, 298 / 600, True),
        (301 / 600, 297 / 600, False),
        (5006 / 10000, 4956 / 10000, True),  # same rounding trap at N = 10,000
        (5006 / 10000, 4955 / 10000, False),
    ],
)
def test_delta_boundary_is_inclusive_and_exact(parent, pruned, qualifies):
    expected = 0.5 if qualifies else 0.0
    assert prune_potential([0.5], [pruned], parent, 0.005) == expected


def test_float_rounding_trap_really_is_one():
    # guard for the parametrization above: the naive comparison would reject this point
    assert not (298 / 600 >= 301 / 600 - 0.005)


def test_boundary_with_a_larger_delta():
    # 52/100 - 0.05 evaluates to 0.47000000000000003 > 0.47 = 47/100
    assert prune_potential([0.3, 0.7], [0.47, 0.46], 52 / 100, 0.05) == 0.3


def test_tolerance_is_only_float_noise():
    assert prune_potential([0.5], [0.895 - 1e-9], 0.9, 0.005) == 0.0


def test_nothing_qualifying_gives_zero():
    assert prune_potential(RATIOS, [0.80, 0.70, 0.60, 0.50], 0.90, 0.005) == 0.0


def test_zero_delta_requires_matching_the_parent():
    assert prune_potential(RATIOS, [0.91, 0.90, 0.8999, 0.95], 0.90, 0.0) == 0.8
    assert prune_potential(RATIOS, [0.91, 0.90, 0.8999, 0.80], 0.90, 0.0) == 0.4


def test_shift_where_the_parent_itself_is_bad():
    # on the shift the parent only reaches 0.30; pruned networks at or above 0.295 qualify,
    # although all of them are far below the parent's *nominal* accuracy
    assert prune_potential(RATIOS, [0.31, 0.30, 0.295, 0.29], 0.30, 0.005) == 0.6


def test_empty_curve_gives_zero():
    assert prune_potential([], [], 0.9, 0.005) == 0.0


@pytest.mark.parametrize("accs", [[0.9, 0.9, 0.9], [0.9, 0.9, 0.9, 0.9, 0.9]])
def test_mismatched_lengths_raise(accs):
    with pytest.raises(ValueError, match=r"4 ratios but \d accuracies"):
        prune_potential(RATIOS, accs, 0.9, 0.005)


def test_negative_delta_raises():
    with pytest.raises(ValueError, match="delta must be >= 0"):
        prune_potential(RATIOS, [0.9] * 4, 0.9, -0.01)


# --------------------------------------------------------------------------- excess errors


def test_excess_error_is_shifted_minus_nominal():
    # err 0.40 under the shift, 0.10 nominal
    assert excess_error(0.40, 0.10) == pytest.approx(0.30)
    # a shift can also help
    assert excess_error(0.08, 0.10) == pytest.approx(-0.02)


def test_delta_excess_error_hand_worked():
    # pruned: 0.45 shifted, 0.12 nominal -> e = 0.33; parent: 0.40, 0.10 -> e = 0.30; delta e = +0.03
    assert delta_excess_error(0.45, 0.12, 0.40, 0.10) == pytest.approx(0.03)


def test_delta_excess_error_negative_when_pruned_network_is_more_robust():
    # pruned: 0.35 - 0.12 = 0.23; parent: 0.40 - 0.10 = 0.30 -> -0.07
    assert delta_excess_error(0.35, 0.12, 0.40, 0.10) == pytest.approx(-0.07)


def test_delta_excess_error_argument_order_matters():
    # same nominal errors, swapped shifted errors must flip the sign
    assert delta_excess_error(0.50, 0.10, 0.40, 0.10) == pytest.approx(0.10)
    assert delta_excess_error(0.40, 0.10, 0.50, 0.10) == pytest.approx(-0.10)
    # nominal error of the pruned network is subtracted, not the parent's
    assert delta_excess_error(0.40, 0.20, 0.40, 0.10) == pytest.approx(-0.10)


def test_accuracy_loss_is_parent_minus_pruned():
    assert accuracy_loss(0.90, 0.85) == pytest.approx(0.05)
    assert accuracy_loss(0.85, 0.90) == pytest.approx(-0.05)


# --------------------------------------------------------------------------- group summaries


def test_summarize_group_mean_min_worst():
    s = summarize_group({"contrast@3": 0.6, "fog@3": 0.2, "snow@3": 0.4})
    assert isinstance(s, GroupSummary)
    assert s.mean == pytest.approx(0.4)
    assert s.min == 0.2
    assert s.worst == "fog@3"
    assert s.values == {"contrast@3": 0.6, "fog@3": 0.2, "snow@3": 0.4}


def test_summarize_group_ties_go_to_the_first_member():
    s = summarize_group({"a@3": 0.5, "b@3": 0.1, "c@3": 0.1, "d@3": 0.9})
    assert s.worst == "b@3"
    assert s.min == 0.1
    s2 = summarize_group({"c@3": 0.1, "b@3": 0.1})
    assert s2.worst == "c@3"


def test_summarize_group_single_member():
    s = summarize_group({"contrast@3": 0.35})
    assert (s.mean, s.min, s.worst) == (0.35, 0.35, "contrast@3")


def test_summarize_group_mean_is_exact_sum():
    # fsum: ten times 0.1 averages to exactly 0.1
    s = summarize_group({f"s{i}@1": 0.1 for i in range(10)})
    assert s.mean == 0.1


def test_summarize_group_values_are_a_copy():
    src = {"a@1": 0.3, "b@1": 0.5}
    s = summarize_group(src)
    src["a@1"] = 0.0
    assert s.values["a@1"] == 0.3


def test_summarize_empty_group_raises():
    with pytest.raises(ValueError, match="empty shift group"):
        summarize_group({})


# ---------------------------------------------------------------- bisection search


def _probing(curve):
    calls = []

    def qualifies(i):
        calls.append(i)
        return curve[i]

    return qualifies, calls


@pytest.mark.parametrize("boundary", range(-1, 16))
def test_bisection_matches_the_full_grid_on_monotone_curves(boundary):
    # 16 grid points; points 0..boundary qualify, the rest fail
    curve = [i <= boundary for i in range(16)]
    qualifies, calls = _probing(curve)
    assert bisect_last_qualifying(16, qualifies) == boundary
    assert len(calls) <= 8  # at most half of the grid's 16 retrains (in fact at most 5)
    assert len(set(calls)) == len(calls)  # no point probed twice


def test_bisection_on_a_non_monotone_curve_finds_a_qualifying_point_before_a_failing_one():
    curve = [True, False, True, True, False, False, True, False]
    qualifies, calls = _probing(curve)
    found = bisect_last_qualifying(len(curve), qualifies)
    assert curve[found] and (found + 1 == len(curve) or not curve[found + 1])


def test_bisection_on_an_empty_grid():
    assert bisect_last_qualifying(0, lambda i: True) == -1


def test_group_mean_of_equal_grid_values_is_exactly_that_value():
    # 0.7 + 0.7 + 0.7 = 2.0999999999999996 in binary: a gate ">= 0.7" must still pass
    assert summarize_group({"a": 0.7, "b": 0.7, "c": 0.7}).mean >= 0.7
