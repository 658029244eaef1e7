"""Shifted test sets are deterministic: per dataset, shift and image, whatever the worker count."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from robustprune.compute.data import ShiftJob, generate_pixel_shifts
from robustprune.core.shifts import image_seeds, parse_shift
from robustprune_plugins.shifts.corruptions import corrupt_image
from robustprune_plugins.shifts.uniform_noise import add_uniform_noise


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=(6, 32, 32, 3), dtype=np.uint8)


def test_glass_blur_follows_its_seed_not_numpys_global_state(images):
    # glass_blur's pixel shuffle runs in numba, whose generator ignores np.random.seed
    first = corrupt_image("glass_blur", images[0], 3, seed=1234)
    np.random.seed(999)  # disturb the global state in between
    again = corrupt_image("glass_blur", images[0], 3, seed=1234)
    other = corrupt_image("glass_blur", images[0], 3, seed=4321)
    assert np.array_equal(first, again)
    assert not np.array_equal(first, other)


@pytest.mark.parametrize("name", ["gaussian_noise", "impulse_noise", "frost", "spatter", "elastic_transform"])
def test_random_corruptions_are_reproducible_per_seed(images, name):
    a = corrupt_image(name, images[1], 3, seed=7)
    b = corrupt_image(name, images[1], 3, seed=7)
    c = corrupt_image(name, images[1], 3, seed=8)
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def _job(shift, seeds, family=None) -> ShiftJob:
    return ShiftJob(shift.label, shift.registered.item.implementation(family), shift.param, seeds)


@pytest.mark.parametrize("family", ["cifar10-c", "imagenet-c"])
def test_all_19_corruptions_identical_with_one_and_two_workers(registry, images, family):
    entry = parse_shift("corruptions@3", registry)
    jobs = [_job(shift, image_seeds(0, "dataset-key", shift, len(images)), family) for shift in entry.members]
    serial = generate_pixel_shifts(images, jobs, workers=1)
    parallel = generate_pixel_shifts(images, jobs, workers=2)
    assert len(serial) == 19
    for shift, a, b in zip(entry.members, serial, parallel):
        assert a.shape == images.shape and a.dtype == np.uint8, shift.label
        assert np.array_equal(a, b), f"{shift.label} differs between 1 and 2 workers"


def test_an_image_is_shifted_alike_whatever_else_is_in_the_set(registry, images):
    (shift,) = parse_shift("shot_noise@2", registry).members
    seeds = image_seeds(0, "k", shift, len(images))
    whole = generate_pixel_shifts(images, [_job(shift, seeds)], workers=1)[0]
    part = generate_pixel_shifts(images[3:], [_job(shift, seeds[3:])], workers=1)[0]
    assert np.array_equal(whole[3:], part)


def test_uniform_noise_is_added_to_the_normalized_input_without_clipping():
    batch = torch.full((3, 3, 4, 4), 5.0)  # far outside any image range: clipping would show
    seeds = np.array([1, 2, 3], dtype=np.int64)
    noisy = add_uniform_noise(batch, 0.2, seeds)
    delta = noisy - batch
    assert delta.abs().max() <= 0.2 and delta.abs().max() > 0.1
    assert torch.equal(noisy, add_uniform_noise(batch, 0.2, seeds))  # same seeds, same noise
    assert not torch.equal(noisy[0], noisy[1])  # each image its own draw
    assert torch.equal(add_uniform_noise(batch, 0.0, seeds), batch)
