"""robustprune.engine.features: backward selection finds known informative pixels; overlap and the cross test."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from robustprune.engine.features import (
    backward_selection,
    confidence_on,
    overlap,
    pixel_mask,
    removal_schedule,
    schedule_cost,
)

torch.set_num_threads(1)


class PixelPair(nn.Module):
    """Two classes: class 0 scores 4 x (pixel a + pixel b), class 1 a constant 6.

    On images where a and b are 1, class 0 wins with probability sigmoid(2) =
    0.881; dropping either pixel gives sigmoid(-2) = 0.119, and every other
    pixel is irrelevant. At threshold 0.8 the informative subset is exactly {a, b}.
    """

    def __init__(self, a: tuple[int, int], b: tuple[int, int]):
        super().__init__()
        self.a, self.b = a, b

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        score = 4 * (x[:, 0, self.a[0], self.a[1]] + x[:, 0, self.b[0], self.b[1]])
        return torch.stack([score, torch.full_like(score, 6.0)], 1)


A_PIXELS = ((1, 2), (3, 0))
B_PIXELS = ((0, 0), (2, 3))


def _images(n: int = 3) -> torch.Tensor:
    x = torch.rand(n, 1, 4, 4, generator=torch.Generator().manual_seed(0)) + 0.5  # irrelevant pixels: nonzero
    for row, col in (*A_PIXELS, *B_PIXELS):
        x[:, 0, row, col] = 1.0
    return x


def _mask_of(pixels) -> torch.Tensor:
    mask = torch.zeros(4, 4, dtype=torch.bool)
    for row, col in pixels:
        mask[row, col] = True
    return mask.view(-1)


@pytest.mark.parametrize("cap", [None, 60])
def test_backward_selection_finds_the_known_pixels(cap):
    found = backward_selection(PixelPair(*A_PIXELS), _images(), patch=1, threshold=0.8, max_forward=cap)
    expected = _mask_of(A_PIXELS)
    for keep in found.keep:
        assert torch.equal(keep, expected)
    assert found.predicted.tolist() == [0, 0, 0]
    assert found.full_prob == pytest.approx([1 / (1 + math.exp(-2))] * 3, rel=1e-6)
    assert found.subset_prob == pytest.approx(found.full_prob.tolist(), rel=1e-6)
    assert found.size.tolist() == pytest.approx([2 / 16] * 3)
    # the two needed pixels are removed last: they rank highest
    for order in found.order:
        assert set(order.topk(2).indices.tolist()) == set(expected.nonzero().view(-1).tolist())


def test_a_coarse_cap_gives_a_sufficient_superset():
    # 20 passes allow only two coarse steps: the subset still holds both pixels, plus irrelevant ones
    found = backward_selection(PixelPair(*A_PIXELS), _images(), patch=1, threshold=0.8, max_forward=20)
    expected = _mask_of(A_PIXELS)
    for keep in found.keep:
        assert (keep & expected).equal(expected) and int(keep.sum()) > 2
    assert (found.subset_prob >= 0.8 * found.full_prob).all()


def test_patches_group_pixels():
    # 2x2 patches: a = (1, 2) lies in patch (0, 1), b = (3, 0) in patch (1, 0)
    found = backward_selection(PixelPair(*A_PIXELS), _images(), patch=2, threshold=0.8)
    assert found.grid == (2, 2)
    assert found.keep[0].tolist() == [False, True, True, False]


def test_cross_test_and_overlap_have_known_values():
    images = _images()
    net_a, net_b = PixelPair(*A_PIXELS), PixelPair(*B_PIXELS)
    subsets_a = backward_selection(net_a, images, patch=1, threshold=0.8)
    subsets_b = backward_selection(net_b, images, patch=1, threshold=0.8)
    # B sees only A's pixels: its class-0 score is 0, so p(class 0) = sigmoid(-6)
    confidence, same = confidence_on(net_b, images, subsets_a)
    assert confidence == pytest.approx([1 / (1 + math.exp(6))] * 3, rel=1e-5)
    assert not same.any()
    confidence, same = confidence_on(net_a, images, subsets_a)
    assert confidence == pytest.approx([1 / (1 + math.exp(-2))] * 3, rel=1e-5)
    assert same.all()
    assert overlap(subsets_a.keep, subsets_b.keep).tolist() == [0.0, 0.0, 0.0]
    assert overlap(subsets_a.keep, subsets_a.keep).tolist() == [1.0, 1.0, 1.0]


def test_overlap_is_intersection_over_union():
    a = torch.tensor([[True, True, False, False], [False, False, False, False]])
    b = torch.tensor([[True, False, True, False], [False, False, False, False]])
    assert overlap(a, b).tolist() == pytest.approx([1 / 3, 1.0])


@pytest.mark.parametrize("num, cap", [(16, 10_000), (256, 3000), (256, 600), (1024, 5000), (64, 66)])
def test_schedule_stays_within_the_cap_and_removes_everything(num, cap):
    chunks = removal_schedule(num, cap)
    assert sum(chunks) == num
    assert schedule_cost(num, chunks) <= cap
    assert chunks[-1] == 1 or len(chunks) == 1  # fine resolution where subsets get small


def test_exact_schedule_when_affordable_and_error_when_the_cap_is_too_small():
    assert removal_schedule(16, 10_000) == [1] * 16
    assert removal_schedule(16, 2) == [16]  # one step: the full image or nothing
    with pytest.raises(ValueError, match="below the minimum of 2 passes"):
        removal_schedule(16, 1)


def test_pixel_mask_crops_edge_patches():
    keep = torch.tensor([[True, False, False, True]])  # a 2x2 grid of 3x3 patches on a 5x5 image
    mask = pixel_mask(keep, (2, 2), 3, 5, 5)
    assert mask.shape == (1, 1, 5, 5)
    assert mask[0, 0, :3, :3].all() and mask[0, 0, 3:, 3:].all()
    assert not mask[0, 0, :3, 3:].any() and not mask[0, 0, 3:, :3].any()


def test_results_are_deterministic():
    torch.manual_seed(0)
    network = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 8 * 8, 5))
    images = torch.randn(4, 3, 8, 8, generator=torch.Generator().manual_seed(3))
    first = backward_selection(network, images, patch=2, threshold=0.9, max_forward=40)
    second = backward_selection(network, images, patch=2, threshold=0.9, max_forward=40)
    assert torch.equal(first.keep, second.keep) and torch.equal(first.order, second.order)
    # every subset keeps at least the threshold of the full image's probability
    assert (first.subset_prob >= 0.9 * first.full_prob - 1e-6).all()
