"""robustprune.engine.similarity: softmax distance and top-1 agreement under noise, on networks with known answers."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from robustprune.engine.similarity import select_images, similarity_under_noise

torch.set_num_threads(1)

NUM_CLASSES = 10
SCALE = 10.0  # logit of the predicted class; every other logit is 0


class Fixed(nn.Module):
    """Predicts class ``cls`` for every input, with logit SCALE."""

    def __init__(self, cls: int = 0):
        super().__init__()
        self.cls = cls

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return SCALE * nn.functional.one_hot(torch.full((len(x),), self.cls), NUM_CLASSES).float()


class FlipEvery(nn.Module):
    """Like Fixed(0), but predicts class 1 for images whose id (pixel 0 of channel 0) is a multiple of ``every``.

    Image ids are integers and the noise stays below 0.5, so rounding recovers
    the id under every draw: exactly 1/every of the images flip, whatever the noise.
    """

    def __init__(self, every: int):
        super().__init__()
        self.every = every

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ids = x[:, 0, 0, 0].round().long()
        cls = torch.where(ids % self.every == 0, 1, 0)
        return SCALE * nn.functional.one_hot(cls, NUM_CLASSES).float()


def _images(n: int = 40) -> torch.Tensor:
    x = torch.randn(n, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    x[:, 0, 0, 0] = torch.arange(n, dtype=torch.float32)  # the image id
    return x


def _small_cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, NUM_CLASSES))


@pytest.mark.parametrize("eps", [0.0, 0.2, 0.45])
def test_identical_networks_agree_fully_at_distance_zero(eps):
    network = _small_cnn()
    (stats,) = similarity_under_noise(network, [network], _images(), eps, draws=3, seed=0)
    assert stats.agreement == 1.0
    assert stats.distance == 0.0
    assert stats.samples == 40 * (1 if eps == 0 else 3)


def test_a_copy_of_the_network_is_identical_too():
    network = _small_cnn()
    copy = _small_cnn()
    copy.load_state_dict(network.state_dict())
    (stats,) = similarity_under_noise(network, [copy], _images(), 0.3, draws=2, seed=5)
    assert (stats.agreement, stats.distance) == (1.0, 0.0)


@pytest.mark.parametrize("every, share", [(4, 0.25), (5, 0.2), (2, 0.5)])
def test_flipping_a_known_share_of_labels_gives_that_share(every, share):
    stats = similarity_under_noise(Fixed(0), [FlipEvery(every)], _images(40), 0.4, draws=5, seed=3)[0]
    assert stats.agreement == pytest.approx(1 - share, abs=1e-12)
    # a flipped image's two softmax vectors differ in two entries, by p_max - p_other each
    p_max = math.exp(SCALE) / (math.exp(SCALE) + NUM_CLASSES - 1)
    p_other = 1 / (math.exp(SCALE) + NUM_CLASSES - 1)
    assert stats.distance == pytest.approx(share * math.sqrt(2) * (p_max - p_other), rel=1e-9)


def test_several_networks_at_once_match_one_at_a_time():
    reference, a, b = _small_cnn(), FlipEvery(4), _small_cnn()
    with torch.no_grad():
        for p in b.parameters():
            p.add_(0.05)
    together = similarity_under_noise(reference, [a, b], _images(), 0.2, draws=3, seed=9)
    alone = [similarity_under_noise(reference, [n], _images(), 0.2, draws=3, seed=9)[0] for n in (a, b)]
    assert together == alone


def test_results_do_not_depend_on_batch_size():
    reference, other = _small_cnn(), _small_cnn()
    with torch.no_grad():
        for p in other.parameters():
            p.mul_(1.1)
    big = similarity_under_noise(reference, [other], _images(), 0.3, draws=2, seed=4, batch_size=500)[0]
    small = similarity_under_noise(reference, [other], _images(), 0.3, draws=2, seed=4, batch_size=7)[0]
    assert big.agreement == small.agreement
    assert big.distance == pytest.approx(small.distance, rel=1e-6)


def test_noise_changes_outputs_and_the_seed_changes_the_noise():
    reference, other = _small_cnn(), _small_cnn()
    with torch.no_grad():
        for p in other.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=torch.Generator().manual_seed(2)))
    clean = similarity_under_noise(reference, [other], _images(), 0.0, draws=3, seed=0)[0]
    noisy = similarity_under_noise(reference, [other], _images(), 0.45, draws=3, seed=0)[0]
    again = similarity_under_noise(reference, [other], _images(), 0.45, draws=3, seed=0)[0]
    other_seed = similarity_under_noise(reference, [other], _images(), 0.45, draws=3, seed=1)[0]
    assert noisy == again
    assert noisy.distance != clean.distance
    assert other_seed.distance != noisy.distance


def test_select_images_is_a_seeded_sorted_subset():
    chosen = select_images(100, 10, seed=0)
    assert len(chosen) == 10 and len(set(chosen.tolist())) == 10
    assert chosen.tolist() == sorted(chosen.tolist())
    assert torch.equal(chosen, select_images(100, 10, seed=0))
    assert not torch.equal(chosen, select_images(100, 10, seed=1))
    assert torch.equal(select_images(5, 10, seed=0), torch.arange(5))
