"""The paper's networks: they build, run at their input size, have the published sizes and recipes."""

from __future__ import annotations

import math

import pytest
import torch

from robustprune.plugin.channels import channel_groups


def _densenet22_count() -> int:
    """DenseNet-BC-22 (growth k = 12, 3 bottlenecks per block, compression 0.5), counted by hand."""
    k, total, c = 12, 3 * 24 * 9, 24  # stem conv: 3 -> 2k channels
    for block in range(3):
        for _ in range(3):
            total += 2 * c + c * 4 * k + 2 * 4 * k + 4 * k * k * 9  # bn1, 1x1 conv, bn2, 3x3 conv
            c += k
        if block < 2:
            total += 2 * c + c * (c // 2)  # transition: bn and 1x1 conv to half the channels
            c //= 2
    return total + 2 * c + c * 10 + 10  # final bn, classifier


# name -> (input shape, classes, published parameter count, relative tolerance)
PUBLISHED = {
    # He et al. 2016: 0.27 M, 0.85 M, 1.7 M (option A); option-B projections add 2,752 parameters
    "resnet20": ((3, 32, 32), 10, 0.27e6, 0.02),
    "resnet56": ((3, 32, 32), 10, 0.85e6, 0.02),
    "resnet110": ((3, 32, 32), 10, 1.7e6, 0.03),
    # the CIFAR VGG-16 with batch norm of the paper's code: 14.7 M
    "vgg16_bn": ((3, 32, 32), 10, 14.7e6, 0.01),
    # Zagoruyko & Komodakis 2016, WRN-16-8: 11.0 M
    "wrn16_8": ((3, 32, 32), 10, 11.0e6, 0.01),
    # DenseNet-BC L=22, k=12 (the paper's code): exact count from the configuration
    "densenet22": ((3, 32, 32), 10, _densenet22_count(), 0.0),
    # torchvision's documented counts (1000 classes)
    "resnet18": ((3, 224, 224), 1000, 11_689_512, 0.0),
    "resnet101": ((3, 224, 224), 1000, 44_549_160, 0.0),
}


@pytest.mark.parametrize("name", list(PUBLISHED))
def test_builds_runs_and_has_the_published_size(registry, name):
    shape, classes, published, tolerance = PUBLISHED[name]
    torch.manual_seed(0)
    network = registry.model(name).item.build(classes, shape)
    count = sum(p.numel() for p in network.parameters())
    assert count == pytest.approx(published, rel=tolerance), f"{name}: {count:,} parameters"
    network.eval()
    with torch.inference_mode():
        out = network(torch.randn(2 if shape[1] == 32 else 1, *shape))
    assert out.shape[1] == classes and torch.isfinite(out).all()


def test_resnet20_keeps_its_option_b_count(registry):
    network = registry.model("resnet20").item.build(10, (3, 32, 32))
    assert sum(p.numel() for p in network.parameters()) == 272_474


@pytest.mark.parametrize("name", ["resnet20", "vgg16_bn", "wrn16_8"])
def test_structured_methods_can_follow_the_channels(registry, name):
    """The networks trace with torch.fx and expose prunable channel groups to FT and PFP."""
    network = registry.model(name).item.build(10, (3, 32, 32))
    groups = channel_groups(network, torch.randn(2, 3, 32, 32))
    assert groups, f"{name} has no prunable channel group"


def test_vgg16_bn_is_the_cifar_variant(registry):
    with pytest.raises(ValueError, match="needs 32x32 inputs, got 64x64"):
        registry.model("vgg16_bn").item.build(10, (3, 64, 64))


# name -> (epochs, batch, lr, weight decay, nesterov, milestone epochs, gamma, warm-up epochs, augment, retrain)
PAPER_RECIPES = {
    "resnet20": (182, 128, 0.1, 1e-4, False, (91, 136), 0.1, 5, "crop_flip", None),
    "resnet56": (182, 128, 0.1, 1e-4, False, (91, 136), 0.1, 5, "crop_flip", None),
    "resnet110": (182, 128, 0.1, 1e-4, False, (91, 136), 0.1, 5, "crop_flip", None),
    "vgg16_bn": (300, 256, 0.05, 5e-4, False, tuple(range(30, 300, 30)), 0.5, 10, "crop_flip", 150),
    "wrn16_8": (200, 128, 0.1, 5e-4, True, (60, 120, 160), 0.2, 5, "crop_flip", None),
    "densenet22": (300, 64, 0.1, 1e-4, True, (150, 225), 0.1, 10, "crop_flip", None),
    "resnet18": (90, 256, 0.1, 1e-4, False, (30, 60, 80), 0.1, 5, "resized_crop_flip", None),
    "resnet101": (90, 256, 0.1, 1e-4, False, (30, 60, 80), 0.1, 5, "resized_crop_flip", None),
}


@pytest.mark.parametrize("name", list(PAPER_RECIPES))
def test_default_recipe_is_the_papers(registry, name):
    epochs, batch, lr, wd, nesterov, milestones, gamma, warmup, augment, retrain = PAPER_RECIPES[name]
    recipe = registry.model(name).item.recipe
    assert (recipe.epochs, recipe.batch_size, recipe.lr, recipe.weight_decay, recipe.nesterov) == (
        epochs, batch, lr, wd, nesterov)
    assert recipe.momentum == 0.9 and recipe.gamma == gamma and recipe.augment == augment
    assert [round(m * epochs, 6) for m in recipe.milestones] == list(milestones)
    assert math.isclose(recipe.warmup * epochs, warmup)
    assert recipe.retrain_epochs == retrain
