"""Segmentation and pluggable scores: mean IoU from confusion matrices, the bootstrap on any metric, masks that
move with their images in training and stay put under shifts, and a segmentation suite end to end in-process."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from robustprune import IGNORE_INDEX, DatasetRequest, DataSplits, ImageSet, Metric, Suite
from robustprune.compute.data import prepare
from robustprune.compute.training import augment, augment_dense
from robustprune.core.metrics import prune_potential
from robustprune.core.shifts import parse_shift
from robustprune.engine.bootstrap import ImageResamples
from robustprune.plugin.scores import confusion_statistics, fraction, mean_iou, top_k_statistics


def _logits(predicted: np.ndarray, classes: int) -> torch.Tensor:
    """Dense one-hot logits (N, C, H, W) whose argmax is ``predicted`` (N, H, W)."""
    return torch.nn.functional.one_hot(torch.from_numpy(predicted), classes).permute(0, 3, 1, 2).float()


# --------------------------------------------------------------------------- mean IoU, hand-worked

TRUTH = np.array([[[0, 0, 1, 1],
                   [0, 0, 1, 1],
                   [255, 255, 2, 2]]])
PREDICTED = np.array([[[0, 1, 1, 1],
                       [0, 0, 1, 2],
                       [2, 2, 2, 0]]])


def test_confusion_rows_are_truth_columns_predictions_ignoring_255():
    stats = confusion_statistics(_logits(PREDICTED, 3), torch.from_numpy(TRUTH), 3)
    assert stats.shape == (1, 9) and stats.dtype == torch.int64
    # truth 0: predicted 0,1,0,0 -> [3, 1, 0]; truth 1: 1,1,1,2 -> [0, 3, 1]; truth 2: 2,0 -> [1, 0, 1];
    # the two 255 pixels (predicted 2) are not counted
    assert stats.view(3, 3).tolist() == [[3, 1, 0], [0, 3, 1], [1, 0, 1]]


def test_mean_iou_by_hand():
    totals = confusion_statistics(_logits(PREDICTED, 3), torch.from_numpy(TRUTH), 3).sum(0).numpy()
    # IoU = TP / (row + column - TP): class 0: 3 / (4 + 4 - 3) = 3/5; class 1: 3 / (4 + 4 - 3) = 3/5;
    # class 2: 1 / (2 + 2 - 1) = 1/3
    assert mean_iou(totals, 1) == pytest.approx((3 / 5 + 3 / 5 + 1 / 3) / 3)


def test_a_class_absent_from_truth_and_predictions_is_left_out_but_a_predicted_one_counts():
    truth = np.array([[[0, 0], [1, 1]]])
    # four classes: class 2 is predicted once but never labelled (IoU 0), class 3 appears nowhere (no IoU)
    predicted = np.array([[[0, 2], [1, 1]]])
    totals = confusion_statistics(_logits(predicted, 4), torch.from_numpy(truth), 4).sum(0).numpy()
    # class 0: 1 / (2 + 1 - 1) = 1/2; class 1: 2/2 = 1; class 2: 0 / (0 + 1 - 0) = 0; class 3 left out
    assert mean_iou(totals, 1) == pytest.approx((0.5 + 1.0 + 0.0) / 3)
    assert mean_iou(np.zeros(16), 1) == 0.0  # nothing labelled, nothing predicted


def test_mean_iou_is_vectorized_over_leading_dimensions():
    a = confusion_statistics(_logits(PREDICTED, 3), torch.from_numpy(TRUTH), 3).sum(0).numpy()
    b = confusion_statistics(_logits(TRUTH.clip(0, 2), 3), torch.from_numpy(TRUTH), 3).sum(0).numpy()
    stacked = np.stack([[a, b], [b, a]])
    single = float(mean_iou(a, 1))
    np.testing.assert_allclose(mean_iou(stacked, 1), [[single, 1.0], [1.0, single]], rtol=1e-12)


def test_confusion_statistics_refuse_outputs_of_another_size():
    with pytest.raises(ValueError, match=r"output is \(2, 2\) pixels but the masks are \(3, 4\)"):
        confusion_statistics(torch.zeros(1, 3, 2, 2), torch.from_numpy(TRUTH), 3)


def test_top_k_statistics_and_fraction():
    outputs = torch.tensor([[0.1, 0.5, 0.4], [0.9, 0.05, 0.05], [0.2, 0.3, 0.5]])
    labels = torch.tensor([2, 0, 0])
    assert top_k_statistics(outputs, labels, 1).view(-1).tolist() == [0, 1, 0]
    assert top_k_statistics(outputs, labels, 2).view(-1).tolist() == [1, 1, 0]
    assert fraction(np.array([2]), 3) == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="segmentation dataset is scored with 'miou'"):
        top_k_statistics(torch.zeros(1, 3, 2, 2), torch.zeros(1, 2, 2, dtype=torch.long))


def test_prune_potential_on_a_miou_curve():
    """Prune potential reads any score: the largest ratio whose mIoU is within delta of the parent's."""
    truth = torch.from_numpy(np.array([[[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 2, 2]]]))
    wrong_pixels = [0, 1, 3, 2]  # parent, then ratios 0.3, 0.5, 0.7: pixels turned to class 0
    curve = []
    for wrong in wrong_pixels:
        predicted = truth.clone().view(-1)
        predicted[-wrong or len(predicted):] = 0  # the last pixels (class 2) predicted as background
        stats = confusion_statistics(_logits(predicted.view(1, 3, 4).numpy(), 3), truth, 3)
        curve.append(float(mean_iou(stats.sum(0).numpy(), 1)))
    parent, scores = curve[0], curve[1:]
    assert parent == 1.0 and scores[0] > scores[2] > scores[1]  # 1 wrong, then 3, then 2 wrong pixels
    # 1 wrong pixel: class 0 IoU 4/5, class 2 IoU 3/4 -> mIoU 0.85 (a loss of 0.15)
    assert scores[0] == pytest.approx((4 / 5 + 1 + 3 / 4) / 3)
    # 2 wrong: class 0 IoU 4/6, class 2 IoU 2/4 -> 0.722; 3 wrong: 4/7 and 1/4 -> 0.607
    assert scores[2] == pytest.approx((4 / 6 + 1 + 2 / 4) / 3) and scores[1] == pytest.approx((4 / 7 + 1 + 1 / 4) / 3)
    # the largest qualifying ratio counts, even past a failing one (0.5)
    assert prune_potential([0.3, 0.5, 0.7], scores, parent, delta=0.3) == 0.7
    assert prune_potential([0.3, 0.5, 0.7], scores, parent, delta=0.15) == 0.3
    assert prune_potential([0.3, 0.5, 0.7], scores, parent, delta=0.1) == 0.0


