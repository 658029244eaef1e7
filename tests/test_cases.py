"""robustprune.core.cases: Measure messages and the Case / ShiftCase / GroupCase views over hand-made curves."""

from __future__ import annotations

import pytest

from robustprune.core.cases import Case, GroupCase, Measure, ShiftCase
from robustprune.core.results import CaseKey, CaseResult
from robustprune.core.shifts import NOMINAL, NOMINAL_SHIFT, Shift, ShiftEntry
from robustprune.core.suite import Suite

# --------------------------------------------------------------------------- Measure.explain


def test_explain_required_wording_exact():
    m = Measure(0.5, "prune potential", "under contrast@3", "(delta 0.5 %)")
    assert m.explain(">=", 0.8) == "prune potential 0.50 under contrast@3 < required 0.80 (delta 0.5 %)"


def test_explain_strict_greater_uses_at_most():
    m = Measure(0.5, "prune potential", "under contrast@3", "(delta 0.5 %)")
    assert m.explain(">", 0.5) == "prune potential 0.50 under contrast@3 <= required 0.50 (delta 0.5 %)"


def test_explain_limit_wording_for_upper_bounds():
    m = Measure(0.035, "max delta excess error", "over noise@3 (worst: shot_noise@3) at ratio 0.5", digits=3)
    assert m.explain("<=", 0.02) == (
        "max delta excess error 0.035 over noise@3 (worst: shot_noise@3) at ratio 0.5 > limit 0.020"
    )
    assert m.explain("<", 0.02).endswith(">= limit 0.020")


def test_explain_without_context_or_note():
    assert Measure(0.25, "accuracy loss").explain("<=", 0.1) == "accuracy loss 0.25 > limit 0.10"


@pytest.mark.parametrize("op", ["==", "!=", "in", "is"])
def test_explain_returns_none_for_other_operators(op):
    assert Measure(0.5, "prune potential").explain(op, 0.8) is None


def test_explain_returns_none_for_non_numbers():
    assert Measure(0.5, "prune potential").explain(">=", "0.8") is None


def test_measure_is_a_plain_number():
    m = Measure(0.5, "prune potential")
    assert m == 0.5 and m < 0.8 and m + 0.25 == 0.75
    assert isinstance(m, float)


# --------------------------------------------------------------------------- hand-made case
#
# ratios 0.2 0.4 0.5 0.6 0.8 (gate ratio defaults to 0.5), delta 0.005
#
#            parent | 0.2   0.4   0.5    0.6   0.8      P(0.005)
# nominal     0.90  | 0.91  0.90  0.895  0.89  0.80  -> 0.5 (0.895 == 0.90 - 0.005)
# contrast@3  0.60  | 0.62  0.58  0.60   0.59  0.61  -> 0.8 (0.4 fails, later points recover)
# fog@3       0.70  | 0.70  0.69  0.66   0.65  0.60  -> 0.2
#
# at the gate 0.5:  e(pruned, contrast) = 0.40 - 0.105 = 0.295; e(parent) = 0.40 - 0.10 = 0.30 -> delta e -0.005
#                   e(pruned, fog)      = 0.34 - 0.105 = 0.235; e(parent) = 0.30 - 0.10 = 0.20 -> delta e +0.035

RATIOS = (0.2, 0.4, 0.5, 0.6, 0.8)
ACCURACY = {
    NOMINAL: [0.90, 0.91, 0.90, 0.895, 0.89, 0.80],
    "contrast@3": [0.60, 0.62, 0.58, 0.60, 0.59, 0.61],
    "fog@3": [0.70, 0.70, 0.69, 0.66, 0.65, 0.60],
}
CONTRAST, FOG = Shift("contrast", 3), Shift("fog", 3)
ENTRIES = [
    ShiftEntry("contrast@3", (CONTRAST,)),
    ShiftEntry("mini@3", (CONTRAST, FOG)),
]


def make_result(accuracy=ACCURACY) -> CaseResult:
    return CaseResult.from_curves(
        CaseKey("wt", "tiny", "toy"), {"name": "wt"}, RATIOS, (0.2, 0.4, 0.5, 0.6, 0.8),
        {k: list(v) for k, v in accuracy.items()}, parent_key="p", step_keys=("a", "b", "c", "d", "e"),
    )


def make_case(**suite_kwargs) -> Case:
    s = Suite(models=["tiny"], datasets=["toy"], methods=["wt"], ratios=RATIOS, **suite_kwargs)
    result = make_result()
    return Case(lambda: result, s, ENTRIES, CaseKey("wt", "tiny", "toy"))


@pytest.fixture
def toy_case() -> Case:
    return make_case()


def test_shift_labels_of_hand_made_shifts():
    assert CONTRAST.label == "contrast@3"
    assert Shift("uniform_noise", 0.1).label == "uniform_noise@0.1"
    assert NOMINAL_SHIFT.label == NOMINAL and NOMINAL_SHIFT.is_nominal
    assert ENTRIES[1].is_group and not ENTRIES[0].is_group


def test_case_identity_and_settings(toy_case):
    assert toy_case.id == "wt-tiny-toy"
    assert toy_case.ratios == RATIOS
    assert toy_case.gate_ratio == 0.5
    assert toy_case.delta == 0.005
    assert toy_case.achieved_ratios == (0.2, 0.4, 0.5, 0.6, 0.8)


def test_result_is_computed_lazily():
    calls = []
    s = Suite(models=["tiny"], datasets=["toy"], methods=["wt"], ratios=RATIOS)
    c = Case(lambda: calls.append(1) or make_result(), s, ENTRIES, CaseKey("wt", "tiny", "toy"))
    assert calls == []
    assert c.prune_potential() == 0.5
    assert calls


