"""SiPP and PFP sensitivities (robustprune.plugin.sensitivity) against hand-computed values on tiny two-layer networks.

The reference implementations below follow the definition literally, one
data point, patch, output and input at a time in float64, with none of the
vectorisation (einsum, unfold, blocked maxima) of the real code.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from plugin_modules import load_plugin
from torch import nn

from robustprune.plugin.channels import channel_groups
from robustprune.plugin.masks import PruneError
from robustprune.plugin.sensitivity import input_channel_sensitivities, layer_info, sample_size, weight_sensitivities

torch.set_num_threads(1)
EPS = float(np.finfo(np.float32).eps)


# --------------------------------------------------------------------------- tiny networks


class TwoLinear(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(3, 4)
        self.fc2 = nn.Linear(4, 2)

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(x)))


class TwoConv(nn.Module):
    """conv 2->3 (2x2, no padding) - ReLU - conv 3->2 (2x2, padding 1, stride 2)."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(2, 3, 2, bias=True)
        self.conv2 = nn.Conv2d(3, 2, 2, padding=1, stride=2, bias=False)

    def forward(self, x):
        return self.conv2(torch.relu(self.conv1(x)))


def seeded(cls):
    torch.manual_seed(0)
    return cls()


# --------------------------------------------------------------------------- the definition, literally


def shares(w: np.ndarray, a: np.ndarray) -> np.ndarray:
    """g[i, j] = |w_ij| a_j / |z_i^sign(w_ij)| for one data point and one patch (a >= 0)."""
    g = np.zeros_like(w)
    for i, j in itertools.product(range(w.shape[0]), range(w.shape[1])):
        if w[i, j] == 0:
            continue
        same_sign = (w[i] > 0) if w[i, j] > 0 else (w[i] < 0)
        z = sum(abs(w[i, k]) * a[k] for k in range(w.shape[1]) if same_sign[k])
        g[i, j] = abs(w[i, j]) * a[j] / z if z > EPS else 0.0
    return g


def points(x: np.ndarray) -> list[np.ndarray]:
    """The data points a layer sees: an input with negative entries is split into its two signed parts."""
    if (x < 0).any():
        return [np.maximum(x, 0), np.maximum(-x, 0)]
    return [x]


