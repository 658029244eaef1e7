"""Channel-dependency analysis (robustprune.plugin.channels) and allocation: groups, masks and their meaning."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from plugin_modules import load_plugin
from torch import nn

from robustprune.plugin.channels import (
    ChannelGroup,
    Consumer,
    StructureError,
    channel_groups,
    channel_masks,
    explain_channels,
)
from robustprune.plugin.masks import PruneError, full_masks, prunable_weights

EXAMPLE = torch.zeros(2, 3, 32, 32)


def small_cnn() -> nn.Module:
    return load_plugin("models/small_cnn.py").SmallCNN(10)


def resnet20() -> nn.Module:
    return load_plugin("models/cifar_resnet.py").CifarResNet(20)


def by_producer(groups: list[ChannelGroup]) -> dict[str, ChannelGroup]:
    return {p: g for g in groups for p in g.producers}


# --------------------------------------------------------------------------- SmallCNN


def test_small_cnn_groups_are_the_four_conv_outputs():
    net = small_cnn()
    convs = [name for name, m in net.named_modules() if isinstance(m, nn.Conv2d)]
    norms = [name for name, m in net.named_modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(convs) == 4
    groups = channel_groups(net, EXAMPLE)
    # every conv output is prunable, read by the next conv (the last by the classifier);
    # the classifier's outputs reach the network output and are never a group
    assert [g.producers for g in groups] == [[c] for c in convs]
    assert [g.consumers for g in groups] == [[Consumer(c, 1)] for c in convs[1:] + ["classifier"]]
    assert [g.norms for g in groups] == [[n] for n in norms]
    assert [g.channels for g in groups] == [dict(net.named_modules())[c].out_channels for c in convs]


def test_small_cnn_groups_leave_the_network_untouched():
    net = small_cnn()
    net.train()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    channel_groups(net, torch.randn(4, 3, 32, 32))
    assert net.training and all(m.training for m in net.modules())
    for key, value in net.state_dict().items():
        assert torch.equal(value, before[key]), key  # batch norm statistics unchanged


def test_explain_names_why_spaces_are_not_prunable():
    lines = explain_channels(small_cnn(), EXAMPLE)
    assert any("classifier" in line and "network output" in line for line in lines)
    assert any("network input" in line for line in lines)
    assert sum(line.startswith("prunable") for line in lines) == 4


def test_channel_masks_zero_exactly_the_rows_and_columns():
    net = small_cnn()
    groups = channel_groups(net, EXAMPLE)
    second = groups[1]  # produced by features.3, read by features.6
    (producer,), (consumer,) = second.producers, second.consumers
    keep = [torch.ones(g.channels, dtype=torch.bool) for g in groups]
    keep[1][[2, 5]] = False
    masks = channel_masks(net, groups, keep)

    assert set(masks) == set(prunable_weights(net))
    expected = full_masks(net)
    expected[f"{producer}.weight"][[2, 5]] = False  # output filters
    expected[f"{consumer.module}.weight"][:, [2, 5]] = False  # input channels of the next conv
    for name in masks:
        assert torch.equal(masks[name], expected[name]), name
    weights = prunable_weights(net)
    removed = 2 * weights[f"{producer}.weight"][0].numel() + 2 * weights[f"{consumer.module}.weight"][:, 0].numel()
    assert sum(int((~m).sum()) for m in masks.values()) == removed


def test_channel_masks_reject_wrong_keep_vectors():
    net = small_cnn()
    groups = channel_groups(net, EXAMPLE)
    with pytest.raises(ValueError, match="channels"):
        channel_masks(net, groups, [torch.ones(g.channels + 1, dtype=torch.bool) for g in groups])
    with pytest.raises(ValueError, match="keep vectors"):
        channel_masks(net, groups, [])


# --------------------------------------------------------------------------- flatten into a Linear


class FlattenNet(nn.Module):
    """conv 3->4, pool to 4x4, flatten (module, view or function), linear 64->5, linear 5->3."""

    def __init__(self, how: str):
        super().__init__()
        self.how = how
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.pool = nn.AdaptiveMaxPool2d(4)
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(4 * 16, 5)
        self.fc2 = nn.Linear(5, 3)

    def forward(self, x):
        x = self.pool(F.relu(self.bn(self.conv(x)), inplace=True))
        if self.how == "module":
            x = self.flatten(x)
        elif self.how == "view":
            x = x.view(x.size(0), -1)
        else:
            x = torch.flatten(x, 1)
        return self.fc2(F.dropout(torch.relu(self.fc1(x)), 0.1, self.training))


@pytest.mark.parametrize("how", ["module", "view", "function"])
def test_flatten_makes_blocks_of_input_features(how):
    net = FlattenNet(how)
    groups = channel_groups(net, EXAMPLE)
    assert [(g.producers, g.consumers) for g in groups] == [
        (["conv"], [Consumer("fc1", 16)]),  # each conv channel is 4x4 = 16 features of fc1
        (["fc1"], [Consumer("fc2", 1)]),
    ]
    keep = [torch.tensor([True, False, True, True]), torch.ones(5, dtype=torch.bool)]
    masks = channel_masks(net, groups, keep)
    assert not masks["conv.weight"][1].any() and masks["conv.weight"][[0, 2, 3]].all()
    assert not masks["fc1.weight"][:, 16:32].any()
    assert masks["fc1.weight"][:, :16].all() and masks["fc1.weight"][:, 32:].all()


# --------------------------------------------------------------------------- resnet20


def test_resnet20_stage_streams_are_merged_groups():
    net = resnet20()
    groups = channel_groups(net, EXAMPLE)
    assert len(groups) == 12  # 3 stage streams + 9 per-block conv1 spaces
    streams = [g for g in groups if len(g.producers) > 1]
    assert [g.producers for g in streams] == [
        ["conv1", "layers.0.conv2", "layers.1.conv2", "layers.2.conv2"],
        ["layers.3.conv2", "layers.3.shortcut.0", "layers.4.conv2", "layers.5.conv2"],
        ["layers.6.conv2", "layers.6.shortcut.0", "layers.7.conv2", "layers.8.conv2"],
    ]
    assert [g.channels for g in streams] == [16, 32, 64]
    # a stream is read by every block conv1 of its stage and by the next stage's first conv1 and shortcut
    assert [c.module for c in streams[0].consumers] == [
        "layers.0.conv1", "layers.1.conv1", "layers.2.conv1", "layers.3.conv1", "layers.3.shortcut.0",
    ]  # fmt: skip
    assert [c.module for c in streams[2].consumers] == ["layers.7.conv1", "layers.8.conv1", "fc"]
    assert streams[1].norms == ["layers.3.bn2", "layers.3.shortcut.1", "layers.4.bn2", "layers.5.bn2"]

    inner = [g for g in groups if len(g.producers) == 1]
    assert [g.producers for g in inner] == [[f"layers.{i}.conv1"] for i in range(9)]
    assert [g.consumers for g in inner] == [[Consumer(f"layers.{i}.conv2", 1)] for i in range(9)]
    assert [g.norms for g in inner] == [[f"layers.{i}.bn1"] for i in range(9)]
    # first appearance order: the stem's stream, then each block's conv1; a stage's stream after its first conv1
    assert groups[0] is streams[0] and groups[5] is streams[1] and groups[9] is streams[2]


def randomize_norms(net: nn.Module, generator: torch.Generator) -> None:
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.copy_(torch.rand(m.num_features, generator=generator) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=generator))
                m.running_mean.copy_(torch.randn(m.num_features, generator=generator) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=generator) + 0.5)


def random_keep(groups: list[ChannelGroup], generator: torch.Generator) -> list[torch.Tensor]:
    keep = []
    for g in groups:
        k = torch.rand(g.channels, generator=generator) < 0.6
        k[0] = True
        keep.append(k)
    return keep


def test_masked_resnet_equals_the_network_with_those_channels_zeroed():
    """Masking the weights is the same as zeroing the removed channels wherever they are produced or read.

    If the masks cut a weight too many or too few for the groups (a wrong row,
    column or flatten block), the two networks differ. That the groups name
    every consumer is checked by the next test.
    """
    generator = torch.Generator().manual_seed(0)
    net = resnet20()
    randomize_norms(net, generator)
    net.eval()
    groups = channel_groups(net, EXAMPLE)
    keep = random_keep(groups, generator)
    x = torch.randn(3, 3, 32, 32, generator=generator)

    masked = resnet20()
    masked.load_state_dict(net.state_dict())
    masked.eval()
    masks = channel_masks(masked, groups, keep)
    with torch.no_grad():
        for name, weight in prunable_weights(masked).items():
            weight.mul_(masks[name])

    modules = dict(net.named_modules())
    handles = []
    for g, k in zip(groups, keep):
        gate = k.float().view(1, -1, 1, 1)
        for p in g.producers:
            handles.append(modules[p].register_forward_hook(lambda m, i, out, gate=gate: out * gate))
        for c in g.consumers:
            vector_gate = k.float().repeat_interleave(c.features_per_channel)
            handles.append(
                modules[c.module].register_forward_pre_hook(
                    lambda m, i, gate=gate, vector_gate=vector_gate:
                    (i[0] * (gate if i[0].dim() == 4 else vector_gate),)
                )
            )
    with torch.no_grad():
        expected = net(x)
        got = masked(x)
    for h in handles:
        h.remove()
    assert torch.allclose(got, expected, atol=1e-5)


def test_removed_channels_are_ignored_by_every_consumer():
    """Whatever a removed channel carries (here: its batch-norm bias), the output does not change."""
    generator = torch.Generator().manual_seed(1)
    net = resnet20()
    randomize_norms(net, generator)
    net.eval()
    groups = channel_groups(net, EXAMPLE)
    keep = random_keep(groups, generator)
    with torch.no_grad():
        masks = channel_masks(net, groups, keep)
        for name, weight in prunable_weights(net).items():
            weight.mul_(masks[name])
        x = torch.randn(2, 3, 32, 32, generator=generator)
        before = net(x)
        modules = dict(net.named_modules())
        for g, k in zip(groups, keep):
            for norm in g.norms:
                modules[norm].bias[~k] += 100.0
        assert torch.allclose(net(x), before, atol=1e-5)
        # and the check has teeth: a kept channel's bias does change the output
        modules[groups[0].norms[0]].bias[keep[0]] += 100.0
        assert not torch.allclose(net(x), before, atol=1e-3)


# --------------------------------------------------------------------------- conservative cases


class CatNet(nn.Module):
    """Two branches concatenated, then read by one conv: each branch is its own group, at its own offset."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 4, 3, padding=1)
        self.b = nn.Conv2d(3, 6, 3, padding=1)
        self.bn = nn.BatchNorm2d(10)
        self.c = nn.Conv2d(10, 8, 3, padding=1)
        self.fc = nn.Linear(8 * 4, 2)

    def forward(self, x):
        y = self.bn(torch.cat([F.relu(self.a(x)), F.relu(self.b(x))], dim=1))
        return self.fc(F.adaptive_avg_pool2d(F.relu(self.c(y)), 2).flatten(1))


