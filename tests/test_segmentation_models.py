"""Segmentation models (plugins/models/segmentation.py): dense logits, and all four paper methods prune them.

For ``seg_cnn`` (fast) and torchvision's DeepLabV3 with a MobileNetV3-Large
and a ResNet-50 backbone (slow): WT, SiPP, FT and PFP hit the ratio within
the host's tolerance at 0.3 and 0.6; FT's and PFP's results compact exactly
(the compacted network computes what the masked one does, float64); the
channel analysis understands the ASPP head (every branch, the image-pooling
branch with its ``F.interpolate`` included, is a group the projection reads
at its offset in the concatenation), and the only channels it refuses are
the input's and the logits'.
"""

from __future__ import annotations

import copy

import pytest
import torch
from calibration import calibrated
from torch import nn

from robustprune import PruneContext
from robustprune.compute.compaction import compact
from robustprune.compute.costs import count_macs
from robustprune.plugin.channels import ChannelGroup, channel_groups, explain_channels
from robustprune.plugin.masks import RATIO_TOLERANCE, apply_masks, full_masks, prunable_weights, validate_masks
from robustprune.plugin.registry import Registry

CLASSES = 11
# input size and where the ASPP head lives, per model
MODELS = {
    "seg_cnn": (32, "aspp.", "aspp.project.0"),
    "deeplabv3_mobilenet_v3_large": (64, "model.classifier.0.convs", "model.classifier.0.project.0"),
    "deeplabv3_resnet50": (33, "model.classifier.0.convs", "model.classifier.0.project.0"),
}
FAST = {"seg_cnn"}
METHODS = ("wt", "sipp", "ft", "pfp")


def build(registry: Registry, name: str) -> nn.Module:
    """The network in float64, batch norms calibrated (:func:`calibration.calibrated`: fresh statistics let a deep
    net's outputs vanish or explode, and a comparison of outputs near 0 would check nothing)."""
    size = MODELS[name][0]
    torch.manual_seed(0)
    return calibrated(registry.model(name).item.build(CLASSES, (3, size, size)), size, batch=4)


