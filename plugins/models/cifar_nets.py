"""The paper's other CIFAR networks: vgg16_bn, wrn16_8 and densenet22, with their training recipes.

Architectures follow the paper's code (torchprune, which takes them from
bearpaw/pytorch-classification and the WRN authors):

* ``vgg16_bn``: VGG-16 configuration D with batch norm, one linear classifier
  on the 512 features left after five poolings of a 32x32 image (14.73 M
  parameters for 10 classes).
* ``wrn16_8``: wide ResNet, depth 16, width 8, pre-activation blocks with 1x1
  projection shortcuts where the width changes (10.96 M parameters).
* ``densenet22``: DenseNet-BC, depth 22, growth rate 12, bottleneck blocks and
  compression 0.5 (0.07 M parameters).

Every layer is a distinct module called once, and the graphs are traceable by
``torch.fx``, so the channel analysis of structured methods can follow them
(DenseNet's concatenations make its dense-block channels unprunable there).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from robustprune import ModelSpec, Recipe, hookimpl

VGG16_CONFIG = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")


def _he_init(module: nn.Module) -> None:
    """He-normal convolutions (fan-out), unit batch norms, zero biases: the init of the paper's code."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.zeros_(m.bias)


class VGG(nn.Module):
    """VGG with batch norm for 32x32 inputs (the CIFAR variant: no 4096-wide classifier layers)."""

    def __init__(self, config=VGG16_CONFIG, num_classes: int = 10, in_channels: int = 3):
        super().__init__()
        layers: list[nn.Module] = []
        c_in = in_channels
        for item in config:
            if item == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(c_in, item, 3, padding=1), nn.BatchNorm2d(item), nn.ReLU(inplace=True)]
                c_in = item
        self.features = nn.Sequential(*layers)
        self.flatten = nn.Flatten()
        self.classifier = nn.Linear(c_in, num_classes)
        _he_init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.flatten(self.features(x)))


class WideBlock(nn.Module):
    """Pre-activation basic block; a 1x1 projection of the activated input where the width changes."""

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.project = c_in != c_out
        self.shortcut = nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False) if self.project else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        activated = F.relu(self.bn1(x))
        out = self.conv2(F.relu(self.bn2(self.conv1(activated))))
        # as in the WRN code: the projection reads the activated input, the identity the raw one
        return out + (self.shortcut(activated) if self.project else x)


class WideResNet(nn.Module):
    def __init__(self, depth: int = 16, width: int = 8, num_classes: int = 10, in_channels: int = 3):
        super().__init__()
        if (depth - 4) % 6:
            raise ValueError(f"wide ResNet depth must be 6n+4 (16, 22, 28, 40), got {depth}")
        n = (depth - 4) // 6
        widths = (16 * width, 32 * width, 64 * width)
        self.conv1 = nn.Conv2d(in_channels, 16, 3, padding=1, bias=False)
        blocks, c_in = [], 16
        for stage, c_out in enumerate(widths):
            for i in range(n):
                blocks.append(WideBlock(c_in, c_out, stride=2 if stage > 0 and i == 0 else 1))
                c_in = c_out
        self.blocks = nn.Sequential(*blocks)
        self.bn = nn.BatchNorm2d(c_in)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(c_in, num_classes)
        _he_init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn(self.blocks(self.conv1(x))))
        return self.fc(self.flatten(self.pool(out)))


