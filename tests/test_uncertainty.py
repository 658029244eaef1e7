"""Spreads and intervals: Student's t over repeats and the paired bootstrap over test images, against hand-worked
answers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from robustprune import Suite
from robustprune.core.cases import Case, Measure
from robustprune.core.results import CaseKey, CaseResult, RepeatCurves
from robustprune.core.shifts import NOMINAL
from robustprune.core.uncertainty import (
    Estimate,
    PerRepeat,
    Resampling,
    percentile,
    student_t_quantile,
)
from robustprune.engine.bootstrap import ImageResamples
from robustprune.plugin.scores import fraction


def resampled_accuracies(resamples: ImageResamples, correct: np.ndarray) -> np.ndarray:
    """Top-1 accuracy of each network (a row of ``correct``) on each resample, as the engine computes it."""
    return resamples.scores(correct[:, :, None].astype(np.int64), fraction)

# --------------------------------------------------------------------------- building blocks


def test_percentile_interpolates_like_numpy():
    values = [0.3, 0.1, 0.4, 0.15, 0.9, 0.26]
    for q in (0.0, 0.025, 0.25, 0.5, 0.9, 0.975, 1.0):
        assert percentile(values, q) == pytest.approx(float(np.percentile(values, q * 100)))


def test_image_resamples_are_seeded_counts_of_every_image():
    resamples = ImageResamples(seed=0, samples=200)
    counts = resamples.counts(50)
    assert counts.shape == (200, 50)
    assert (counts.sum(axis=1) == 50).all()  # each resample draws n images
    assert np.array_equal(counts, ImageResamples(seed=0, samples=200).counts(50))  # seeded
    assert not np.array_equal(counts, ImageResamples(seed=1, samples=200).counts(50))
    # every image is drawn once per resample on average
    assert abs(counts.mean() - 1.0) < 1e-9 and 0.9 < counts[:, 7].mean() < 1.1


def test_resampled_accuracy_is_the_count_weighted_mean():
    resamples = ImageResamples(seed=3, samples=50)
    correct = np.array([[True, False, True, True], [False, False, True, False]])
    accuracies = resampled_accuracies(resamples, correct)
    counts = resamples.counts(4)
    assert accuracies.shape == (2, 50)
    assert np.allclose(accuracies, correct.astype(float) @ counts.T / 4)


def test_image_replicates_are_the_mean_over_repeats_and_training_adds_a_t_interval():
    plan = Resampling(repeats=3, samples=400, level=0.95)
    # repeat r reads r + 0.001 * b on image resample b: the images move every repeat alike
    rows = tuple([r + 0.001 * b for b in range(400)] for r in range(3))
    estimate = plan.estimate(PerRepeat((0.0, 1.0, 2.0), rows))
    assert estimate.point == 1.0 and estimate.std == 1.0  # sample std of 0, 1, 2
    assert estimate.replicates == pytest.approx([1.0 + 0.001 * b for b in range(400)])
    # training: t(0.975, 2) * 1 / sqrt(3) = 4.3027 / 1.7321 = 2.4841; images: the 2.5 % and 97.5 % percentiles
    training = 4.302653 / math.sqrt(3)
    images_low = 1.0 - float(np.percentile([1.0 + 0.001 * b for b in range(400)], 2.5))
    images_high = float(np.percentile([1.0 + 0.001 * b for b in range(400)], 97.5)) - 1.0
    low, high = estimate.interval()
    assert low == pytest.approx(1.0 - math.hypot(training, max(0.0, images_low)), rel=1e-6)
    assert high == pytest.approx(1.0 + math.hypot(training, images_high), rel=1e-6)


def test_without_the_image_bootstrap_repeats_give_the_t_interval():
    estimate = Resampling(repeats=3, samples=0, level=0.95).estimate(PerRepeat((0.4, 0.5, 0.6)))
    assert estimate.replicates == ()
    half = 4.302653 * 0.1 / math.sqrt(3)  # 0.2484
    assert estimate.interval() == (pytest.approx(0.5 - half), pytest.approx(0.5 + half))
    # one-sided 95 %: t(0.95, 2) = 2.9200
    assert estimate.bound(0.95, "upper") == pytest.approx(0.5 + 2.919986 * 0.1 / math.sqrt(3))


def test_one_repeat_without_resamples_is_its_own_interval():
    estimate = Resampling(repeats=1, samples=0, level=0.95).estimate(PerRepeat((0.4,)))
    assert estimate.point == 0.4 and estimate.std == 0.0 and estimate.interval() == (0.4, 0.4)
    assert estimate.bound(0.95, "upper") == 0.4


def test_combining_per_repeat_statistics_works_within_each_repeat_and_resample():
    a = PerRepeat((0.5, 0.7), ([0.5, 0.6], [0.7, 0.8]))
    b = PerRepeat((0.6, 0.2), ([0.4, 0.9], [0.1, 0.3]))
    low = PerRepeat.combine([a, b], "min")
    assert low.values == (0.5, 0.2) and low.replicates is not None
    assert [list(row) for row in low.replicates] == [[0.4, 0.6], [0.1, 0.3]]


def test_estimate_bounds_are_one_sided_quantiles():
    estimate = Estimate(values=(0.5,), replicates=tuple(i / 100 for i in range(101)), level=0.95)
    assert estimate.bound(0.95, "upper") == pytest.approx(0.95)
    assert estimate.bound(0.95, "lower") == pytest.approx(0.05)
    assert estimate.interval(0.9) == (pytest.approx(0.05), pytest.approx(0.95))


# --------------------------------------------------------------------------- paired bootstrap through a case


def _case_from_predictions(correct: np.ndarray, samples: int = 1000, ratios=(0.5,)) -> Case:
    """One repeat, nominal only: ``correct`` rows are [parent, pruned...] per image."""
    resamples = ImageResamples(seed=0, samples=samples)
    accuracy = tuple(float(row.mean()) for row in correct)
    replicates = tuple(tuple(row) for row in resampled_accuracies(resamples, correct))
    curves = RepeatCurves(0, tuple(ratios), "p", ("s",), {NOMINAL: (accuracy,)}, {NOMINAL: (replicates,)})
    result = CaseResult(CaseKey("wt", "m", "d"), {"name": "wt", "structured": False}, tuple(ratios), (curves,),
                        Resampling(repeats=1, samples=samples, level=0.95))
    suite = Suite(models=["m"], datasets=["d"], methods=["wt"], ratios=ratios)
    return Case(lambda: result, suite, [], CaseKey("wt", "m", "d"))


def test_identical_networks_lose_nothing_with_a_degenerate_interval():
    rng = np.random.default_rng(0)
    row = rng.random(200) < 0.8
    case = _case_from_predictions(np.stack([row, row]))
    loss = case.accuracy_loss()
    assert float(loss) == 0.0
    assert loss.interval() == (0.0, 0.0)
    assert case.prune_potential(delta=0.0).interval() == (0.5, 0.5)


def test_a_network_one_image_worse_gets_the_paired_interval():
    n = 100
    parent = np.ones(n, dtype=bool)
    pruned = parent.copy()
    pruned[17] = False  # the pruned network misses image 17, and only it
    case = _case_from_predictions(np.stack([parent, pruned]))
    loss = case.accuracy_loss()
    assert float(loss) == pytest.approx(1 / n)
    # paired: on each resample the loss is exactly how often image 17 was drawn, over n
    counts = ImageResamples(seed=0, samples=1000).counts(n)[:, 17]
    assert loss.estimate is not None
    assert np.allclose(loss.estimate.replicates, counts / n)
    low, high = loss.interval()
    assert low == 0.0  # never negative: the parent is never worse on any resample
    assert high == pytest.approx(float(np.percentile(counts / n, 97.5)))
    assert 2 / n <= high <= 4 / n  # Binomial(n, 1/n) counts: the 97.5 % quantile is 3


def test_measure_prints_its_spread_and_keeps_comparing_as_a_float():
    estimate = Estimate(values=(0.4, 0.5, 0.45), replicates=tuple(0.35 + i * 0.002 for i in range(101)), level=0.95)
    measure = Measure(estimate.point, "prune potential", "under nominal", "(delta 1 %)", estimate=estimate)
    assert measure == pytest.approx(0.45) and measure < 0.5 and measure.repeats == 3
    assert measure.std == pytest.approx(0.05)
    # training t(0.975, 2) * 0.05 / sqrt(3) = 0.124, images 0.45 - 0.355 = 0.095: hypot 0.156 -> [0.29, 0.61]
    assert measure.explain(">=", 0.5) == ("prune potential 0.45 ±0.05 [0.29, 0.61] (3 repeats, 95 %) under nominal "
                                          "< required 0.50 (delta 1 %)")
    assert Measure(0.3, "accuracy", "under nominal").explain(">=", 0.5) == "accuracy 0.30 under nominal < required 0.50"


# --------------------------------------------------------------------------- the paper's estimators, by hand
#
# ratios 0.25 0.5, delta 0.01, two repeats, no bootstrap
#
# repeat 0                parent | 0.25  0.5
#   nominal                0.90  | 0.90  0.85        P = 0.25
#   uniform_noise@0.2 d0   0.80  | 0.80  0.80        P = 0.5
#                     d1   0.80  | 0.70  0.70        P = 0
#                     d2   0.80  | 0.80  0.75        P = 0.25
#   -> noise P on repeat 0 = mean over draws (0.5 + 0 + 0.25) / 3 = 0.25
#      (the P of the mean curve 0.80 | 0.767 0.75 would be 0: the order of mean and P matters)
# repeat 1
#   nominal                0.92  | 0.92  0.92        P = 0.5
#   uniform_noise@0.2 d0   0.82  | 0.82  0.82        P = 0.5
#                     d1   0.82  | 0.82  0.82        P = 0.5
#                     d2   0.82  | 0.81  0.81        P = 0.5
#   -> noise P on repeat 1 = 0.5; over repeats: mean 0.375, std = 0.125 * sqrt(2) = 0.1768
#
# delta e(r) = (acc_p(nom) - acc_p(noise)) - (acc_r(nom) - acc_r(noise)), per draw, then the mean over draws:
#   repeat 0 at 0.25: d0 (0.10 - 0.10) = 0, d1 (0.10 - 0.20) -> e_r - e_p = 0.20 - 0.10 = 0.10, d2 0 -> mean 0.0333
#            at 0.5:  d0 0.05 - 0.10 = -0.05, d1 0.15 - 0.10 = 0.05, d2 0.10 - 0.10 = 0  -> mean 0
#   slope through the origin: (0.25 * 0.0333 + 0.5 * 0) / (0.0625 + 0.25) = 0.02667
#   repeat 1 at 0.25: d0 0, d1 0, d2 (0.92 - 0.81) - 0.10 = 0.01 -> 0.00333; at 0.5 likewise 0.00333
#   slope: (0.25 + 0.5) * 0.00333 / 0.3125 = 0.008

NOISE = "uniform_noise@0.2"
REPEAT_CURVES = [
    {NOMINAL: ((0.90, 0.90, 0.85),),
     NOISE: ((0.80, 0.80, 0.80), (0.80, 0.70, 0.70), (0.80, 0.80, 0.75))},
    {NOMINAL: ((0.92, 0.92, 0.92),),
     NOISE: ((0.82, 0.82, 0.82), (0.82, 0.82, 0.82), (0.82, 0.81, 0.81))},
]


def _two_repeat_case() -> Case:
    ratios = (0.25, 0.5)
    repeats = tuple(RepeatCurves(r, ratios, f"p{r}", ("a", "b"), accuracy) for r, accuracy in enumerate(REPEAT_CURVES))
    result = CaseResult(CaseKey("wt", "m", "d"), {"name": "wt", "structured": False}, ratios, repeats,
                        Resampling(repeats=2, samples=0, level=0.95))
    suite = Suite(models=["m"], datasets=["d"], methods=["wt"], ratios=ratios, delta=0.01, repeats=2,
                  noise_draws=3, gate_ratio=0.5)
    return Case(lambda: result, suite, [], CaseKey("wt", "m", "d"))


def test_noise_prune_potential_is_the_mean_over_draws_of_each_draws_prune_potential():
    p = _two_repeat_case().prune_potential(NOISE)
    assert p.values == pytest.approx((0.25, 0.5))
    assert p.estimate is not None and p.estimate.draws == ((0.5, 0.0, 0.25), (0.5, 0.5, 0.5))
    assert float(p) == pytest.approx(0.375) and p.std == pytest.approx(0.125 * math.sqrt(2))
    # pooled within-repeat spread of the draws: repeat 0's squares (0.25^2 + 0.25^2 + 0) over 2 + 2 freedoms
    assert p.estimate.draw_std == pytest.approx(math.sqrt(0.125 / 4))
    # two repeats: t(0.975, 1) = 12.7 stretches the interval to the grid's ends
    assert p.spread_text() == " ±0.18 [0.00, 0.50] (2 repeats, 95 %; 3 noise draws, ±0.18 between them)"
    assert p.estimate.to_dict()["draws"] == [[0.5, 0.0, 0.25], [0.5, 0.5, 0.5]]


def test_nominal_numbers_have_no_draws_and_repeat_means_are_plain_means():
    case = _two_repeat_case()
    p = case.prune_potential()
    assert p.values == (0.25, 0.5) and p.estimate is not None and p.estimate.draws is None
    assert "draw_std" not in p.estimate.to_dict()
    assert case.parent_accuracy() == pytest.approx(0.91)
    assert case.accuracy_loss(ratio=0.5).values == pytest.approx((0.05, 0.0))


def test_delta_excess_error_slope_on_hand_worked_curves():
    case = _two_repeat_case()
    dee = case.delta_excess_error(NOISE, 0.25)
    assert dee.values == pytest.approx((0.1 / 3, 0.01 / 3))
    slope = case.delta_excess_error_slope()
    assert slope.values == pytest.approx((0.08 / 3, 0.008))
    assert float(slope) == pytest.approx((0.08 / 3 + 0.008) / 2)
    assert case.delta_excess_error_slope([NOISE, NOMINAL]).values == slope.values  # nominal's delta e is 0: left out


# --------------------------------------------------------------------------- few repeats: Student's t


@pytest.mark.parametrize(("q", "df", "table"), [(0.975, 1, 12.706), (0.975, 2, 4.303), (0.975, 4, 2.776),
                                                (0.975, 9, 2.262), (0.95, 2, 2.920), (0.975, 30, 2.042),
                                                (0.025, 3, -3.182)])
def test_student_t_quantiles_match_the_table(q, df, table):
    assert student_t_quantile(q, df) == pytest.approx(table, abs=5e-4)


def test_identical_repeats_leave_the_image_interval_alone():
    replicates = tuple(i / 1000 for i in range(1001))
    same = Estimate(values=(0.5, 0.5, 0.5), replicates=replicates, level=0.95)
    assert same.std == 0.0
    assert same.interval() == (pytest.approx(0.025), pytest.approx(0.975))
    differing = Estimate(values=(0.4, 0.5, 0.6), replicates=replicates, level=0.95)
    low, high = differing.interval()
    assert low == pytest.approx(0.5 - math.hypot(0.475, 4.302653 * 0.1 / math.sqrt(3)))
    assert high == pytest.approx(0.5 + math.hypot(0.475, 4.302653 * 0.1 / math.sqrt(3)))


def test_intervals_end_inside_what_the_number_can_be():
    # a min prune potential of (0, 0.2, 0): t(0.975, 2) * 0.1155 / sqrt(3) = 0.287 reaches below 0
    clipped = Estimate(values=(0.0, 0.2, 0.0), replicates=(), level=0.95, limits=(0.0, 0.8))
    low, high = clipped.interval()
    assert low == 0.0 and high == pytest.approx(0.2 / 3 + 4.302653 * 0.11547 / math.sqrt(3), rel=1e-4)
    assert Estimate(values=(0.0, 0.2, 0.0), replicates=(), level=0.95).lower() < 0  # unlimited: unclipped
    # combining keeps the union of the parts' limits
    a, b = PerRepeat((0.1,), limits=(0.0, 0.8)), PerRepeat((0.3,), limits=(0.0, 0.5))
    assert PerRepeat.combine([a, b], "min").limits == (0.0, 0.8)
    assert PerRepeat.combine([a, PerRepeat((0.2,))], "min").limits is None


def test_a_case_clips_prune_potential_and_accuracy_intervals():
    case = _two_repeat_case()
    p = case.prune_potential(NOISE)  # values 0.25 and 0.5 over two repeats: t(0.975, 1) = 12.7 reaches far
    assert p.interval() == (0.0, 0.5)  # 0 and the grid's largest ratio
    assert case.accuracy(NOISE, 0.5).estimate.limits == (0.0, 1.0)


def test_a_mean_of_equal_grid_values_is_that_grid_value():
    # fsum((0.35,) * 3) / 3 is 0.3499999999999999 in binary: a check ">= 0.35" every repeat met must pass
    assert Estimate(values=(0.35, 0.35, 0.35), replicates=(), level=0.95).point == 0.35
    for value in (0.35, 0.37, 0.39, 0.7):
        for n in (2, 3, 5, 7):
            assert Estimate(values=(value,) * n, replicates=(), level=0.95).point == value


def test_without_the_image_bootstrap_a_message_still_shows_the_t_interval():
    estimate = Resampling(repeats=3, samples=0, level=0.95).estimate(PerRepeat((0.4, 0.5, 0.6)))
    measure = Measure(estimate.point, "prune potential", "under nominal", estimate=estimate)
    assert measure.spread_text() == " ±0.10 [0.25, 0.75] (3 repeats, 95 %)"  # 0.5 -+ 4.303 * 0.1 / sqrt(3)


# --------------------------------------------------------------------------- groups over repeats
#
# two repeats, ratios 0.25 0.5, delta 0.01, two shifts of a group "mini@3":
#   repeat 0: contrast P = 0.5, fog P = 0     -> min 0,    mean 0.25
#   repeat 1: contrast P = 0,   fog P = 0.5   -> min 0,    mean 0.25
# the min over the group is the mean of each repeat's minimum (0), not the minimum of the members' means
# (both 0.25); the worst member is the one with the lowest mean: a tie, so the first (contrast@3)


def test_group_min_is_the_mean_of_each_repeats_minimum():
    from robustprune.core.shifts import Shift, ShiftEntry

    ratios = (0.25, 0.5)
    curves = [
        {NOMINAL: ((0.9, 0.9, 0.9),), "contrast@3": ((0.6, 0.6, 0.6),), "fog@3": ((0.7, 0.6, 0.6),)},
        {NOMINAL: ((0.9, 0.9, 0.9),), "contrast@3": ((0.6, 0.5, 0.5),), "fog@3": ((0.7, 0.7, 0.7),)},
    ]
    repeats = tuple(RepeatCurves(r, ratios, f"p{r}", ("a", "b"), accuracy) for r, accuracy in enumerate(curves))
    result = CaseResult(CaseKey("wt", "m", "d"), {"name": "wt", "structured": False}, ratios, repeats,
                        Resampling(repeats=2, samples=0, level=0.95))
    suite = Suite(models=["m"], datasets=["d"], methods=["wt"], ratios=ratios, delta=0.01, repeats=2,
                  gate_ratio=0.5)
    entry = ShiftEntry("mini@3", (Shift("contrast", 3), Shift("fog", 3)))
    group = Case(lambda: result, suite, [entry], CaseKey("wt", "m", "d")).group("mini@3")
    assert group.case.prune_potential("contrast@3").values == (0.5, 0.0)
    assert group.case.prune_potential("fog@3").values == (0.0, 0.5)
    assert group.min_prune_potential.values == (0.0, 0.0) and float(group.min_prune_potential) == 0.0
    assert group.mean_prune_potential.values == (0.25, 0.25) and float(group.mean_prune_potential) == 0.25
    assert group.worst == "contrast@3"
    assert group.min_prune_potential is not group.min_prune_potential  # a fresh Measure each time ...
    assert group.min_prune_potential.estimate is group.min_prune_potential.estimate  # ... of one cached estimate
