"""Compaction (robustprune.compute.compaction) and costs (robustprune.compute.costs).

Smaller networks that compute the same."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from plugin_modules import load_plugin
from torch import nn

from robustprune import PruneContext
from robustprune.compute.compaction import CompactionError, compact, removable_channels
from robustprune.compute.costs import (
    count_macs,
    count_params,
    inference_form,
    machine_fingerprint,
    measure_latency,
    network_costs,
)
from robustprune.plugin.channels import ChannelGroup, Consumer, channel_groups, channel_masks
from robustprune.plugin.masks import apply_masks, full_masks, prunable_weights

torch.set_num_threads(1)
EXAMPLE = torch.zeros(2, 3, 32, 32)


def with_trained_norms(net: nn.Module, seed: int = 1) -> nn.Module:
    """Batch norms with per-channel statistics and offsets, as after training: removed channels carry constants."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                m.weight.copy_(torch.rand(n, generator=generator) * 0.5 + 0.5)
                m.bias.copy_(torch.randn(n, generator=generator) * 0.3)
                m.running_mean.copy_(torch.randn(n, generator=generator) * 0.2)
                m.running_var.copy_(torch.rand(n, generator=generator) + 0.5)
    return net.eval()


def build(model: str) -> nn.Module:
    torch.manual_seed(0)
    if model in ("small_cnn", "small_cnn_std"):
        return with_trained_norms(load_plugin("models/small_cnn.py").SmallCNN(10, standardize=model.endswith("std")))
    return with_trained_norms(load_plugin("models/cifar_resnet.py").CifarResNet(20))


STRUCTURED = {
    "ft": ("methods/ft.py", "FilterThresholding", "layer"),
    "ft_grouped": ("methods/ft.py", "FilterThresholding", "group"),
    "random_structured": ("methods/random_structured.py", "RandomStructuredPruning", None),
    "pfp": ("methods/pfp.py", "ProvableFilterPruning", "layer"),
    "pfp_grouped": ("methods/pfp.py", "ProvableFilterPruning", "group"),
}


def removed(masks, group) -> torch.Tensor:
    """The group's channels no consumer reads any more: what compaction cuts (with the per-layer allocation a
    live channel may still have zero rows in some producers). Computed here from the masks' input columns."""
    read = torch.zeros(group.channels, dtype=torch.bool)
    for consumer in group.consumers:
        mask = masks[f"{consumer.module}.weight"]
        columns = mask.transpose(0, 1).reshape(mask.shape[1], -1).any(dim=1)  # is input column i read at all?
        per_channel = columns.view(-1, consumer.features_per_channel).any(dim=1)
        read |= per_channel[consumer.offset : consumer.offset + group.channels]
    return ~read


@pytest.fixture(scope="module", params=["small_cnn", "small_cnn_std", "resnet20"])
def model(request) -> tuple[str, nn.Module, list[ChannelGroup]]:
    net = build(request.param)
    return request.param, net, channel_groups(net, EXAMPLE)


def structured_masks(net, groups, name: str, ratio: float):
    module, cls, allocation = STRUCTURED[name]
    method = getattr(load_plugin(module), cls)(**({"allocation": allocation} if allocation else {}))
    data = torch.randn(8, 3, 32, 32, generator=torch.Generator().manual_seed(3)) if method.data_informed else None
    context = PruneContext(masks=full_masks(net), generator=torch.Generator().manual_seed(0), example_input=EXAMPLE,
                           data=data, network=net, groups=groups)
    return method.prune(net, ratio, context)


def masked_copy(net: nn.Module, masks) -> nn.Module:
    out = copy.deepcopy(net)
    apply_masks(out, masks)
    return out.eval()


