"""The segmentation suite: is a pruned small segmentation network still deployable under noise and corruptions?

The task is ``digits_seg``: the bundled handwritten digits (32x32) with every
stroke pixel labelled with its digit (11 classes with the background), so a
network must find the strokes *and* tell which digit they belong to. The
network is ``seg_cnn``, a small DeepLabV3-style net (an ASPP head whose
branches are concatenated), pruned by the paper's four methods in a cascade
over five ratios: WT and SiPP (unstructured; SiPP data-informed) and FT and
PFP (structured; PFP data-informed; both respect the concatenation),
retraining after each step. Every network is evaluated on the nominal test
set, the 19 corruptions at severity 3 and uniform noise at three levels
(two draws each); the corruptions and the noise change the images, never the
masks.

The score is mean intersection over union (mIoU, over the classes present),
so prune potential is the largest ratio whose mIoU stays within delta of the
parent's, and Δe is read on 1 - mIoU. Numbers carry a 95 % interval from a
paired bootstrap over the 360 test images (one parent: the intervals are the
test set's part only; add ``repeats=3`` for the training's part, at three
times the cost). Run it with ``robustprune run segmentation`` (or ``pytest``
on this file). Functional similarity and informative features are defined on
one class per image and are not measured here.

The limits pass for these defaults; docs/beyond-classification.md shows a
stricter gate failing with its numbers.
"""

from robustprune import Suite

suite = Suite(
    models=["seg_cnn"],
    datasets=["digits_seg"],
    methods=["wt", "sipp", "ft", "pfp"],
    shifts=["corruptions@3", "uniform_noise@0.1,0.2,0.4"],
    ratios=[0.2, 0.35, 0.5, 0.65, 0.8],
    delta=0.01,
    gate_ratio={"wt": 0.5, "sipp": 0.5, "ft": 0.35, "pfp": 0.35},
    retrain_epochs=3,
    noise_draws=2,
)


def test_nominal_prune_potential(case):
    """Pruning must be worth it on clean data: a third of the weights can go within 1 point of mIoU."""
    assert case.prune_potential() >= 0.35


def test_mean_prune_potential_under_shifts(group_case):
    """Under each shift group, pruning must on average stay safe up to 20 % of the weights."""
    assert group_case.mean_prune_potential >= 0.2


def test_mean_delta_excess_error_at_gate(group_case):
    """At the gate ratio, pruning may add on average at most 5 points to the mIoU a shift group costs."""
    assert group_case.mean_delta_excess_error <= 0.05


def test_delta_excess_error_at_gate(shift_case):
    """At the gate ratio, no single shift may cost the pruned network 20 points of mIoU more than the parent."""
    assert shift_case.delta_excess_error <= 0.20
