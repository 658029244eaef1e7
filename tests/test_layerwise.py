"""The paper's per-layer FT and PFP (plugin/layerwise.py), checked against a re-implementation of torchprune's.

The reference below is written from the paper's definitions and torchprune's
procedure, without our channel analysis: every Conv2d/Linear layer keeps its
own best filters (FT; all but the last layer) or input channels (PFP; all but
the first layer), then compression is propagated as torchprune does it: an
input channel that is constant over a batch loses its columns, and a filter
whose weights get no gradient is zeroed. Our masks must be exactly what that
procedure gives for our kept counts, and the counts must be the reference's
own allocation (one kept fraction, or one error bound, root-found for the
ratio) up to the single-channel moves that bring the ratio within 0.5 %.
"""

from __future__ import annotations

import copy
import math
from unittest import mock

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from plugin_modules import load_plugin
from torch import nn

from robustprune import PruneContext
from robustprune.plugin.channels import channel_groups
from robustprune.plugin.layerwise import allocate_per_layer, members
from robustprune.plugin.masks import PruneError, full_masks, prunable_weights, ratio_of, validate_masks
from robustprune.plugin.sensitivity import input_channel_sensitivities, layer_info

EXAMPLE = torch.zeros(2, 3, 32, 32)


def resnet20() -> nn.Module:
    """resnet20 with batch norm statistics of real activations and positive offsets: removed channels carry
    constants through the ReLUs."""
    torch.manual_seed(0)
    net = load_plugin("models/cifar_resnet.py").CifarResNet(20)
    generator = torch.Generator().manual_seed(1)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.momentum = None
    with torch.no_grad():
        net.train()(torch.randn(32, 3, 32, 32, generator=generator))
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.copy_(torch.rand(m.num_features, generator=generator) * 0.5 + 0.5)
                m.bias.copy_(torch.rand(m.num_features, generator=generator) + 1.5)
    return net.eval()


def layers(net: nn.Module) -> dict[str, nn.Module]:
    return {name: m for name, m in net.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))}


# --------------------------------------------------------------------------- the reference (torchprune's procedure)