# --------------------------------------------------------------------------- the bootstrap on any metric

def test_resampled_scores_of_top1_are_the_exact_count_weighted_accuracies():
    rng = np.random.default_rng(0)
    correct = rng.random((3, 50)) < 0.7
    resamples = ImageResamples(seed=1, samples=200)
    by_scores = resamples.scores(correct[:, :, None].astype(np.int64), fraction)
    # the float32 product is exact for 0/1 rows: bit-identical to a float64 one
    expected = correct.astype(np.float64) @ resamples.counts(50).T.astype(np.float64) / 50
    assert by_scores.dtype == np.float64 and np.array_equal(by_scores, expected)


def test_resampled_miou_sums_each_resamples_confusion_matrices():
    rng = np.random.default_rng(0)
    stats = rng.integers(0, 50, size=(2, 20, 9))
    resamples = ImageResamples(seed=3, samples=100)
    got = resamples.scores(stats, mean_iou)
    counts = resamples.counts(20)
    for network in range(2):
        for b in (0, 57, 99):
            expected = mean_iou((counts[b][:, None] * stats[network]).sum(0), 20)
            assert got[network, b] == pytest.approx(expected, rel=1e-12)


def test_a_metric_must_name_known_tasks():
    with pytest.raises(ValueError, match="tasks must be among classification, segmentation"):
        Metric("depth", "depth", top_k_statistics, fraction, tasks=("regression",))


# --------------------------------------------------------------------------- data: masks with their images

def test_image_sets_check_mask_shapes_and_splits_their_task():
    images = np.zeros((2, 4, 5, 3), np.uint8)
    with pytest.raises(ValueError, match=r"masks the size of the images \(4, 5\)"):
        ImageSet(images, np.zeros((2, 5, 4), np.uint8))
    masks = ImageSet(images, np.zeros((2, 4, 5), np.uint8))
    classes = ImageSet(images, np.zeros(2, np.int64))
    with pytest.raises(ValueError, match=r"segmentation dataset's train labels must be \(N, H, W\) masks"):
        DataSplits(classes, masks, 2, (0.5,) * 3, (0.2,) * 3, task="segmentation")
    with pytest.raises(ValueError, match=r"classification dataset's test labels must be \(N,\) classes"):
        DataSplits(classes, masks, 2, (0.5,) * 3, (0.2,) * 3)
    assert DataSplits(masks, masks, 2, (0.5,) * 3, (0.2,) * 3, task="segmentation").metric_name == "miou"