def linear_inputs(net: TwoLinear, data: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    x = data.double().numpy()
    hidden = np.maximum(x @ net.fc1.weight.detach().double().numpy().T + net.fc1.bias.detach().double().numpy(), 0)
    return x, hidden


def patches(x: np.ndarray, kernel: int, stride: int, padding: int) -> list[np.ndarray]:
    """Every receptive field of a (C, H, W) input as a flat (C * k * k) vector, channel-major."""
    padded = np.pad(x, ((0, 0), (padding, padding), (padding, padding)))
    out = []
    for r in range(0, padded.shape[1] - kernel + 1, stride):
        for c in range(0, padded.shape[2] - kernel + 1, stride):
            out.append(padded[:, r : r + kernel, c : c + kernel].reshape(-1))
    return out


def conv_inputs(net: TwoConv, data: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    with torch.no_grad():
        hidden = torch.relu(net.conv1(data))
    return data.double().numpy(), hidden.double().numpy()


# --------------------------------------------------------------------------- SiPP


@pytest.fixture
def linear_case():
    net = seeded(TwoLinear)
    data = torch.randn(5, 3, generator=torch.Generator().manual_seed(1))
    return net, data


@pytest.fixture
def conv_case():
    net = seeded(TwoConv)
    data = torch.randn(3, 2, 4, 4, generator=torch.Generator().manual_seed(2))
    return net, data


def test_sipp_sensitivities_of_a_two_layer_linear_network(linear_case):
    net, data = linear_case
    x, hidden = linear_inputs(net, data)
    expected = {}
    for name, layer, inputs in (("fc1.weight", net.fc1, x), ("fc2.weight", net.fc2, hidden)):
        w = layer.weight.detach().double().numpy()
        expected[name] = np.max([shares(w, p) for row in inputs for p in points(row)], axis=0)
    got = load_plugin("methods/sipp.py").SiPP().sensitivities(net, data)
    assert set(got) == set(expected)
    for name in expected:
        np.testing.assert_allclose(got[name].numpy(), expected[name], rtol=1e-5, atol=1e-7, err_msg=name)
    # every share is a fraction of its neuron's pre-activation; the input layer saw negative inputs
    assert all((v >= 0).all() and (v <= 1 + 1e-6).all() for v in got.values())
    assert (x < 0).any()


@pytest.mark.parametrize("reduction", ["mean", "max"])
def test_sipp_sensitivities_of_a_two_layer_conv_network(conv_case, reduction):
    net, data = conv_case
    x, hidden = conv_inputs(net, data)
    reduce = np.mean if reduction == "mean" else np.max
    expected = {}
    for name, layer, inputs in (("conv1.weight", net.conv1, x), ("conv2.weight", net.conv2, hidden)):
        w = layer.weight.detach().double().numpy()
        flat = w.reshape(w.shape[0], -1)
        per_point = []
        for image in inputs:
            for signed in points(image):
                fields = patches(signed, layer.kernel_size[0], layer.stride[0], layer.padding[0])
                per_point.append(reduce([shares(flat, f) for f in fields], axis=0))
        expected[name] = np.max(per_point, axis=0).reshape(w.shape)
    got = weight_sensitivities(net, data, patch_reduction=reduction)
    for name in expected:
        np.testing.assert_allclose(got[name].numpy(), expected[name], rtol=1e-5, atol=1e-7, err_msg=name)


def test_sipp_scores_do_not_depend_on_the_chunking(conv_case):
    net, data = conv_case
    whole = weight_sensitivities(net, data, batch=32)
    one_by_one = weight_sensitivities(net, data, batch=1)
    assert all(torch.allclose(whole[n], one_by_one[n], atol=1e-7) for n in whole)


def test_grouped_convolutions_are_measured_per_group():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(4, 4, 2, groups=2, bias=False))
    data = torch.rand(3, 4, 3, 3, generator=torch.Generator().manual_seed(5))  # non-negative: no sign split
    w = net[0].weight.detach().double().numpy()  # (4 out, 2 in per group, 2, 2)
    expected_w = np.zeros_like(w)
    expected_c = np.zeros(4)
    for g in range(2):
        rows, channels = slice(2 * g, 2 * g + 2), slice(2 * g, 2 * g + 2)
        flat = w[rows].reshape(2, -1)
        per_point = []
        for image in data.double().numpy():
            fields = patches(image[channels], 2, 1, 0)
            per_point.append(np.mean([shares(flat, f) for f in fields], axis=0))
            for f in fields:
                per_channel = shares(flat, f).reshape(2, 2, 4).max(axis=(0, 2))
                expected_c[channels] = np.maximum(expected_c[channels], per_channel)
        expected_w[rows] = np.max(per_point, axis=0).reshape(2, 2, 2, 2)
    np.testing.assert_allclose(weight_sensitivities(net, data)["0.weight"].numpy(), expected_w, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(input_channel_sensitivities(net, data)["0.weight"].numpy(), expected_c, rtol=1e-5)


def test_padding_is_read_as_the_conv_applies_it():
    """padding="same" equals explicit padding; a reflect-padded conv equals an unpadded one on the padded input."""
    torch.manual_seed(0)
    explicit = nn.Conv2d(2, 3, 3, padding=1)
    same = nn.Conv2d(2, 3, 3, padding="same")
    reflect = nn.Conv2d(2, 3, 3, padding=1, padding_mode="reflect")
    unpadded = nn.Conv2d(2, 3, 3, padding=0)
    for conv in (same, reflect, unpadded):
        conv.load_state_dict(explicit.state_dict())
    data = torch.randn(2, 2, 5, 5, generator=torch.Generator().manual_seed(6))
    for score in (weight_sensitivities, input_channel_sensitivities):
        assert torch.allclose(score(same, data)["weight"], score(explicit, data)["weight"])
        padded = torch.nn.functional.pad(data, (1, 1, 1, 1), mode="reflect")
        assert torch.allclose(score(reflect, data)["weight"], score(unpadded, padded)["weight"])


# --------------------------------------------------------------------------- PFP


def test_pfp_channel_sensitivities_of_a_two_layer_conv_network(conv_case):
    net, data = conv_case
    _, hidden = conv_inputs(net, data)
    w = net.conv2.weight.detach().double().numpy()
    flat = w.reshape(w.shape[0], -1)
    expected = np.zeros(3)
    for image in hidden:  # after the ReLU: no sign split
        for field in patches(image, 2, 2, 1):
            g = shares(flat, field).reshape(2, 3, 4)  # (out, channel, kernel position)
            expected = np.maximum(expected, g.max(axis=(0, 2)))
    # the one channel group: conv1's outputs, read by conv2
    groups = channel_groups(net, data[:2])
    assert [(g.producers, [c.module for c in g.consumers]) for g in groups] == [(["conv1"], ["conv2"])]
    (per_consumer,) = load_plugin("methods/pfp.py").ProvableFilterPruning().channel_sensitivities(net, groups, data)
    (got,) = per_consumer
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-5, atol=1e-7)
    assert expected.max() > 0


@pytest.mark.parametrize("block", [1, 7, 40, 300, 1 << 30])
def test_pfp_sensitivities_are_the_same_whatever_the_blocks_of_the_patch_max(conv_case, monkeypatch, block):
    """The patch-wise max is taken in cache-sized blocks: one product at a time, ragged rows and columns,
    several data points at once, or all at once, the numbers are the definition's."""
    import robustprune.plugin.sensitivity as sensitivity

    net, data = conv_case
    _, hidden = conv_inputs(net, data)
    w = net.conv2.weight.detach().double().numpy()
    expected = np.zeros(3)
    for image in hidden:
        for field in patches(image, 2, 2, 1):
            expected = np.maximum(expected, shares(w.reshape(2, -1), field).reshape(2, 3, 4).max(axis=(0, 2)))
    monkeypatch.setattr(sensitivity, "_BLOCK_ELEMENTS", block)
    got = input_channel_sensitivities(net, data)["conv2.weight"]
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-5, atol=1e-7)
    monkeypatch.setattr(sensitivity, "_BLOCK_ELEMENTS", 1 << 30)
    assert torch.equal(got, input_channel_sensitivities(net, data)["conv2.weight"])  # exact: a max of products