def batch(seed: int = 4) -> torch.Tensor:
    return torch.randn(8, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


def max_difference(a: nn.Module, b: nn.Module, x: torch.Tensor) -> float:
    with torch.no_grad():
        return (a(x) - b(x)).abs().max().item()


# --------------------------------------------------------------------------- equivalence


@pytest.mark.parametrize("name", list(STRUCTURED))
@pytest.mark.parametrize("ratio", [0.3, 0.7])
def test_compacted_network_computes_what_the_masked_one_does(model, name, ratio):
    _, net, groups = model
    masks = structured_masks(net, groups, name, ratio)
    result = compact(net, masks, EXAMPLE, groups=groups)
    reference = masked_copy(net, masks)
    x = batch()
    assert max_difference(reference, result.network.eval(), x) < 1e-5
    # physically smaller: every layer has exactly the kept channels
    modules = dict(result.network.named_modules())
    for group in groups:
        kept = int(result.kept[group.name].numel())
        assert kept == max(1, int((~removed(masks, group)).sum()))
        assert kept >= 1
        for producer in group.producers:
            assert modules[producer].weight.shape[0] == kept
        for norm in group.norms:
            assert modules[norm].num_features == kept and modules[norm].running_mean.shape == (kept,)
        for consumer in group.consumers:
            assert modules[consumer.module].weight.shape[1] == kept * consumer.features_per_channel
    # the removed channels were not silent in the masked network: some carried a constant after the ReLU
    carried = []
    for group in groups:
        gone = removed(masks, group)
        for norm in group.norms:
            bn = dict(net.named_modules())[norm]
            constant = bn.bias - bn.weight * bn.running_mean / torch.sqrt(bn.running_var + bn.eps)
            carried.append((constant[gone] > 0).any())
    assert any(carried)


def test_compaction_handles_resnet_residual_groups():
    net = build("resnet20")
    groups = channel_groups(net, EXAMPLE)
    residual = [g for g in groups if len(g.producers) > 1]
    assert len(residual) == 3  # one per stage: stem or shortcut conv plus every block's last conv
    masks = structured_masks(net, groups, "ft_grouped", 0.5)
    result = compact(net, masks, EXAMPLE, groups=groups)
    modules = dict(result.network.named_modules())
    for group in residual:
        widths = {modules[p].weight.shape[0] for p in group.producers}
        assert widths == {len(result.kept[group.name])} and len(result.kept[group.name]) < group.channels
    assert max_difference(masked_copy(net, masks), result.network.eval(), batch()) < 1e-5


def test_compaction_leaves_the_input_network_alone():
    net = build("small_cnn")
    groups = channel_groups(net, EXAMPLE)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    compact(net, structured_masks(net, groups, "ft", 0.5), EXAMPLE, groups=groups)
    assert all(torch.equal(v, before[k]) for k, v in net.state_dict().items())


class FlattenNet(nn.Module):
    """conv - BN - ReLU - flatten of C x 4 x 4 - linear: each channel is a block of 16 linear inputs."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3, stride=8, padding=1, bias=True)
        self.bn = nn.BatchNorm2d(6)
        self.fc = nn.Linear(6 * 4 * 4, 5)

    def forward(self, x):
        return self.fc(torch.flatten(torch.relu(self.bn(self.conv(x))), 1))


def test_flattened_channels_lose_their_block_of_linear_inputs():
    torch.manual_seed(0)
    net = with_trained_norms(FlattenNet())
    groups = channel_groups(net, EXAMPLE)
    keep = torch.tensor([True, False, True, False, False, True])
    masks = channel_masks(net, groups, [keep])
    result = compact(net, masks, EXAMPLE)
    assert result.network.fc.weight.shape == (5, 3 * 16)
    assert torch.equal(result.network.fc.weight, net.fc.weight.detach()[:, keep.repeat_interleave(16)])
    assert torch.equal(result.network.conv.bias, net.conv.bias.detach()[keep])
    assert max_difference(masked_copy(net, masks), result.network.eval(), batch()) < 1e-5


def test_a_channel_whose_constant_is_still_read_is_kept():
    # producer row masked, consumer columns not: the channel carries relu(BN constant) into the classifier
    torch.manual_seed(0)
    net = with_trained_norms(FlattenNet())
    with torch.no_grad():
        net.bn.bias[0] = 1.0  # a positive constant that survives the ReLU
    masks = full_masks(net)
    masks["conv.weight"][0] = False
    (group,) = channel_groups(net, EXAMPLE)
    assert not removable_channels(group, masks).any()
    result = compact(net, masks, EXAMPLE)
    assert result.network.conv.weight.shape[0] == 6
    assert max_difference(masked_copy(net, masks), result.network.eval(), batch()) < 1e-5


def test_a_channel_nobody_reads_is_removed_even_if_its_rows_live():
    torch.manual_seed(0)
    net = with_trained_norms(FlattenNet())
    masks = full_masks(net)
    masks["fc.weight"][:, 16:32] = False  # nothing reads channel 1
    result = compact(net, masks, EXAMPLE)
    assert result.network.conv.weight.shape[0] == 5
    assert max_difference(masked_copy(net, masks), result.network.eval(), batch()) < 1e-5


def test_a_group_with_every_channel_masked_keeps_one():
    torch.manual_seed(0)
    net = with_trained_norms(FlattenNet())
    (group,) = channel_groups(net, EXAMPLE)
    masks = channel_masks(net, [group], [torch.zeros(6, dtype=torch.bool)])
    result = compact(net, masks, EXAMPLE)
    assert result.network.conv.weight.shape[0] == 1 and result.network.bn.num_features == 1
    assert max_difference(masked_copy(net, masks), result.network.eval(), batch()) < 1e-5


def test_leftover_unstructured_zeros_stay_masked():
    net = build("small_cnn")
    groups = channel_groups(net, EXAMPLE)
    masks = structured_masks(net, groups, "ft", 0.5)
    name = "features.3.weight"
    live = masks[name].nonzero()[0]
    masks[name][tuple(live)] = False  # one more weight, inside a kept channel
    result = compact(net, masks, EXAMPLE, groups=groups)
    assert int(sum(m.sum() for m in result.masks.values())) == int(sum(m.sum() for m in masks.values()))
    weights = prunable_weights(result.network)
    assert all(not weights[n][~m].any() for n, m in result.masks.items())
    assert max_difference(masked_copy(net, masks), result.network.eval(), batch()) < 1e-5


class HardCoded(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, stride=16, padding=1)
        self.fc = nn.Linear(16, 2)

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).reshape(-1, 16))  # 4 channels x 2 x 2, hard-coded


def test_a_forward_that_hard_codes_channel_counts_is_an_error_not_a_wrong_network():
    torch.manual_seed(0)
    net = HardCoded()
    masks = full_masks(net)
    masks["fc.weight"][:, :4] = False  # nothing reads channel 0
    # on the example batch, reshape(-1, 16) looks exactly like a flatten; after compaction it cannot work
    (group,) = channel_groups(net, EXAMPLE)
    assert group.consumers[0].features_per_channel == 4
    with pytest.raises(CompactionError, match="does not run.*hard-code a channel count"):
        compact(net, masks, EXAMPLE)


class SumsChannels(nn.Module):
    """Also sums over all channels: the channel analysis rightly refuses to prune this space."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        h = torch.relu(self.bn(self.conv(x)))
        return self.fc(h.mean(dim=(2, 3))) + h.sum(dim=(1, 2, 3)).unsqueeze(1)


def test_a_wrong_channel_analysis_is_caught_by_comparing_outputs():
    torch.manual_seed(0)
    net = with_trained_norms(SumsChannels())
    with torch.no_grad():
        net.bn.bias[1] = 1.0  # the removed channel carries a constant into the sum
    assert channel_groups(net, EXAMPLE) == []
    wrong = ChannelGroup(4, ["conv"], [Consumer("fc", 1)], ["bn"])
    masks = channel_masks(net, [wrong], [torch.tensor([True, False, True, True])])
    with pytest.raises(CompactionError, match="differs from the masked network"):
        compact(net, masks, torch.randn(2, 3, 32, 32), groups=[wrong])


# --------------------------------------------------------------------------- costs


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1, bias=True)  # 108 weights + 4 biases, on 8x8
        self.bn = nn.BatchNorm2d(4)  # 8 parameters
        self.fc = nn.Linear(4, 2)  # 8 weights + 2 biases

    def forward(self, x):
        return self.fc(torch.relu(self.bn(self.conv(x))).mean(dim=(2, 3)))


