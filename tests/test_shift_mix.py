"""Robust training's shift mix: what it draws, what it never draws, and how it enters training and keys."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from robustprune import PAPER_HELD_OUT, PAPER_TRAIN_SHIFTS, ShiftMix, Suite
from robustprune.compute.data import prepare
from robustprune.compute.store import Store
from robustprune.compute.training import train
from robustprune.engine.robust_training import RobustTraining, image_seed, resolve_mix
from robustprune.plugin.api import DataSplits, ImageSet, Recipe
from robustprune_plugins.shifts.cifar10c import corrupt_cifar
from robustprune_plugins.shifts.corruptions import corrupt_image

torch.set_num_threads(1)


def _suite(**kwargs) -> Suite:
    return Suite(models=["small_cnn"], datasets=["digits"], methods=["wt"], ratios=[0.5], **kwargs)


def _training(tmp_path, registry, shift_family="auto", **kwargs) -> RobustTraining:
    mix = resolve_mix(_suite(**kwargs), registry)
    return RobustTraining(mix, Store(tmp_path / "store"), seed=0, workers=1, progress=lambda message: None,
                          requested_family=lambda dataset: shift_family)


def _tiny_data(n: int = 48):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8)  # textured: any corruption changes them
    labels = np.arange(n) % 10
    splits = DataSplits(ImageSet(images, labels), ImageSet(images[:10], labels[:10]), 10, (0.5,) * 3, (0.25,) * 3)
    return prepare("tiny", "tiny-key", splits)


# --------------------------------------------------------------------------- what the mix draws


@pytest.mark.parametrize("clean", [1 / 6, 0.5, 0.0])
def test_draws_clean_images_at_the_stated_rate(registry, clean):
    mix = resolve_mix(_suite(train_shifts=ShiftMix(PAPER_TRAIN_SHIFTS, clean=clean)), registry)
    member, severity = mix.draw(30_000, seed=7)
    observed = float((member < 0).mean())
    sigma = (clean * (1 - clean) / 30_000) ** 0.5
    assert abs(observed - clean) <= 4 * sigma + 1e-12
    assert ((member < 0) == (severity == 0)).all()  # clean images have severity 0, and only they do
    assert set(severity[member >= 0].tolist()) == {1, 2, 3, 4, 5}
    if clean < 1:
        assert set(member[member >= 0].tolist()) == set(range(len(PAPER_TRAIN_SHIFTS)))  # every member is used


def test_the_paper_mix_is_severity_zero_to_five_uniformly(registry):
    mix = resolve_mix(_suite(train_shifts=PAPER_TRAIN_SHIFTS, held_out=PAPER_HELD_OUT), registry)
    _, severity = mix.draw(60_000, seed=1)
    shares = np.bincount(severity, minlength=6) / len(severity)
    assert np.allclose(shares, 1 / 6, atol=0.01)
    assert [m.name for m in mix.members] == list(PAPER_TRAIN_SHIFTS)
    assert [m.name for m in mix.held_out] == list(PAPER_HELD_OUT)


@pytest.mark.parametrize(("shift_family", "corrupt"), [("auto", corrupt_cifar), ("imagenet-c", corrupt_image)])
def test_training_copies_never_hold_a_held_out_corruption(tmp_path, registry, shift_family, corrupt):
    # 32x32 images: the CIFAR-10-C family unless the suite names another
    training = _training(tmp_path, registry, shift_family,
                         train_shifts=ShiftMix(("contrast", "shot_noise", "impulse_noise"), pool=3),
                         held_out=("gaussian_noise", "fog"))
    data = _tiny_data()
    pool = training.pool(data)
    pool(0)  # copies are generated on first use, all at once
    names = [m.name for m in training.mix.members]
    seen = set()
    for copy in range(3):
        stored = training.store.load("train_pool", pool.key(copy))
        member, severity, images = stored["member"].numpy(), stored["severity"].numpy(), stored["images"].numpy()
        seen |= {names[m] for m in member if m >= 0}
        original = data.splits.train.images
        for i in range(len(original)):
            if member[i] < 0:
                assert np.array_equal(images[i], original[i])  # clean: untouched
            else:  # corrupted by exactly the drawn shift, severity and seed
                expected = corrupt(names[member[i]], original[i], int(severity[i]),
                                   image_seed(training.seed, data.key, copy, i))
                assert np.array_equal(images[i], expected)
    assert seen <= {"contrast", "shot_noise", "impulse_noise"}
    assert not seen & {"gaussian_noise", "fog"}
    # epochs cycle through the copies, normalized
    assert torch.equal(pool(0), pool(3)) and not torch.equal(pool(0), pool(1))
    assert torch.equal(pool(1), data.normalize(training.store.load("train_pool", pool.key(1))["images"].numpy()))


def test_copies_are_reused_from_the_store(tmp_path, registry):
    kwargs = dict(train_shifts=ShiftMix(("contrast",), pool=1))
    first = _training(tmp_path, registry, **kwargs).pool(_tiny_data())(0)
    log = (tmp_path / "store" / "work.log").read_text()
    second = _training(tmp_path, registry, **kwargs).pool(_tiny_data())(0)
    assert torch.equal(first, second)
    assert (tmp_path / "store" / "work.log").read_text() == log  # nothing generated the second time


# --------------------------------------------------------------------------- validation


def test_a_held_out_shift_in_the_mix_is_refused(registry):
    with pytest.raises(ValueError, match="fog in both train_shifts and held_out"):
        _suite(train_shifts=["contrast", "fog"], held_out=["fog"])
    # through a group: "noise" holds gaussian_noise
    with pytest.raises(ValueError, match="gaussian_noise are both in train_shifts and held_out"):
        resolve_mix(_suite(train_shifts=["noise"], held_out=["gaussian_noise"]), registry)


def test_only_pixel_shifts_can_be_mixed(registry):
    with pytest.raises(ValueError, match="'uniform_noise', which is not a pixel shift"):
        resolve_mix(_suite(train_shifts=["uniform_noise"]), registry)


def test_held_out_needs_a_mix_and_names_are_checked(registry):
    with pytest.raises(ValueError, match="set train_shifts too"):
        _suite(held_out=["fog"])
    with pytest.raises(LookupError, match="contrst"):
        resolve_mix(_suite(train_shifts=["contrst"]), registry)
    with pytest.raises(ValueError, match="severity"):
        resolve_mix(_suite(train_shifts=ShiftMix(("contrast",), severities=(1, 9))), registry)


# --------------------------------------------------------------------------- engine and training


def test_mix_adds_train_and_test_columns_and_enters_keys(make_engine):
    plain = make_engine(_suite(shifts=["contrast@3"]))
    mixed = make_engine(_suite(shifts=["contrast@3"], train_shifts=["contrast", "fog"], held_out=["snow"]))
    other = make_engine(_suite(shifts=["contrast@3"], train_shifts=ShiftMix(("contrast", "fog"), clean=0.5),
                               held_out=["snow"]))
    assert [e.label for e in plain.shift_entries] == ["contrast@3"]
    assert [e.label for e in mixed.shift_entries] == ["contrast@3", "train_shifts@3", "held_out@3"]
    assert [m.label for m in mixed.shift_entries[1].members] == ["contrast@3", "fog@3"]
    assert [s.label for s in mixed.shifts] == ["nominal", "contrast@3", "fog@3", "snow@3"]
    assert plain.robust_training is None  # no mix: nothing enters the keys of existing parents and steps
    assert mixed.robust_training is not None and other.robust_training is not None
    data = mixed.data("digits")
    assert mixed.robust_training.key_part(data) != other.robust_training.key_part(data)
    # the members' parameter family on this dataset is part of it: 32x32 digits -> CIFAR-10-C's
    assert mixed.robust_training.key_part(data)["families"] == ["cifar10-c", "cifar10-c"]
    forced = make_engine(_suite(shifts=["contrast@3"], train_shifts=["contrast", "fog"], held_out=["snow"],
                                shift_family="imagenet-c"))
    assert forced.robust_training.key_part(data)["families"] == ["imagenet-c", "imagenet-c"]


def test_train_uses_the_epoch_inputs():
    torch.manual_seed(0)
    inputs = torch.randn(16, 3, 8, 8)
    labels = torch.arange(16) % 2
    asked: list[int] = []

    def epoch_inputs(epoch: int) -> torch.Tensor:
        asked.append(epoch)
        return inputs * (epoch + 2)

    def run(**kwargs):
        torch.manual_seed(0)
        network = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 2))
        train(network, inputs, labels, Recipe(epochs=3, batch_size=8, augment="none"), epochs=3, seed=0,
              pad_value=torch.zeros(3), **kwargs)
        return network[1].weight.detach().clone()

    plain, mixed = run(), run(epoch_inputs=epoch_inputs)
    assert asked == [0, 1, 2]
    assert not torch.equal(plain, mixed)