def propagate(net: nn.Module, masks: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """torchprune's FilterNet._propagate_compression on masks: zero the columns of input channels that are
    constant over a batch, and the filters whose weights get no gradient.

    The batch runs with the ReLUs as identities: then "constant" and "no gradient" follow from the structure
    alone. (On real activations torchprune also drops units that this one batch leaves dead, a data-dependent
    extra neither FT nor PFP is defined by.)
    """
    masked = copy.deepcopy(net).eval()
    modules = layers(masked)
    with torch.no_grad():
        for name, m in modules.items():
            m.weight.mul_(masks[f"{name}.weight"])
    constant = {name: torch.ones(m.weight.shape[1], dtype=torch.bool) for name, m in modules.items()}

    def hook(name):
        def record(module, inputs, output):
            x = inputs[0].reshape(*inputs[0].shape[:2], -1)
            constant[name] &= ((x[:1] - x).abs() == 0).all(dim=2).all(dim=0)
        return record

    handles = [m.register_forward_hook(hook(name)) for name, m in modules.items()]
    x = torch.randn(8, 3, 32, 32, generator=torch.Generator().manual_seed(7))
    with mock.patch.object(F, "relu", lambda x, inplace=False: x):
        masked(x).sum().backward()  # every output's gradient is 1: no softmax to underflow
    for handle in handles:
        handle.remove()
    out = {}
    for name, m in modules.items():
        mask = masks[f"{name}.weight"].clone()
        no_gradient = m.weight.grad.reshape(len(mask), -1).abs().sum(dim=1) == 0
        mask[no_gradient] = False
        mask[:, constant[name]] = False
        out[f"{name}.weight"] = mask
    return out


def reference_ft(net: nn.Module, counts: dict[str, int]) -> dict[str, torch.Tensor]:
    """Each layer but the last keeps its ``counts[layer]`` filters of largest l1 norm; then propagation."""
    masks = full_masks(net)
    for name, m in list(layers(net).items())[:-1]:
        norms = m.weight.detach().reshape(len(m.weight), -1).abs().sum(dim=1)
        dropped = torch.argsort(norms, descending=True, stable=True)[counts[name]:]
        masks[f"{name}.weight"][dropped] = False
    return propagate(net, masks)


def reference_ft_counts(net: nn.Module, ratio: float) -> dict[str, int]:
    """torchprune's uniform filter allocation: the kept fraction f root-found (bisection) for the ratio."""
    filters = {name: len(m.weight) for name, m in list(layers(net).items())[:-1]}
    low, high = 0.0, 1.0
    for _ in range(30):
        f = (low + high) / 2
        counts = {name: max(1, round(f * n)) for name, n in filters.items()}
        if ratio_of(reference_ft(net, counts)) > ratio:
            low = f
        else:
            high = f
    return {name: max(1, round(high * n)) for name, n in filters.items()}


def pfp_inputs(net: nn.Module, data: torch.Tensor) -> tuple[dict[str, torch.Tensor], dict]:
    return input_channel_sensitivities(net, data), layer_info(net, EXAMPLE)


def reference_pfp(net: nn.Module, counts: dict[str, int], sensitivity: dict[str, torch.Tensor]) -> dict:
    """Each layer but the first keeps its ``counts[layer]`` most sensitive input channels; then propagation."""
    masks = full_masks(net)
    for name in list(layers(net))[1:]:
        dropped = torch.argsort(sensitivity[f"{name}.weight"], descending=True, stable=True)[counts[name]:]
        masks[f"{name}.weight"][:, dropped] = False
    return propagate(net, masks)


def reference_pfp_counts(net: nn.Module, ratio: float, sensitivity: dict, info: dict,
                         delta: float = 1e-16, c: float = 3.0) -> dict[str, int]:
    """PFP's per-layer budgets (Liebenwein et al. 2020) from one error bound eps, root-found for the ratio."""

    def budgets(eps: float) -> dict[str, int]:
        out = {}
        for name in list(layers(net))[1:]:
            s = sensitivity[f"{name}.weight"].double().numpy()
            layer = info[f"{name}.weight"]
            alpha = 2 * c * math.log(8 * (layer.patches + 1) * layer.kernel / delta)
            samples = math.ceil(3 * (6 + 2 * eps) * alpha * s.sum() / eps**2)
            expected = float(np.sum(1 - (1 - s / s.sum()) ** samples))
            out[name] = max(1, math.ceil(expected - 1e-9))
        return out

    low, high = math.log(1e-3), math.log(1e6)
    for _ in range(60):
        mid = (low + high) / 2
        if ratio_of(reference_pfp(net, budgets(math.exp(mid)), sensitivity)) >= ratio:
            high = mid
        else:
            low = mid
    return budgets(math.exp(high))


# --------------------------------------------------------------------------- ours against it


def our_counts(masks: dict[str, torch.Tensor], net: nn.Module, side: str) -> dict[str, int]:
    """Each choosing layer's kept filters (rows) or input channels (columns), read off our masks."""
    groups = channel_groups(net, EXAMPLE)
    out = {}
    for member in members(net, groups, side):
        mask = masks[f"{member.module}.weight"]
        kept = mask.reshape(len(mask), -1).any(dim=1) if side == "rows" else mask.transpose(0, 1).reshape(
            mask.shape[1], -1).any(dim=1)
        out[member.module] = int(kept.sum())
    return out


def assert_close_allocation(ours: dict[str, int], theirs: dict[str, int]) -> None:
    """The same allocation up to the single-channel moves that hit the ratio within 0.5 %."""
    differences = {name: ours[name] - theirs[name] for name in theirs if ours[name] != theirs[name]}
    assert all(abs(d) <= 2 for d in differences.values()), differences
    assert len(differences) <= 4, differences


@pytest.mark.parametrize("ratio", [0.3, 0.6])
def test_ft_is_torchprunes_per_layer_filter_thresholding(ratio):
    net = resnet20()
    ft = load_plugin("methods/ft.py").FilterThresholding(allocation="layer")
    masks = ft.prune(net, ratio, PruneContext.for_network(net, EXAMPLE))
    _, achieved = validate_masks(masks, full_masks(net), ratio, "ft")
    counts = our_counts(masks, net, "rows")
    # exactly torchprune's selection and propagation for these counts...
    expected = reference_ft(net, counts)
    for name in masks:
        assert torch.equal(masks[name], expected[name]), name
    # ...and the counts are torchprune's uniform allocation for this ratio, up to the final moves
    assert_close_allocation(counts, reference_ft_counts(net, ratio))
    # residual channels a block dropped stay alive while another block writes them: zero rows, live channel
    stream = masks["layers.0.conv2.weight"].reshape(16, -1).any(dim=1)
    read = masks["layers.1.conv1.weight"].any(dim=0).reshape(16, -1).any(dim=1)
    assert (read & ~stream).any()


@pytest.mark.parametrize("ratio", [0.3, 0.6])
def test_pfp_is_torchprunes_per_layer_provable_filter_pruning(ratio):
    net = resnet20()
    pfp = load_plugin("methods/pfp.py").ProvableFilterPruning(allocation="layer")
    data = torch.randn(16, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    masks = pfp.prune(net, ratio, PruneContext.for_network(net, EXAMPLE, data=data))
    validate_masks(masks, full_masks(net), ratio, "pfp")
    sensitivity, info = pfp_inputs(net, data)
    counts = our_counts(masks, net, "columns")
    expected = reference_pfp(net, counts, sensitivity)
    for name in masks:
        assert torch.equal(masks[name], expected[name]), name
    assert_close_allocation(counts, reference_pfp_counts(net, ratio, sensitivity, info))


def test_per_layer_masks_compact_less_than_grouped_ones():
    """A live residual channel keeps its place in every layer: the grouped allocation removes more MACs."""
    from robustprune.compute.compaction import compact
    from robustprune.compute.costs import count_macs

    net = resnet20()
    macs = {}
    for allocation in ("layer", "group"):
        ft = load_plugin("methods/ft.py").FilterThresholding(allocation=allocation)
        masks = ft.prune(net, 0.5, PruneContext.for_network(net, EXAMPLE))
        compacted = compact(net, masks, EXAMPLE)
        macs[allocation] = count_macs(compacted.network, EXAMPLE)
    assert macs["group"] < macs["layer"] < count_macs(net, EXAMPLE)


def test_a_cascade_keeps_what_the_step_before_removed():
    net = resnet20()
    ft = load_plugin("methods/ft.py").FilterThresholding(allocation="layer")
    first = ft.prune(net, 0.3, PruneContext.for_network(net, EXAMPLE))
    retrained = copy.deepcopy(net)
    with torch.no_grad():  # what the host does: zero the removed weights, then retrain (here: rescale the rest)
        for name, weight in prunable_weights(retrained).items():
            weight.mul_(first[name] * torch.rand(weight.shape, generator=torch.Generator().manual_seed(2)) * 3)
    second = ft.prune(retrained, 0.6, PruneContext.for_network(retrained, EXAMPLE, masks=first))
    _, achieved = validate_masks(second, first, 0.6, "ft")
    assert abs(achieved - 0.6) <= 0.003
    assert all(not (second[n] & ~first[n]).any() for n in first)
    with pytest.raises(PruneError, match="already remove"):
        ft.prune(retrained, 0.2, PruneContext.for_network(retrained, EXAMPLE, masks=first))


def test_allocate_per_layer_checks_its_inputs():
    net = resnet20()
    groups = channel_groups(net, EXAMPLE)
    chosen = members(net, groups, "rows")
    scores = [torch.zeros(groups[m.group].channels) for m in chosen]
    with pytest.raises(ValueError, match="score vectors"):
        allocate_per_layer(net, groups, "rows", scores[:-1], 0.5)
    with pytest.raises(ValueError, match="side must be"):
        members(net, groups, "filters")  # type: ignore[arg-type]
    # a wide first layer on the image: with one hidden unit left, 3072 + 10 of 12328 weights stay
    bottleneck = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 4), nn.ReLU(), nn.Linear(4, 10))
    small_groups = channel_groups(bottleneck, EXAMPLE)
    with pytest.raises(PruneError, match="largest reachable ratio, with one channel left in every layer, is 0.7500"):
        allocate_per_layer(bottleneck, small_groups, "rows", [torch.zeros(4)], 0.9)
    # equal scores: deterministic, the first channels go first
    a = allocate_per_layer(net, groups, "rows", scores, 0.5)
    b = allocate_per_layer(net, groups, "rows", scores, 0.5)
    assert all(torch.equal(a[n], b[n]) for n in a)
    kept = a["conv1.weight"].reshape(16, -1).any(dim=1)
    assert torch.equal(kept, torch.arange(16) >= 16 - int(kept.sum()))


def test_the_report_names_each_rows_allocation():
    from robustprune.report.tables import allocation_notes

    table = {"rows": [{"method": "wt"}, {"method": "ft", "allocation": "layer"},
                      {"method": "pfp", "allocation": "layer"}, {"method": "ft_grouped", "allocation": "group"}]}
    (note,) = allocation_notes(table)
    assert note.startswith("structured allocation: ft, pfp: per layer (the paper's")
    assert "; ft_grouped: whole channels" in note
    assert allocation_notes({"rows": [{"method": "wt"}]}) == []