@pytest.mark.parametrize("mode", ["crop", "crop_flip", "resized_crop_flip"])
def test_crops_and_flips_move_the_masks_with_their_images(mode):
    n, h, w = 16, 12, 12
    masks = torch.randint(0, 5, (n, h, w))
    images = masks.unsqueeze(1).float().repeat(1, 3, 1, 1)  # each channel carries the label: pixels line up
    pad = torch.full((3,), -1.0)
    out, moved = augment_dense(images, masks, mode, pad, torch.Generator().manual_seed(0))
    assert moved.shape == masks.shape and moved.dtype == masks.dtype
    inside = out[:, 0] >= 0  # padding (crop) is -1 in the images and IGNORE_INDEX in the masks
    if mode != "resized_crop_flip":  # bilinear images blend labels; nearest masks do not
        assert torch.equal(out[:, 0][inside], moved[inside].float())
        assert bool((moved[~inside] == IGNORE_INDEX).all()) and bool((~inside).any())
    assert set(moved.unique().tolist()) <= set(range(5)) | {IGNORE_INDEX}
    # the same random draws as the images alone: a dense dataset trains on the same crops
    alone = augment(images, mode, pad, torch.Generator().manual_seed(0))
    assert torch.allclose(alone, out)


def test_shifts_leave_masks_untouched(make_engine, registry):
    """Pixel and tensor shifts change the images of a segmentation test set, never its masks."""
    suite = Suite(models=["small_cnn"], datasets=["digits_seg"], methods=["wt"], ratios=[0.5],
                  shifts=["contrast@3", "uniform_noise@0.2"], bootstrap=0)
    engine = make_engine(suite)
    data = engine.data("digits_seg")
    assert data.splits.task == "segmentation" and data.test_labels.shape == (360, 32, 32)
    nominal = engine.test_inputs(data)
    for spec in ("contrast@3", "uniform_noise@0.2"):
        (shift,) = parse_shift(spec, registry).members
        assert not torch.equal(engine.test_inputs(data, shift), nominal), spec
        assert torch.equal(engine.shifted.labels(data, shift), data.test_labels), spec


def test_digits_seg_labels_strokes_with_their_digit(registry):
    splits = registry.dataset("digits_seg").item.load(DatasetRequest(seed=0))
    digits = registry.dataset("digits").item.load(DatasetRequest(seed=0))
    assert splits.num_classes == 11 and splits.class_names[0] == "background"
    assert np.array_equal(splits.test.images, digits.test.images)  # the same images and split
    for mask, digit, image in zip(splits.test.labels[:20], digits.test.labels[:20], splits.test.images[:20]):
        assert set(np.unique(mask)) == {0, digit + 1}
        assert np.array_equal(mask > 0, image[..., 0] >= 128)


def test_prepared_masks_stay_small():
    masks = ImageSet(np.zeros((3, 4, 4, 3), np.uint8), np.full((3, 4, 4), IGNORE_INDEX, np.uint8))
    data = prepare("m", "key", DataSplits(masks, masks, 2, (0.5,) * 3, (0.2,) * 3, task="segmentation"))
    assert data.train_labels.dtype == torch.uint8 and int(data.test_labels.max()) == IGNORE_INDEX


# --------------------------------------------------------------------------- a segmentation suite in-process

SEG_PLUGIN = '''
"""A toy segmentation task: bright pixels are class 1 in even images, class 2 in odd ones; a per-pixel net."""

import numpy as np
import torch
from torch import nn

from robustprune import DatasetSpec, DataSplits, ImageSet, Metric, ModelSpec, Recipe, hookimpl


def load(request):
    rng = np.random.default_rng(request.seed)

    def images(n):
        kind = np.arange(n) % 2
        bright = rng.random((n, 8, 8)) < 0.4
        masks = np.where(bright, 1 + kind[:, None, None], 0).astype(np.uint8)
        masks[:, 0, 0] = 255  # one unlabelled pixel per image
        level = np.where(bright, np.where(kind[:, None, None] == 1, 230, 140), 30)
        pixels = np.clip(level[..., None] + rng.integers(-20, 20, size=(n, 8, 8, 3)), 0, 255).astype(np.uint8)
        return ImageSet(pixels, masks)

    return DataSplits(images(96), images(48), 3, (0.4,) * 3, (0.3,) * 3, task="segmentation")


def build(num_classes, input_shape):
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
                         nn.Conv2d(8, num_classes, 1))


def labelled_pixels(outputs, labels, num_classes):
    """A third-party score: the share of labelled pixels predicted right (pixel accuracy)."""
    counted = labels != 255
    right = ((outputs.argmax(1) == labels) & counted).flatten(1).sum(1)
    return torch.stack([right, counted.flatten(1).sum(1)], 1)


def pixel_share(totals, count):
    return totals[..., 0] / np.maximum(totals[..., 1], 1)


@hookimpl
def robustprune_register_datasets(register):
    register(DatasetSpec("toyseg", load, "bright pixels labelled by the image's kind"))


@hookimpl
def robustprune_register_models(register):
    register(ModelSpec("pixelnet", build, Recipe(epochs=20, batch_size=32, lr=0.05, augment="crop_flip")))


@hookimpl
def robustprune_register_metrics(register):
    register(Metric("pixel_acc", "pixel acc", labelled_pixels, pixel_share, tasks=("segmentation",)))
'''