class DenseBottleneck(nn.Module):
    """BN-ReLU-conv1x1 (4k channels) - BN-ReLU-conv3x3 (k channels), concatenated to the input."""

    def __init__(self, c_in: int, growth: int):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(c_in)
        self.conv1 = nn.Conv2d(c_in, 4 * growth, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(4 * growth)
        self.conv2 = nn.Conv2d(4 * growth, growth, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv2(F.relu(self.bn2(self.conv1(F.relu(self.bn1(x))))))
        return torch.cat((x, out), 1)


class Transition(nn.Module):
    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.bn = nn.BatchNorm2d(c_in)
        self.conv = nn.Conv2d(c_in, c_out, 1, bias=False)
        self.pool = nn.AvgPool2d(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.conv(F.relu(self.bn(x))))


class DenseNet(nn.Module):
    """DenseNet-BC for CIFAR: three dense blocks of (depth - 4) / 6 bottlenecks, compression 0.5."""

    def __init__(self, depth: int = 22, growth: int = 12, num_classes: int = 10, in_channels: int = 3):
        super().__init__()
        if (depth - 4) % 6:
            raise ValueError(f"DenseNet-BC depth must be 6n+4 (22, 40, 100), got {depth}")
        n = (depth - 4) // 6
        channels = 2 * growth
        self.conv1 = nn.Conv2d(in_channels, channels, 3, padding=1, bias=False)
        stages: list[nn.Module] = []
        for stage in range(3):
            for _ in range(n):
                stages.append(DenseBottleneck(channels, growth))
                channels += growth
            if stage < 2:
                stages.append(Transition(channels, channels // 2))
                channels //= 2
        self.features = nn.Sequential(*stages)
        self.bn = nn.BatchNorm2d(channels)
        self.pool = nn.AdaptiveAvgPool2d(1)  # the 8x8 average pool of the CIFAR code, for any input size
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(channels, num_classes)
        _he_init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn(self.features(self.conv1(x))))
        return self.fc(self.flatten(self.pool(out)))


# The paper's recipes (torchprune's training/cifar/*.yaml): milestones and warm-up as fractions of the epochs.
VGG_RECIPE = Recipe(
    epochs=300, batch_size=256, lr=0.05, momentum=0.9, weight_decay=5e-4, nesterov=False,
    milestones=tuple(e / 300 for e in range(30, 300, 30)), gamma=0.5, warmup=10 / 300, augment="crop_flip",
    retrain_epochs=150,  # the paper retrains VGG for 150 epochs, replaying the schedule
)
WRN_RECIPE = Recipe(
    epochs=200, batch_size=128, lr=0.1, momentum=0.9, weight_decay=5e-4, nesterov=True,
    milestones=(60 / 200, 120 / 200, 160 / 200), gamma=0.2, warmup=5 / 200, augment="crop_flip",
)
DENSENET_RECIPE = Recipe(
    epochs=300, batch_size=64, lr=0.1, momentum=0.9, weight_decay=1e-4, nesterov=True,
    milestones=(150 / 300, 225 / 300), gamma=0.1, warmup=10 / 300, augment="crop_flip",
)


def _build_vgg(num_classes: int, input_shape: tuple[int, int, int]) -> nn.Module:
    if tuple(input_shape[1:]) != (32, 32):
        raise ValueError(f"vgg16_bn is the CIFAR variant and needs 32x32 inputs, got {input_shape[1]}x{input_shape[2]}")
    return VGG(num_classes=num_classes, in_channels=input_shape[0])


@hookimpl
def robustprune_register_models(register):
    register(ModelSpec(
        name="vgg16_bn", build=_build_vgg, recipe=VGG_RECIPE,
        description="VGG-16 with batch norm, CIFAR variant (14.7 M parameters), the paper's recipe",
    ))
    register(ModelSpec(
        name="wrn16_8",
        build=lambda num_classes, input_shape: WideResNet(16, 8, num_classes, in_channels=input_shape[0]),
        recipe=WRN_RECIPE,
        description="wide ResNet 16-8 (11.0 M parameters), the paper's recipe",
    ))
    register(ModelSpec(
        name="densenet22",
        build=lambda num_classes, input_shape: DenseNet(22, 12, num_classes, in_channels=input_shape[0]),
        recipe=DENSENET_RECIPE,
        description="DenseNet-BC 22, growth 12 (0.07 M parameters), the paper's recipe",
    ))
