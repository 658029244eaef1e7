"""Structured methods with the grouped allocation: ft_grouped and random_structured, on allocation.allocate_uniform.

(``ft``, the paper's per-layer allocation, is tested in test_layerwise.py; on a plain chain both remove whole
channels, and their searches for the exact ratio can end a channel or two apart.)
"""

from __future__ import annotations

import pytest
import torch
from plugin_modules import load_plugin
from torch import nn

from robustprune import PruneContext
from robustprune.plugin.allocation import allocate_uniform
from robustprune.plugin.channels import ChannelGroup, channel_groups, channel_masks
from robustprune.plugin.masks import PruneError, full_masks, prunable_weights, ratio_of, validate_masks

EXAMPLE = torch.zeros(2, 3, 32, 32)
RATIOS = [0.1, 0.3, 0.5, 0.7]


def build(model: str) -> nn.Module:
    torch.manual_seed(0)
    if model == "small_cnn":
        return load_plugin("models/small_cnn.py").SmallCNN(10)
    return load_plugin("models/cifar_resnet.py").CifarResNet(20)


def method(name: str):
    return {
        "ft": lambda: load_plugin("methods/ft.py").FilterThresholding(allocation="layer"),
        "ft_grouped": lambda: load_plugin("methods/ft.py").FilterThresholding(allocation="group"),
        "random_structured": lambda: load_plugin("methods/random_structured.py").RandomStructuredPruning(),
    }[name]()


@pytest.fixture(scope="module", params=["small_cnn", "resnet20"])
def model(request) -> tuple[str, nn.Module, list[ChannelGroup]]:
    net = build(request.param)
    return request.param, net, channel_groups(net, EXAMPLE)


def context(net: nn.Module, groups: list[ChannelGroup] | None = None, masks=None, seed: int = 0) -> PruneContext:
    # passing precomputed groups only saves re-tracing; one test below uses the lazy path
    return PruneContext(
        masks=masks if masks is not None else full_masks(net),
        generator=torch.Generator().manual_seed(seed),
        example_input=EXAMPLE,
        network=net,
        groups=groups,
    )


def kept_channels(masks, group: ChannelGroup) -> torch.Tensor:
    """Which channels of a group the masks keep (a channel is kept if its first producer's row is)."""
    return masks[f"{group.producers[0]}.weight"].reshape(group.channels, -1).any(dim=1)


def assert_structured(net, groups, masks) -> list[torch.Tensor]:
    """The masks are exactly channel removals: rebuilding them from the kept channels gives the same masks."""
    keep = [kept_channels(masks, g) for g in groups]
    rebuilt = channel_masks(net, groups, keep)
    for name, mask in masks.items():
        assert torch.equal(mask, rebuilt[name]), name
    return keep


# --------------------------------------------------------------------------- hitting the ratio


@pytest.mark.parametrize("name", ["ft_grouped", "random_structured"])
@pytest.mark.parametrize("ratio", RATIOS)
def test_hits_the_ratio_within_tolerance(model, name, ratio):
    _, net, groups = model
    masks = method(name).prune(net, ratio, context(net, groups))
    # the host's own check: right keys and shapes, ratio within 0.5 % relative
    combined, achieved = validate_masks(masks, full_masks(net), ratio, name)
    assert abs(achieved - ratio) <= 0.005 * ratio
    keep = assert_structured(net, groups, combined)
    assert all(k.sum() >= 1 for k in keep)
    # close to uniform: the same kept fraction everywhere up to a few channels
    fractions = [float(k.float().mean()) for k in keep]
    assert max(fractions) - min(fractions) <= 0.15, fractions


def test_uses_the_lazy_channel_groups_of_the_context():
    net = build("small_cnn")
    masks = method("ft").prune(net, 0.5, context(net))
    assert abs(ratio_of(masks) - 0.5) <= 0.0025


def test_high_ratio_keeps_at_least_one_channel_per_group(model):
    _, net, groups = model
    masks = method("ft_grouped").prune(net, 0.99, context(net, groups))
    assert abs(ratio_of(masks) - 0.99) <= 0.005 * 0.99
    assert all(kept_channels(masks, g).sum() >= 1 for g in groups)


def test_the_last_layer_outputs_are_never_pruned(model):
    _, net, groups = model
    masks = method("ft").prune(net, 0.7, context(net, groups))
    last = list(prunable_weights(net))[-1]
    assert masks[last].any(dim=1).all()


# --------------------------------------------------------------------------- cascades


@pytest.mark.parametrize("name", ["ft_grouped", "random_structured"])
def test_cascade_never_revives_a_channel(model, name):
    _, net, groups = model
    first = method(name).prune(net, 0.3, context(net, groups))
    # what the host does between steps: zero the removed weights, then retrain (here: perturb the rest)
    retrained = build(model[0])
    retrained.load_state_dict(net.state_dict())
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for weight_name, weight in prunable_weights(retrained).items():
            weight.mul_(torch.rand(weight.shape, generator=generator) * 4)
            weight.mul_(first[weight_name])
    second = method(name).prune(retrained, 0.5, context(retrained, groups, masks=first, seed=1))
    combined, achieved = validate_masks(second, first, 0.5, name)
    assert abs(achieved - 0.5) <= 0.0025
    for weight_name in first:
        assert not (second[weight_name] & ~first[weight_name]).any(), weight_name
    for g in groups:
        assert not (kept_channels(second, g) & ~kept_channels(first, g)).any()
    assert_structured(net, groups, second)