SEG_SUITE = '''
from robustprune import Suite

suite = Suite(models=["pixelnet"], datasets=["toyseg"], methods=["wt", "sipp"], shifts=["uniform_noise@0.2"],
              ratios=[0.25, 0.5], gate_ratio=0.25, retrain_epochs=1, bootstrap=100, plugins=["seg_plugin"],{extra})


def test_nominal(case):
    assert case.prune_potential() >= 0.0


def test_shift(shift_case):
    assert shift_case.delta_excess_error <= 1.0
'''


@pytest.fixture
def run_seg_suite(pytester, torch_warmed_up):
    pytester.makepyfile(seg_plugin=SEG_PLUGIN)

    def run(extra: str = "", *args: str):
        pytester.makepyfile(suite_seg=SEG_SUITE.format(extra=extra))
        return pytester.runpytest_inprocess("suite_seg.py", f"--rp-store={pytester.path / 'store'}",
                                            "--rp-workers=1", "-p", "no:cacheprovider",
                                            f"--rp-report={pytester.path / 'report'}", *args)

    return run


def test_a_segmentation_suite_reports_miou(run_seg_suite, pytester):
    result = run_seg_suite()
    result.assert_outcomes(passed=4)
    out = result.stdout.str()
    assert "mIoU %" in out and "acc %" not in out and "near chance" not in out  # a two-line header: parent, mIoU %
    report = json.loads((pytester.path / "report" / "robustprune-report.json").read_text())
    (suite,) = report["suites"]
    assert suite["tables"][0]["metric"] == {"name": "miou", "label": "mIoU", "task": "segmentation"}
    case = suite["cases"][0]
    assert case["metric"]["name"] == "miou"
    parent_miou = suite["tables"][0]["rows"][0]["parent_accuracy"]
    assert 0.5 < parent_miou <= 1.0  # learnt: predicting background everywhere scores about 0.2
    csv = (pytester.path / "report" / "robustprune-report.csv").read_text().splitlines()
    assert csv[0].split(",")[11] == "metric" and all(",miou," in line for line in csv[1:])


def test_a_third_party_metric_scores_the_suite(run_seg_suite, pytester):
    result = run_seg_suite('\n    metric="pixel_acc",')
    result.assert_outcomes(passed=4)
    assert "parent pixel acc %" in (pytester.path / "report" / "robustprune-report.md").read_text()
    report = json.loads((pytester.path / "report" / "robustprune-report.json").read_text())
    row = report["suites"][0]["tables"][0]["rows"][0]
    assert row["parent_accuracy"] > 0.5


def test_a_metric_for_another_task_fails_the_cases_with_the_fitting_ones(run_seg_suite):
    result = run_seg_suite('\n    metric="top5",')
    out = result.stdout.str()
    assert result.ret == 1
    assert "metric 'top5' scores classification, but dataset 'toyseg' is a segmentation dataset; use one of " \
           "miou, pixel_acc" in out


def test_an_unknown_metric_is_a_configuration_error(run_seg_suite):
    result = run_seg_suite('\n    metric="miuo",')
    assert result.ret == 2
    assert "unknown metric 'miuo'; did you mean 'miou'?" in result.stdout.str() + result.stderr.str()


def test_similarity_on_segmentation_says_it_is_for_classification(run_seg_suite):
    result = run_seg_suite('\n    similarity=Similarity(eps=(0.1,), images=8, draws=1),'.replace(
        "Similarity", "__import__('robustprune').Similarity"))
    out = result.stdout.str()
    assert result.ret == 1
    assert "similarity apply to classification only" in out and "dataset 'toyseg' is a segmentation dataset" in out