def test_pfp_channel_sensitivities_of_a_two_layer_linear_network(linear_case):
    net, data = linear_case
    x, hidden = linear_inputs(net, data)
    for name, layer, inputs in (("fc1.weight", net.fc1, x), ("fc2.weight", net.fc2, hidden)):
        w = layer.weight.detach().double().numpy()
        expected = np.max([shares(w, p).max(axis=0) for row in inputs for p in points(row)], axis=0)
        got = input_channel_sensitivities(net, data)[name]
        np.testing.assert_allclose(got.numpy(), expected, rtol=1e-5, atol=1e-7, err_msg=name)


def test_pfp_reads_a_flattened_channel_as_its_block_of_features():
    class FlattenNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 2, 3, padding=1)
            self.fc = nn.Linear(2 * 2 * 2, 3)

        def forward(self, x):
            return self.fc(torch.flatten(torch.relu(self.conv(x)), 1))

    net = seeded(FlattenNet)
    data = torch.randn(4, 1, 2, 2, generator=torch.Generator().manual_seed(3))
    groups = channel_groups(net, data[:2])
    assert groups[0].consumers[0].features_per_channel == 4
    per_feature = input_channel_sensitivities(net, data)["fc.weight"]
    (per_consumer,) = load_plugin("methods/pfp.py").ProvableFilterPruning().channel_sensitivities(net, groups, data)
    assert torch.equal(per_consumer[0], per_feature.view(2, 4).amax(dim=1))


# --------------------------------------------------------------------------- sample size and bookkeeping


def test_sample_size_is_the_papers_bound_with_a_cap(conv_case):
    net, data = conv_case
    info = layer_info(net, data[:1])
    # conv1: 3 channels x 3x3 positions; conv2 (padding 1, stride 2 on 3x3): 2 channels x 2x2
    assert info["conv1.weight"].neurons == 27 and info["conv2.weight"].neurons == 8
    assert (info["conv1.weight"].patches, info["conv1.weight"].kernel) == (9, 4)
    eta, eta_star = 27 + 8, 27
    for delta, c in ((1e-16, 3.0), (0.1, 1.0)):
        expected = math.ceil(c * math.log(8 * eta * eta_star / delta))
        assert sample_size(net, data, delta=delta, c_constant=c, cap=None) == expected
    assert sample_size(net, data, cap=50) == 50
    with pytest.raises(ValueError, match="failure probability"):
        sample_size(net, data, delta=1.5)


def test_methods_declare_their_data_size_and_parameters(conv_case):
    net, data = conv_case
    for module, cls in (("methods/sipp.py", "SiPP"), ("methods/pfp.py", "ProvableFilterPruning")):
        method = getattr(load_plugin(module), cls)(delta=1e-6, c_constant=2.0, max_data=1000)
        assert method.data_informed
        expected = {"delta": 1e-6, "c_constant": 2.0, "max_data": 1000}
        assert method.params() == (expected if cls == "SiPP" else {**expected, "allocation": "layer"})
        assert method.data_size(net, data[:2]) == sample_size(net, data[:2], 1e-6, 2.0, cap=None)
        assert getattr(load_plugin(module), cls)(max_data=10).data_size(net, data[:2]) == 10


def test_sensitivities_leave_the_network_as_it_was(conv_case):
    net, data = conv_case
    net.add_module("bn", nn.BatchNorm2d(3))  # unused, but its mode and stats must survive
    net.train()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    weight_sensitivities(net, data)
    input_channel_sensitivities(net, data)
    assert net.training and all(m.training for m in net.modules())
    assert all(torch.equal(v, before[k]) for k, v in net.state_dict().items())
    assert not net.conv1._forward_pre_hooks and not net.conv1._forward_hooks


def test_without_data_the_error_says_how_to_get_it(conv_case):
    net, _ = conv_case
    with pytest.raises(PruneError, match="data_informed = True"):
        weight_sensitivities(net, None)


@pytest.mark.parametrize("block", [1, 40, 300, 3000, 10_000, 1 << 30])
def test_the_blocked_patch_max_is_the_one_shot_max_of_products(monkeypatch, block):
    """Uneven rows, columns and data points in every block shape; empty layers give empty results."""
    import robustprune.plugin.sensitivity as sensitivity

    generator = torch.Generator().manual_seed(0)
    a, inverse = torch.rand(5, 13, 29, generator=generator), torch.rand(5, 11, 29, generator=generator)
    monkeypatch.setattr(sensitivity, "_BLOCK_ELEMENTS", block)
    expected = (inverse[:, :, None, :] * a[:, None, :, :]).amax(dim=-1)
    assert torch.equal(sensitivity._max_product(a, inverse), expected)
    assert sensitivity._max_product(a[:, :0], inverse).shape == (5, 11, 0)
    assert sensitivity._max_product(a, inverse[:, :0]).shape == (5, 0, 13)