def test_a_concatenation_keeps_each_input_a_group_at_its_offset():
    groups = channel_groups(CatNet(), EXAMPLE)
    assert [(g.producers, g.consumers, g.norm_entries()) for g in groups] == [
        (["a"], [Consumer("c", 1, 0)], [("bn", 0)]),
        (["b"], [Consumer("c", 1, 4)], [("bn", 4)]),
        (["c"], [Consumer("fc", 4, 0)], []),
    ]
    masks = channel_masks(CatNet(), groups, [torch.tensor([True, False, True, True]), torch.ones(6, dtype=torch.bool),
                                             torch.ones(8, dtype=torch.bool)])
    # channel 1 of `a` is input channel 1 of `c`; `b`'s channels (4..9) stay
    assert not masks["c.weight"][:, 1].any() and masks["c.weight"][:, [0, 2, 3, 4, 9]].all()
    assert not masks["a.weight"][1].any() and masks["b.weight"].all()


def test_a_concatenation_of_flattened_segments_reads_blocks_of_columns():
    class FlatCat(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Conv2d(3, 2, 1)
            self.b = nn.Conv2d(3, 3, 1)
            self.fc = nn.Linear(5 * 4, 2)

        def forward(self, x):
            y = torch.cat([self.a(x), self.b(x)], 1)
            return self.fc(F.adaptive_avg_pool2d(y, 2).flatten(1))

    net = FlatCat()
    groups = channel_groups(net, EXAMPLE)
    assert [g.consumers for g in groups] == [[Consumer("fc", 4, 0)], [Consumer("fc", 4, 2)]]
    masks = channel_masks(net, groups, [torch.tensor([True, True]), torch.tensor([True, False, True])])
    # b's channel 1 is channel 3 of the concatenation: columns 12..15
    assert masks["fc.weight"].all(dim=0).tolist() == [True] * 12 + [False] * 4 + [True] * 4


class OddNet(nn.Module):
    """A grouped conv, a channel slice, a layer called twice and a division by a tensor."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.grouped = nn.Conv2d(8, 8, 3, padding=1, groups=2)
        self.sliced = nn.Conv2d(8, 8, 1)
        self.twice = nn.Conv2d(4, 4, 1)
        self.gate = nn.Conv2d(4, 4, 1)
        self.body = nn.Conv2d(4, 4, 1)
        self.fine = nn.Conv2d(4, 6, 1)
        self.fc = nn.Linear(6, 2)

    def forward(self, x):
        y = self.sliced(self.grouped(self.stem(x)))[:, :4]
        y = self.twice(self.twice(y))
        y = self.body(y) / torch.sigmoid(self.gate(y))
        return self.fc(self.fine(y).mean(dim=(2, 3)))


def test_unknown_operations_are_conservative():
    groups = channel_groups(OddNet(), EXAMPLE)
    # only `fine` survives: its output is read by fc through a spatial mean
    assert [(g.producers, g.consumers) for g in groups] == [(["fine"], [Consumer("fc", 1)])]
    reasons = "\n".join(explain_channels(OddNet(), EXAMPLE))
    assert "grouped convolution grouped (grouped) has groups=2 with 8 inputs and 8 outputs" in reasons
    assert "only depthwise convolutions" in reasons
    assert "getitem" in reasons
    assert "twice is called 2 times" in reasons
    assert "truediv" in reasons


class DepthwiseSE(nn.Module):
    """An inverted residual with squeeze-excitation: expand, depthwise, gate, project, add."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 1)
        self.expand = nn.Conv2d(4, 12, 1)
        self.bn1 = nn.BatchNorm2d(12)
        self.depthwise = nn.Conv2d(12, 12, 3, padding=1, groups=12)
        self.bn2 = nn.BatchNorm2d(12)
        self.squeeze = nn.Conv2d(12, 3, 1)
        self.excite = nn.Conv2d(3, 12, 1)
        self.project = nn.Conv2d(12, 4, 1)
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        x = self.stem(x)
        y = F.relu6(self.bn2(self.depthwise(F.relu6(self.bn1(self.expand(x))))))
        gate = torch.sigmoid(self.excite(F.relu(self.squeeze(F.adaptive_avg_pool2d(y, 1)))))
        return self.fc((x + self.project(gate * y)).mean(dim=(2, 3)))


def test_depthwise_convs_and_squeeze_excitation_join_the_expanded_channels():
    groups = channel_groups(DepthwiseSE(), EXAMPLE)
    by_name = {g.name: g for g in groups}
    expanded = by_name["expand"]
    assert expanded.producers == ["expand", "depthwise", "excite"]
    assert [c.module for c in expanded.consumers] == ["squeeze", "project"]
    assert expanded.norms == ["bn1", "bn2"]
    assert by_name["stem"].producers == ["stem", "project"]  # the residual stream
    assert [c.module for c in by_name["squeeze"].consumers] == ["excite"]


def test_a_depthwise_conv_loses_its_rows_with_the_channels():
    net = DepthwiseSE()
    groups = channel_groups(net, EXAMPLE)
    keep = [torch.ones(g.channels, dtype=torch.bool) for g in groups]
    g = [g.name for g in groups].index("expand")
    keep[g][[0, 5]] = False
    masks = channel_masks(net, groups, keep)
    for name in ("expand", "depthwise", "excite"):
        assert masks[f"{name}.weight"].reshape(12, -1).any(dim=1).tolist() == [i not in (0, 5) for i in range(12)]
    for name in ("squeeze", "project"):
        assert masks[f"{name}.weight"].any(dim=0).reshape(12, -1).any(dim=1).tolist() == [
            i not in (0, 5) for i in range(12)]


class SkipFromInput(nn.Module):
    """x + conv(x): the conv's outputs share the input's space, which no layer produces."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)
        self.head = nn.Conv2d(3, 5, 1)
        self.fc = nn.Linear(5, 2)

    def forward(self, x):
        return self.fc(self.head(x + self.conv(x)).mean(dim=(2, 3)))


def test_a_space_joined_with_the_input_is_not_prunable():
    assert [g.producers for g in channel_groups(SkipFromInput(), EXAMPLE)] == [["head"]]


class Untraceable(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x):
        if x.sum() > 0:  # data-dependent control flow: fx cannot trace it
            return self.conv(x)
        return self.conv(-x)


def test_untraceable_network_raises_a_clear_error():
    with pytest.raises(StructureError, match="torch.fx could not trace") as info:
        channel_groups(Untraceable(), EXAMPLE)
    assert isinstance(info.value, PruneError)  # hosts handle it like any prune failure


def test_each_reader_of_a_residual_stream_knows_which_producers_reach_it():
    """After x + f(x) a block's first conv reads only what the stem and the blocks before it wrote."""
    groups = channel_groups(load_plugin("models/cifar_resnet.py").CifarResNet(20), EXAMPLE)
    stream = next(g for g in groups if g.producers[0] == "conv1")
    reaching = {c.module: [stream.producers[i] for i in stream.producers_reaching(c.module)] for c in stream.consumers}
    assert reaching == {
        "layers.0.conv1": ["conv1"],
        "layers.1.conv1": ["conv1", "layers.0.conv2"],
        "layers.2.conv1": ["conv1", "layers.0.conv2", "layers.1.conv2"],
        "layers.3.conv1": ["conv1", "layers.0.conv2", "layers.1.conv2", "layers.2.conv2"],
        "layers.3.shortcut.0": ["conv1", "layers.0.conv2", "layers.1.conv2", "layers.2.conv2"],
    }
    # a group made by hand knows no graph: every producer reaches every reader
    assert ChannelGroup(4, ["a", "b"], [Consumer("c")]).producers_reaching("c") == [0, 1]