def test_the_plugin_kit_checks_segmentation_datasets_and_models(registry):
    from robustprune.testing import check_dataset, check_model

    splits = check_dataset(registry.dataset("digits_seg").item)
    assert splits.task == "segmentation"
    check_model(registry.model("seg_cnn").item, num_classes=11, input_shape=(3, 32, 32), dense=True)
    with pytest.raises(AssertionError, match=r"expected \(2, 11\)"):
        check_model(registry.model("seg_cnn").item, num_classes=11, input_shape=(3, 32, 32))


# --------------------------------------------------------------------------- refusals before any work

def test_masks_with_labels_beyond_the_classes_are_refused():
    images = np.zeros((2, 4, 4, 3), np.uint8)
    masks = np.zeros((2, 4, 4), np.uint8)
    masks[1, 2, 3] = 7
    with pytest.raises(ValueError, match=r"train masks: image 1 has the label 7: labels are 0..2, or 255"):
        DataSplits(ImageSet(images, masks), ImageSet(images, masks), 3, (0.5,) * 3, (0.2,) * 3, task="segmentation")
    with pytest.raises(ValueError, match="1 to 255 classes"):
        DataSplits(ImageSet(images, masks), ImageSet(images, masks), 300, (0.5,) * 3, (0.2,) * 3,
                   task="segmentation")


def test_float_statistics_are_refused_with_the_reason():
    from robustprune.compute.evaluation import evaluate

    network = torch.nn.Conv2d(3, 2, 1)
    with pytest.raises(ValueError, match="must be integer counts"):
        evaluate(network, torch.zeros(2, 3, 4, 4), torch.zeros(2, 4, 4, dtype=torch.long),
                 lambda out, labels, classes: out.mean((1, 2, 3)).unsqueeze(1), 2)


def test_the_float32_and_float64_bootstrap_paths_agree():
    rng = np.random.default_rng(1)
    small = rng.integers(0, 3, size=(2, 40, 4))  # sums below 2**24: the float32 path
    resamples = ImageResamples(seed=5, samples=50)
    counts = resamples.counts(40).astype(np.float64)
    exact = np.einsum("bn,wnk->wbk", counts, small.astype(np.float64))
    assert np.array_equal(resamples.scores(small, lambda t, n: t[..., 0] + 1000 * t[..., 3]),
                          exact[..., 0] + 1000 * exact[..., 3])
    large = small * 2**22  # sums beyond 2**24: the float64 path, still exact
    assert np.array_equal(resamples.scores(large, lambda t, n: t[..., 1]), exact[..., 1] * 2**22)


def test_a_classification_model_on_segmentation_data_fails_before_training(make_engine):
    from robustprune.core.results import CaseError, CaseKey

    messages: list[str] = []
    engine = make_engine(Suite(models=["small_cnn"], datasets=["digits_seg"], methods=["wt"], ratios=[0.5],
                               bootstrap=0), messages)
    with pytest.raises(CaseError, match=r"model 'small_cnn' returns outputs of shape \(1, 11\) .* a segmentation "
                                        r"dataset with 11 classes: it needs dense logits"):
        engine.result(CaseKey("wt", "small_cnn", "digits_seg"))
    assert not [m for m in messages if "training" in m]


def test_similarity_on_segmentation_fails_before_training(make_engine):
    from robustprune import Similarity
    from robustprune.core.results import CaseError

    messages: list[str] = []
    engine = make_engine(Suite(models=["seg_cnn"], datasets=["digits_seg"], methods=["wt"], ratios=[0.5],
                               similarity=Similarity(eps=(0.1,), images=8, draws=1), bootstrap=0), messages)
    with pytest.raises(CaseError, match="similarity apply to classification only"):
        engine.parent("seg_cnn", "digits_seg")  # the workers' first unit of work: nothing is trained
    assert not [m for m in messages if "training" in m]


def test_shift_preview_shows_segmentation_images(tmp_path):
    from robustprune.cli import main

    out = tmp_path / "preview.png"
    status = main(["shifts", "preview", "contrast@3", "--dataset", "digits_seg", "--images", "4", "-o", str(out)])
    assert status == 0 and out.stat().st_size > 0


def test_changing_the_metric_re_evaluates_without_retraining(run_suite):
    checks = "\ndef test_nominal(case):\n    assert case.prune_potential() >= 0.0\n"
    first = run_suite(checks, "--log-cli-level=INFO")
    first.assert_outcomes(passed=1)
    again = run_suite(checks, "--log-cli-level=INFO", extra='metric="top5",')
    again.assert_outcomes(passed=1)
    log = again.stdout.str()
    assert "evaluating 6 network x shift pairs" in log, log
    assert "training the parent (" not in log and "retrain epoch" not in log, log  # networks are reused
    assert "top-5" in log  # the header names the new score