def test_cascade_cannot_go_back_to_a_lower_ratio(model):
    _, net, groups = model
    first = method("ft_grouped").prune(net, 0.5, context(net, groups))
    with pytest.raises(PruneError, match="already remove"):
        method("ft_grouped").prune(net, 0.3, context(net, groups, masks=first))


# --------------------------------------------------------------------------- unreachable ratios


class Bottleneck(nn.Module):
    """A wide first layer whose inputs are the image: only its 4 outputs can be pruned."""

    def __init__(self):
        super().__init__()
        self.flatten = nn.Flatten()
        self.hidden = nn.Linear(3 * 32 * 32, 4)
        self.out = nn.Linear(4, 10)

    def forward(self, x):
        return self.out(torch.relu(self.hidden(self.flatten(x))))


def test_unreachable_ratio_names_the_largest_reachable_one():
    net = Bottleneck()
    # one hidden unit left: 3072 + 10 of 12328 weights kept
    largest = 1 - (3 * 32 * 32 + 10) / (4 * 3 * 32 * 32 + 40)
    with pytest.raises(PruneError, match=f"largest reachable ratio.*{largest:.4f}"):
        method("ft").prune(net, 0.9, context(net))


def test_near_one_ratio_leaves_one_or_two_channels_per_group(model):
    # 0.999 is within 0.5 % of the largest reachable ratio of both networks (one channel per group)
    _, net, groups = model
    masks = method("ft_grouped").prune(net, 0.999, context(net, groups))
    assert abs(ratio_of(masks) - 0.999) <= 0.005 * 0.999
    assert {int(kept_channels(masks, g).sum()) for g in groups} <= {1, 2}


def test_too_coarse_channels_are_reported_not_silently_missed():
    # each hidden unit of Bottleneck is a quarter of its weights: only 0, 0.25, 0.5 and 0.75 are reachable
    net = Bottleneck()
    assert abs(ratio_of(method("ft").prune(net, 0.25, context(net))) - 0.25) < 1e-12
    with pytest.raises(PruneError, match="too coarse.*0.5000"):
        method("ft").prune(net, 0.4, context(net))


# --------------------------------------------------------------------------- what gets removed


def test_ft_removes_the_filters_with_the_smallest_l1_norm(model):
    name, _, groups = model
    net = build(name)  # a fresh copy: the weights are edited below
    generator = torch.Generator().manual_seed(5)
    with torch.no_grad():
        # give each channel of the first group a known l1 norm: channel c gets scale rank[c] + 1
        rank = torch.randperm(groups[0].channels, generator=generator)
        weights = prunable_weights(net)
        for p in groups[0].producers:
            w = weights[f"{p}.weight"]
            w.copy_(torch.sign(w) * (rank.double() + 1).view(-1, *[1] * (w.dim() - 1)).to(w.dtype))
    masks = method("ft_grouped").prune(net, 0.5, context(net, groups))
    keep = kept_channels(masks, groups[0])
    n_kept = int(keep.sum())
    assert 0 < n_kept < groups[0].channels
    assert torch.equal(keep, rank >= groups[0].channels - n_kept)
    for g in groups:  # in every group: no removed filter outscores a kept one
        scores, k = g.filter_l1(net), kept_channels(masks, g)
        assert scores[k].min() >= scores[~k].max()


def test_scores_tie_break_deterministically():
    net = build("small_cnn")
    groups = channel_groups(net, EXAMPLE)
    scores = [torch.zeros(g.channels) for g in groups]
    a = allocate_uniform(net, groups, scores, 0.5)
    b = allocate_uniform(net, groups, scores, 0.5)
    assert all(torch.equal(a[n], b[n]) for n in a)
    # equal scores: the first channels go first
    keep = kept_channels(a, groups[0])
    assert torch.equal(keep, torch.arange(groups[0].channels) >= groups[0].channels - int(keep.sum()))


def test_random_structured_is_seeded():
    net = build("small_cnn")
    groups = channel_groups(net, EXAMPLE)
    runs = [method("random_structured").prune(net, 0.5, context(net, groups, seed=s)) for s in (0, 0, 1)]
    assert all(torch.equal(runs[0][n], runs[1][n]) for n in runs[0])
    assert any(not torch.equal(runs[0][n], runs[2][n]) for n in runs[0])


def test_methods_register_under_their_names():
    registered = []
    for path in ("methods/ft.py", "methods/random_structured.py"):
        load_plugin(path).robustprune_register_methods(registered.append)
    assert [(m.name, m.structured) for m in registered] == [("ft", True), ("ft_grouped", True),
                                                            ("random_structured", True)]
    assert [m.params() for m in registered[:2]] == [{"allocation": "layer"}, {"allocation": "group"}]


def test_prune_does_not_modify_the_network():
    net = build("resnet20")
    before = {k: v.clone() for k, v in net.state_dict().items()}
    method("ft_grouped").prune(net, 0.5, context(net))
    assert all(torch.equal(v, before[k]) for k, v in net.state_dict().items())
