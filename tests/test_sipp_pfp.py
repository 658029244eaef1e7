"""Every built-in method hits the requested ratio; SiPP and PFP prune what their sensitivities say.

Ratio targeting is checked for all six built-in methods on the small CNN and
resnet20 with the host's own check (``validate_masks``: within 0.5 %
relative). The data-informed methods get a small seeded batch, as the host
would pass in ``context.data``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from plugin_modules import load_plugin
from torch import nn

from robustprune import PruneContext
from robustprune.plugin.allocation import allocate_counts
from robustprune.plugin.channels import ChannelGroup, channel_groups, channel_masks
from robustprune.plugin.masks import (
    PruneError,
    full_masks,
    global_top_masks,
    prunable_weights,
    ratio_of,
    validate_masks,
)
from robustprune.plugin.sensitivity import layer_info

torch.set_num_threads(1)
EXAMPLE = torch.zeros(2, 3, 32, 32)
RATIOS = [0.1, 0.3, 0.5, 0.7, 0.9]
METHODS = {
    "wt": ("methods/wt.py", "WeightThresholding"),
    "random": ("methods/random_baseline.py", "RandomPruning"),
    "sipp": ("methods/sipp.py", "SiPP"),
    "ft": ("methods/ft.py", "FilterThresholding"),
    "random_structured": ("methods/random_structured.py", "RandomStructuredPruning"),
    "pfp": ("methods/pfp.py", "ProvableFilterPruning"),
}
GROUPED = {
    "ft_grouped": ("methods/ft.py", "FilterThresholding"),
    "pfp_grouped": ("methods/pfp.py", "ProvableFilterPruning"),
}


def method(name: str):
    if name in GROUPED:
        module, cls = GROUPED[name]
        return getattr(load_plugin(module), cls)(allocation="group")
    module, cls = METHODS[name]
    return getattr(load_plugin(module), cls)()


def build(model: str) -> nn.Module:
    torch.manual_seed(0)
    if model == "small_cnn":
        net = load_plugin("models/small_cnn.py").SmallCNN(10)
    else:
        net = load_plugin("models/cifar_resnet.py").CifarResNet(20)
    with torch.no_grad():  # trained-looking batch norms: channels differ in scale and offset
        generator = torch.Generator().manual_seed(1)
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.copy_(torch.rand(m.num_features, generator=generator) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=generator) * 0.2)
    return net.eval()


# resnet20 is the paper's network: every property on it too, in the slow lane (its PFP cascade alone takes
# seconds); small_cnn keeps the fast lane covering each property
@pytest.fixture(scope="module", params=["small_cnn", pytest.param("resnet20", marks=pytest.mark.slow)])
def model(request) -> tuple[str, nn.Module, list[ChannelGroup], torch.Tensor]:
    net = build(request.param)
    data = torch.randn(16, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    return request.param, net, channel_groups(net, EXAMPLE), data


def context(net, groups=None, masks=None, data=None, seed: int = 0) -> PruneContext:
    return PruneContext(
        masks=masks if masks is not None else full_masks(net),
        generator=torch.Generator().manual_seed(seed),
        example_input=EXAMPLE,
        data=data,
        network=net,
        groups=groups,
    )


def kept_channels(masks, group: ChannelGroup) -> torch.Tensor:
    return masks[f"{group.producers[0]}.weight"].reshape(group.channels, -1).any(dim=1)


# --------------------------------------------------------------------------- every method hits every ratio


@pytest.mark.parametrize("name", list(METHODS))
def test_every_method_hits_several_ratios_within_half_a_percent(model, name):
    _, net, groups, data = model
    m = method(name)
    for ratio in RATIOS:
        masks = m.prune(net, ratio, context(net, groups, data=data if m.data_informed else None))
        _, achieved = validate_masks(masks, full_masks(net), ratio, name)  # the host's own check
        assert abs(achieved - ratio) <= 0.005 * ratio, (ratio, achieved)
        if m.structured:  # every layer loses whole filters and whole input channels, never single weights
            for mask in masks.values():
                rows = mask.reshape(len(mask), -1).any(dim=1)
                columns = mask.transpose(0, 1).reshape(mask.shape[1], -1).any(dim=1)
                outer = rows.view(-1, 1, *[1] * (mask.dim() - 2)) & columns.view(1, -1, *[1] * (mask.dim() - 2))
                assert torch.equal(mask, outer.expand_as(mask)) and rows.any()
        if name == "random_structured":  # the grouped allocation: whole channels, and no group is emptied
            keep = [kept_channels(masks, g) for g in groups]
            rebuilt = channel_masks(net, groups, keep)
            assert all(torch.equal(masks[n], rebuilt[n]) for n in masks)
            assert all(k.sum() >= 1 for k in keep)


def test_methods_declare_what_they_are():
    registered = []
    for module, _ in METHODS.values():
        load_plugin(module).robustprune_register_methods(registered.append)
    kinds = {m.name: (m.structured, m.data_informed) for m in registered}
    assert kinds == {
        "wt": (False, False),
        "random": (False, False),
        "sipp": (False, True),
        "ft": (True, False),
        "ft_grouped": (True, False),
        "random_structured": (True, False),
        "pfp": (True, True),
        "pfp_grouped": (True, True),
    }


# --------------------------------------------------------------------------- SiPP


def test_sipp_keeps_the_most_sensitive_weights_globally(model):
    _, net, groups, data = model
    sipp = method("sipp")
    scores = sipp.sensitivities(net, data)
    masks = sipp.prune(net, 0.6, context(net, groups, data=data))
    kept = torch.cat([scores[n][masks[n]] for n in masks])
    removed = torch.cat([scores[n][~masks[n]] for n in masks])
    assert kept.min() >= removed.max()
    # one global threshold, not the same fraction per layer
    fractions = [float(masks[n].float().mean()) for n in masks]
    assert max(fractions) - min(fractions) > 0.05


def test_sipp_cascade_never_revives_a_weight(model):
    _, net, groups, data = model
    sipp = method("sipp")
    first = sipp.prune(net, 0.3, context(net, groups, data=data))
    pruned = build(model[0])
    pruned.load_state_dict(net.state_dict())
    with torch.no_grad():
        for name, weight in prunable_weights(pruned).items():
            weight.mul_(first[name])
    second = sipp.prune(pruned, 0.6, context(pruned, groups, masks=first, data=data))
    _, achieved = validate_masks(second, first, 0.6, "sipp")
    assert abs(achieved - 0.6) <= 0.003
    assert not any((second[n] & ~first[n]).any() for n in first)


# --------------------------------------------------------------------------- PFP


def test_pfp_grouped_keeps_the_most_sensitive_channels_of_every_group(model):
    _, net, groups, data = model
    pfp = method("pfp_grouped")
    sensitivities = pfp.channel_sensitivities(net, groups, data)
    masks = pfp.prune(net, 0.5, context(net, groups, data=data))
    for group, per_consumer in zip(groups, sensitivities):
        score, keep = torch.stack(per_consumer).amax(dim=0), kept_channels(masks, group)
        if (~keep).any():
            assert score[keep].min() >= score[~keep].max(), group.name


def test_pfp_keeps_the_most_sensitive_inputs_of_every_layer(model):
    _, net, groups, data = model
    pfp = method("pfp")
    sensitivities = pfp.channel_sensitivities(net, groups, data)
    masks = pfp.prune(net, 0.5, context(net, groups, data=data))
    dropped_somewhere = False
    for group, per_consumer in zip(groups, sensitivities):
        for consumer, score in zip(group.consumers, per_consumer):
            mask = masks[f"{consumer.module}.weight"]
            columns = mask.transpose(0, 1).reshape(mask.shape[1], -1).any(dim=1)
            keep = columns.view(-1, consumer.features_per_channel).any(dim=1)[
                consumer.offset : consumer.offset + group.channels
            ]
            if (~keep).any():
                dropped_somewhere = True
                assert score[keep].min() >= score[~keep].max(), consumer.module
    assert dropped_somewhere


def test_pfp_budgets_follow_the_sample_complexity_formula(model):
    _, net, groups, data = model
    pfp = method("pfp")
    sensitivities = pfp.channel_sensitivities(net, groups, data)
    info = layer_info(net, EXAMPLE)
    budgets = load_plugin("methods/pfp.py").Budgets(groups, sensitivities, info, pfp.delta, pfp.c_constant)
    eps = 3.0
    for group, per_consumer, got in zip(groups, sensitivities, budgets.counts(eps)):
        wanted = 0
        for consumer, s in zip(group.consumers, per_consumer):
            s = s.double().numpy()
            layer = info[f"{consumer.module}.weight"]
            alpha = 2 * 3.0 * math.log(8 * (layer.patches + 1) * layer.kernel * consumer.features_per_channel / 1e-16)
            m = math.ceil(3 * (6 + 2 * eps) * alpha * s.sum() / eps**2)
            wanted = max(wanted, math.ceil(sum(1 - (1 - p) ** m for p in s / s.sum()) - 1e-9))
        assert got == wanted, group.name
    # one global error: a larger eps never asks for more channels anywhere
    grid = [budgets.counts(e) for e in np.geomspace(1e-3, 1e6, 40)]
    assert all(all(a >= b for a, b in zip(lo, hi)) for lo, hi in zip(grid, grid[1:]))
    assert grid[0] != grid[-1]


def test_pfp_cascade_never_revives_a_channel(model):
    _, net, groups, data = model
    pfp = method("pfp")
    first = pfp.prune(net, 0.3, context(net, groups, data=data))
    pruned = build(model[0])
    pruned.load_state_dict(net.state_dict())
    with torch.no_grad():
        for name, weight in prunable_weights(pruned).items():
            weight.mul_(first[name])
    second = pfp.prune(pruned, 0.6, context(pruned, groups, masks=first, data=data))
    _, achieved = validate_masks(second, first, 0.6, "pfp")
    assert abs(achieved - 0.6) <= 0.003
    for g in groups:
        assert not (kept_channels(second, g) & ~kept_channels(first, g)).any()


# --------------------------------------------------------------------------- floors and unreachable ratios


@pytest.mark.parametrize("name", ["ft", "random_structured", "pfp"])
def test_structured_methods_never_empty_a_layer(model, name):
    _, net, groups, data = model
    m = method(name)
    # 0.999 is within 0.5 % of the largest reachable ratio: one channel left per group
    masks = m.prune(net, 0.999, context(net, groups, data=data if m.data_informed else None))
    assert abs(ratio_of(masks) - 0.999) <= 0.005 * 0.999
    assert all(kept_channels(masks, g).sum() >= 1 for g in groups)
    assert all(masks[n].any() for n in masks)


class Bottleneck(nn.Module):
    """A wide first layer reading the image: only its 4 outputs can be pruned."""

    def __init__(self):
        super().__init__()
        self.hidden = nn.Linear(3 * 32 * 32, 4)
        self.out = nn.Linear(4, 10)

    def forward(self, x):
        return self.out(torch.relu(self.hidden(torch.flatten(x, 1))))


def test_pfp_unreachable_ratio_names_the_largest_reachable_one():
    torch.manual_seed(0)
    net = Bottleneck()
    largest = 1 - (3 * 32 * 32 + 10) / (4 * 3 * 32 * 32 + 40)
    data = torch.randn(8, 3, 32, 32)
    with pytest.raises(PruneError, match=f"largest reachable ratio.*{largest:.4f}"):
        method("pfp").prune(net, 0.9, context(net, data=data))


@pytest.mark.parametrize("name", ["wt", "sipp", "random"])
def test_unstructured_methods_refuse_to_remove_everything(name):
    net = build("small_cnn")
    total = sum(w.numel() for w in prunable_weights(net).values())
    data = torch.randn(4, 3, 32, 32)
    with pytest.raises(PruneError, match=rf"removes all {total}.*largest reachable ratio is {(total - 1) / total:.6f}"):
        method(name).prune(net, 1.0, context(net, data=data))
    # within tolerance of the largest reachable ratio: one weight is left
    masks = method(name).prune(net, 0.99999, context(net, data=data))
    assert int(sum(m.sum() for m in masks.values())) == 1


def test_global_top_masks_keeps_one_entry_of_a_tiny_layer():
    with pytest.raises(PruneError, match="largest reachable ratio is 0.500000"):
        global_top_masks({"w": torch.tensor([1.0, 2.0])}, 0.9)


# --------------------------------------------------------------------------- allocate_counts


def test_allocate_counts_root_finds_the_knob(model):
    _, net, groups, _ = model
    widths = np.array([g.channels for g in groups], dtype=float)
    weights = np.linspace(1.0, 2.0, len(groups))  # groups shrink at different speeds

    def counts(knob: float) -> np.ndarray:
        return widths * np.exp(-knob * weights)

    scores = [torch.arange(g.channels, dtype=torch.float64) for g in groups]  # keep the last channels
    for ratio in (0.2, 0.5, 0.8):
        masks = allocate_counts(net, groups, scores, ratio, counts, knob_range=(1e-6, 50.0))
        assert abs(ratio_of(masks) - ratio) <= 0.005 * ratio
        for g in groups:
            keep = kept_channels(masks, g)
            assert torch.equal(keep, torch.arange(g.channels) >= g.channels - int(keep.sum()))


def test_allocate_counts_checks_its_knob_range(model):
    _, net, groups, _ = model
    with pytest.raises(ValueError, match="0 < low < high"):
        allocate_counts(
            net,
            groups,
            [torch.zeros(g.channels) for g in groups],
            0.5,
            lambda k: [1] * len(groups),
            knob_range=(0.0, 1.0),
        )