def test_prune_potential_per_shift(toy_case):
    assert toy_case.prune_potential() == 0.5
    assert toy_case.prune_potential("contrast@3") == 0.8
    assert toy_case.prune_potential("fog@3") == 0.2


def test_prune_potential_with_other_delta(toy_case):
    # fog: threshold 0.70 - 0.05 = 0.65 -> 0.6 qualifies, 0.8 (0.60) does not
    assert toy_case.prune_potential("fog@3", delta=0.05) == 0.6
    assert "(delta 5 %)" in toy_case.prune_potential("fog@3", delta=0.05).explain(">=", 0.8)


def test_prune_potential_measure_explains_itself(toy_case):
    pp = toy_case.prune_potential("contrast@3")
    assert pp.explain(">=", 0.9) == "prune potential 0.80 under contrast@3 < required 0.90 (delta 0.5 %)"


def test_accuracies_and_loss_at_gate_ratio(toy_case):
    assert toy_case.parent_accuracy("fog@3") == 0.70
    assert toy_case.accuracy("fog@3") == 0.66
    assert toy_case.accuracy("fog@3", ratio=0.8) == 0.60
    assert toy_case.accuracy_loss() == pytest.approx(0.005)
    assert toy_case.accuracy_loss("fog@3") == pytest.approx(0.04)
    assert toy_case.accuracy("fog@3").explain(">=", 0.7) == "accuracy 0.660 under fog@3 at ratio 0.5 < required 0.700"


def test_excess_and_delta_excess_error_at_gate_ratio(toy_case):
    assert toy_case.excess_error("fog@3") == pytest.approx(0.235)
    assert toy_case.delta_excess_error("fog@3") == pytest.approx(0.035)
    assert toy_case.delta_excess_error("contrast@3") == pytest.approx(-0.005)
    # explicit ratio 0.8: fog pruned e = 0.40 - 0.20 = 0.20; parent 0.20 -> 0.0
    assert toy_case.delta_excess_error("fog@3", ratio=0.8) == pytest.approx(0.0)


def test_per_method_gate_ratio_moves_the_reading_point():
    c = make_case(gate_ratio={"wt": 0.6})
    assert c.gate_ratio == 0.6
    # at 0.6: fog pruned e = 0.35 - 0.11 = 0.24; parent 0.20 -> +0.04
    assert c.delta_excess_error("fog@3") == pytest.approx(0.04)
    assert "at ratio 0.6" in c.delta_excess_error("fog@3").explain("<=", 0.01)


def test_unknown_shift_and_ratio_are_errors(toy_case):
    with pytest.raises(KeyError, match="not evaluated by this suite"):
        toy_case.prune_potential("snow@3")
    with pytest.raises(ValueError, match=r"ratio 0\.3 is not in the suite's grid 0\.2, 0\.4, 0\.5, 0\.6, 0\.8"):
        toy_case.accuracy(NOMINAL, ratio=0.3)
    with pytest.raises(KeyError):
        toy_case.group("snow@3")
    with pytest.raises(KeyError):
        toy_case.shift("snow@3")


def test_shift_case_view(toy_case):
    sc = toy_case.shift("fog@3")
    assert isinstance(sc, ShiftCase)
    assert sc.id == "wt-tiny-toy-fog@3"
    assert sc.prune_potential == 0.2
    assert sc.parent_accuracy == 0.70
    assert sc.accuracy == 0.66
    assert sc.accuracy_loss == pytest.approx(0.04)
    assert sc.excess_error == pytest.approx(0.235)
    assert sc.delta_excess_error == pytest.approx(0.035)
    assert sc.prune_potential.explain(">=", 0.5) == "prune potential 0.20 under fog@3 < required 0.50 (delta 0.5 %)"


def test_group_case_view(toy_case):
    g = toy_case.group("mini@3")
    assert isinstance(g, GroupCase)
    assert g.id == "wt-tiny-toy-mini@3"
    assert g.members == ["contrast@3", "fog@3"]
    assert g.mean_prune_potential == pytest.approx(0.5)
    assert g.min_prune_potential == 0.2
    assert g.worst == "fog@3"
    assert g.min_prune_potential.explain(">=", 0.5) == (
        "min prune potential 0.20 over mini@3 (worst: fog@3) < required 0.50 (delta 0.5 %)"
    )
    assert g.mean_prune_potential.explain(">=", 0.6) == (
        "mean prune potential 0.50 over mini@3 < required 0.60 (delta 0.5 %)"
    )
    assert g.max_delta_excess_error == pytest.approx(0.035)
    assert g.max_delta_excess_error.explain("<=", 0.02) == (
        "max delta excess error 0.035 over mini@3 (worst: fog@3) at ratio 0.5 > limit 0.020"
    )


def test_single_shift_entry_as_group_says_under(toy_case):
    g = toy_case.group("contrast@3")
    assert g.members == ["contrast@3"]
    assert g.min_prune_potential == 0.8 and g.mean_prune_potential == 0.8
    assert g.min_prune_potential.explain(">=", 0.9) == (
        "min prune potential 0.80 under contrast@3 < required 0.90 (delta 0.5 %)"
    )


def test_group_worst_tie_goes_to_first_member():
    result = make_result({**ACCURACY, "fog@3": ACCURACY["contrast@3"]})  # fog now ties contrast at 0.8
    s = Suite(models=["tiny"], datasets=["toy"], methods=["wt"], ratios=RATIOS)
    g = Case(lambda: result, s, ENTRIES, CaseKey("wt", "tiny", "toy")).group("mini@3")
    assert g.worst == "contrast@3"
    assert g.min_prune_potential == 0.8