def test_params_and_macs_by_hand():
    net = Tiny()
    x = torch.zeros(2, 3, 8, 8)
    assert count_params(net) == 108 + 4 + 8 + 8 + 2
    assert count_macs(net, x) == 108 * 64 + 8
    masks = full_masks(net)
    masks["conv.weight"][0, :2] = False  # 18 conv weights gone
    masks["fc.weight"][1, 3] = False
    assert count_params(net, masks) == 90 + 4 + 8 + 7 + 2
    assert count_macs(net, x, masks) == 90 * 64 + 7


def test_structured_costs_are_the_compacted_networks(model):
    _, net, groups = model
    masks = structured_masks(net, groups, "ft", 0.5)
    costs, compacted = network_costs(net, masks, EXAMPLE, structured=True)
    # MACs: a removed channel's weights were masked already, so the kept MACs agree exactly
    assert costs.macs == count_macs(net, EXAMPLE, masks) < count_macs(net, EXAMPLE)
    # params: the compacted network also drops the batch-norm entries of removed channels
    removed_norm_entries = sum(
        2 * int(removed(masks, g).sum()) * len(g.norms)
        for g in groups
    )
    assert costs.params == count_params(net, masks) - removed_norm_entries
    assert costs.params == count_params(compacted, compact(net, masks, EXAMPLE, groups=groups).masks)
    unstructured, same = network_costs(net, masks, EXAMPLE, structured=False)
    assert same is net and unstructured.params == count_params(net, masks)


def test_latency_is_measured_on_the_inference_form():
    net = build("small_cnn")
    net.train()
    x = batch()
    folded = inference_form(net)
    with torch.no_grad():
        assert torch.allclose(folded(x), net.eval()(x), atol=1e-4)
    net.train()
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())  # folded into the convs
    seconds = measure_latency(net, x, warmup=1, repeats=3)
    assert 0 < seconds < 10 and net.training
    assert set(machine_fingerprint()) == {"cpu", "cores", "torch", "threads"}
    assert machine_fingerprint()["threads"] == torch.get_num_threads() == 1
    assert math.isfinite(measure_latency(net, x, warmup=0, repeats=1, inference=False))