@pytest.fixture(scope="module", params=[pytest.param(n, marks=() if n in FAST else pytest.mark.slow) for n in MODELS])
def model(request, registry) -> tuple[str, nn.Module, list[ChannelGroup], torch.Tensor]:
    name = request.param
    network = build(registry, name)
    size = MODELS[name][0]
    example = torch.randn(2, 3, size, size, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    return name, network, channel_groups(network, example), example


def test_seg_cnn_returns_logits_at_the_input_size(registry):
    spec = registry.model("seg_cnn").item
    network = spec.build(CLASSES, (3, 32, 32)).eval()
    assert 30_000 <= sum(p.numel() for p in network.parameters()) <= 80_000
    with torch.no_grad():
        assert network(torch.randn(2, 3, 32, 32)).shape == (2, CLASSES, 32, 32)
        assert network(torch.randn(1, 3, 33, 47)).shape == (1, CLASSES, 33, 47)  # any size, not just 32x32
    # trains on a batch of (N, H, W) masks, as the engine's cross-entropy over pixels does
    network.train()
    loss = nn.functional.cross_entropy(network(torch.randn(4, 3, 32, 32)), torch.randint(0, CLASSES, (4, 32, 32)))
    loss.backward()
    assert all(p.grad is not None for p in network.parameters())


@pytest.mark.slow
@pytest.mark.parametrize("name", ["deeplabv3_mobilenet_v3_large", "deeplabv3_resnet50"])
def test_deeplab_returns_a_tensor_of_logits_at_the_input_size(registry, name):
    network = registry.model(name).item.build(21, (3, 64, 64)).eval()
    assert not hasattr(network.model, "aux_classifier") or network.model.aux_classifier is None
    with torch.no_grad():
        out = network(torch.randn(2, 3, 65, 49))
    assert isinstance(out, torch.Tensor) and out.shape == (2, 21, 65, 49)


def test_recipes(registry):
    """No augmentation (none matches torchprune's random rescale and 513 crop; see the module docstring) and
    torchprune's VOC training values for both DeepLabV3 models."""
    for name in MODELS:
        assert registry.model(name).item.recipe.augment == "none", name
    voc = registry.model("deeplabv3_resnet50").item.recipe
    assert (voc.epochs, voc.batch_size, voc.lr, voc.momentum, voc.weight_decay) == (45, 16, 0.02, 0.9, 1e-4)
    assert registry.model("deeplabv3_mobilenet_v3_large").item.recipe == voc


def test_the_channel_analysis_understands_the_aspp_head(model):
    name, network, groups, example = model
    _, branches, project = MODELS[name]
    # every Conv2d producing an ASPP branch (1x1, dilated, image pooling)
    branch_convs = [n for n, m in network.named_modules()
                    if n.startswith(branches) and isinstance(m, nn.Conv2d) and n != project]
    assert len(branch_convs) == (3 if name == "seg_cnn" else 5), branch_convs
    read_by_project: dict[str, int] = {}
    for group in groups:
        for consumer in group.consumers:
            if consumer.module == project:
                assert len(group.producers) == 1
                read_by_project[group.producers[0]] = consumer.offset
    assert set(read_by_project) == set(branch_convs)
    width = network.get_submodule(project).in_channels // len(branch_convs)
    assert sorted(read_by_project.values()) == [k * width for k in range(len(branch_convs))]
    # only the input and the logits (they reach the output) are refused
    refused = [line for line in explain_channels(network, example[:1]) if line.startswith("not prunable")]
    assert len(refused) == 2, refused
    assert "it is the network input" in refused[0] and "it reaches the network output" in refused[1]
    # every other Conv2d's output channels are a group (depthwise convs act inside their input's group)
    producers = {p for g in groups for p in g.producers}
    convs = {n for n, m in network.named_modules() if isinstance(m, nn.Conv2d) and m.out_channels != CLASSES}
    assert convs <= producers, sorted(convs - producers)[:5]


def test_upsampling_passes_channels_through():
    """``nn.Upsample`` and ``F.interpolate`` act on each channel alone, like pooling: the conv before them is
    a group read by the conv after them."""

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.up, self.b = nn.Conv2d(3, 8, 3, padding=1), nn.Upsample(scale_factor=2), nn.Conv2d(8, 8, 1)
            self.c = nn.Conv2d(8, 4, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.b(self.up(self.a(x)))
            return self.c(nn.functional.interpolate(y, size=x.shape[-2:], mode="bicubic", align_corners=False))

    groups = channel_groups(Net(), torch.zeros(1, 3, 8, 8))
    assert [(g.producers, [c.module for c in g.consumers]) for g in groups] == [(["a"], ["b"]), (["b"], ["c"])]


def _prune(registry: Registry, method: str, network: nn.Module, groups: list[ChannelGroup], example: torch.Tensor,
           ratio: float) -> dict[str, torch.Tensor]:
    plugin = registry.method(method).item
    data = None
    if plugin.data_informed:
        data = torch.randn(4, *example.shape[1:], dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    context = PruneContext.for_network(network, example, data=data)
    context.groups = groups
    return plugin.prune(network, ratio, context)


# seg_cnn: every method at two ratios (fast); MobileNetV3: the data-informed ones, whose sensitivities read dense
# activations (wt and ft are structure-only: seg_cnn and ResNet-50 cover them); ResNet-50: ft, whose per-layer rows
# meet the ASPP concatenation (wt prunes it in tests/test_segmentation_suites_e2e.py; a pfp pass takes half a minute
# there on 2 cores, and pfp and sipp meet the same head in MobileNetV3's DeepLabV3)
PRUNE_CASES = [
    *[pytest.param("seg_cnn", method, ratio) for method in METHODS for ratio in (0.3, 0.6)],
    *[pytest.param("deeplabv3_mobilenet_v3_large", method, 0.5, marks=pytest.mark.slow) for method in ("sipp", "pfp")],
    *[pytest.param("deeplabv3_resnet50", method, 0.5, marks=pytest.mark.slow) for method in ("ft",)],
]


@pytest.mark.parametrize(("model", "method", "ratio"), PRUNE_CASES, indirect=["model"])
def test_each_method_hits_the_ratio_and_structured_ones_compact_exactly(registry, model, method, ratio):
    name, network, groups, example = model
    before = {k: v.clone() for k, v in network.state_dict().items()}
    masks = _prune(registry, method, network, groups, example, ratio)
    assert set(masks) == set(prunable_weights(network))
    _, achieved = validate_masks(masks, full_masks(network), ratio, method)
    assert abs(achieved - ratio) <= RATIO_TOLERANCE * ratio
    assert all(torch.equal(before[k], v) for k, v in network.state_dict().items()), "prune() changed the network"
    if not registry.method(method).item.structured:
        return
    compacted = compact(network, masks, example, groups)
    masked = copy.deepcopy(network)
    apply_masks(masked, masks)
    with torch.no_grad():
        expected, got = masked(example), compacted.network.eval()(example)
    assert got.shape == (2, CLASSES, *example.shape[2:])
    assert expected.abs().max() > 1e-3  # a network that outputs ~0 would compare nothing
    assert (expected - got).abs().max() < 1e-5
    assert count_macs(compacted.network, example) < count_macs(network, example)
