"""Structured pruning on real architectures: the channel analysis, FT and PFP, and compaction, end to end.

For each of twelve architectures (the paper's CIFAR networks and torchvision's
ImageNet families, built with 10 classes on 32x32 inputs): every layer whose
output channels Torch-Pruning's dependency graph can prune is a producer of
one of our groups; FT and PFP (both allocations) hit the ratio within the
host's tolerance; the compacted network computes what the
masked one does (float64, max abs difference < 1e-5). Three representative
networks (a residual chain, inverted residuals with depthwise convs, dense
concatenation) run in the fast suite, the rest are marked slow.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import pytest
import torch
import torchvision
from calibration import calibrated
from plugin_modules import load_plugin
from torch import nn

from robustprune import PruneContext
from robustprune.compute.compaction import compact
from robustprune.compute.costs import count_macs
from robustprune.plugin.channels import ChannelGroup, channel_groups
from robustprune.plugin.masks import RATIO_TOLERANCE, Masks, apply_masks, full_masks, validate_masks

SIZE = 32


def _cifar(module: str, cls: str, *args: int) -> Callable[[], nn.Module]:
    return lambda: getattr(load_plugin(f"models/{module}.py"), cls)(*args)


def _torchvision(name: str) -> Callable[[], nn.Module]:
    return lambda: getattr(torchvision.models, name)(weights=None, num_classes=10)


ARCHITECTURES: dict[str, Callable[[], nn.Module]] = {
    "resnet20": _cifar("cifar_resnet", "CifarResNet", 20),
    "resnet56": _cifar("cifar_resnet", "CifarResNet", 56),
    "resnet110": _cifar("cifar_resnet", "CifarResNet", 110),
    "vgg16_bn": _cifar("cifar_nets", "VGG"),
    "wrn16_8": _cifar("cifar_nets", "WideResNet", 16, 8),
    "densenet22": _cifar("cifar_nets", "DenseNet", 22),
    "resnet18": _torchvision("resnet18"),
    "resnet50": _torchvision("resnet50"),
    "mobilenet_v2": _torchvision("mobilenet_v2"),
    "mobilenet_v3_small": _torchvision("mobilenet_v3_small"),
    "efficientnet_b0": _torchvision("efficientnet_b0"),
    "densenet121": _torchvision("densenet121"),
}
FAST = {"resnet20", "mobilenet_v2", "densenet22"}


def build(name: str) -> nn.Module:
    """The network in float64, batch norms calibrated (:func:`calibration.calibrated`)."""
    torch.manual_seed(0)
    return calibrated(ARCHITECTURES[name](), SIZE)


def params(fast: set[str]) -> list:
    return [pytest.param(n, marks=() if n in fast else pytest.mark.slow) for n in ARCHITECTURES]


@pytest.fixture(scope="module", params=params(FAST))
def architecture(request) -> tuple[str, nn.Module, list[ChannelGroup], torch.Tensor]:
    network = build(request.param)
    example = torch.randn(4, 3, SIZE, SIZE, dtype=torch.float64)
    return request.param, network, channel_groups(network, example[:2]), example


def prune(method: str, network: nn.Module, groups: list[ChannelGroup], example: torch.Tensor, ratio: float) -> Masks:
    allocation = "group" if method.endswith("_grouped") else "layer"
    if method.startswith("ft"):
        plugin = load_plugin("methods/ft.py").FilterThresholding(allocation=allocation)
    else:
        plugin = load_plugin("methods/pfp.py").ProvableFilterPruning(allocation=allocation)
    data = torch.randn(2, 3, SIZE, SIZE, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    context = PruneContext.for_network(network, example[:2], data=data)
    context.groups = groups
    return plugin.prune(network, ratio, context)


def test_every_group_a_dependency_graph_prunes_is_ours(architecture):
    tp = pytest.importorskip("torch_pruning")  # in the test extra; a plain install may lack it
    name, network, groups, example = architecture
    graph = tp.DependencyGraph().build_dependency(network, example_inputs=example[:1])
    classifier = [m for m in network.modules() if isinstance(m, nn.Linear)][-1]
    names = {module: n for n, module in network.named_modules()}
    theirs = {
        names[dependency.target.module]
        for group in graph.get_all_groups(ignored_layers=[classifier], root_module_types=[nn.Conv2d, nn.Linear])
        for dependency, _ in group
        if dependency.handler.__name__ == "prune_out_channels"
        and isinstance(dependency.target.module, (nn.Conv2d, nn.Linear))
    }
    ours = {p for g in groups for p in g.producers}
    assert theirs, name
    assert theirs <= ours, f"{name}: Torch-Pruning prunes {sorted(theirs - ours)[:5]}, we do not"


@pytest.mark.parametrize("method", ["ft", "pfp", "ft_grouped", "pfp_grouped"])
@pytest.mark.parametrize("ratio", [0.3, 0.6])
def test_hits_the_ratio_and_compacts_exactly(architecture, method, ratio):
    name, network, groups, example = architecture
    masks = prune(method, network, groups, example, ratio)
    _, achieved = validate_masks(masks, full_masks(network), ratio, method)
    assert abs(achieved - ratio) <= RATIO_TOLERANCE * ratio
    compacted = compact(network, masks, example[:2], groups)
    masked = copy.deepcopy(network)
    apply_masks(masked, masks)
    with torch.no_grad():
        expected, got = masked(example), compacted.network.eval()(example)
    assert expected.abs().max() > 1e-3  # a network that outputs ~0 would compare nothing
    assert (expected - got).abs().max() < 1e-5
    assert count_macs(compacted.network, example) < count_macs(network, example)


@pytest.mark.parametrize("method", ["ft", "ft_grouped"])
def test_mobilenet_v2_ft_at_half_removes_the_expansion_channels(method):
    """FT at ratio 0.5 cuts mobilenet_v2's MACs at least 1.8x (counted from what the masks remove, on the
    compacted network), on 224x224 and on 32x32 inputs."""
    network = build("mobilenet_v2")
    for size in (SIZE, 224):
        example = torch.randn(2, 3, size, size, dtype=torch.float64)
        groups = channel_groups(network, example)
        depthwise = {n for n, m in network.named_modules() if isinstance(m, nn.Conv2d) and m.groups > 1}
        assert len(depthwise) == 17 and depthwise <= {p for g in groups for p in g.producers}
        expansions = [g for g in groups if any(p.endswith(".conv.0.0") for p in g.producers[:1])]
        assert len(expansions) == 16  # every inverted residual's expanded channels are a group
        masks = prune(method, network, groups, example, 0.5)
        compacted = compact(network, masks, example, groups, check=size == SIZE)
        reduction = count_macs(network, example) / count_macs(compacted.network, example, compacted.masks)
        assert reduction >= 1.8, (size, reduction)
