"""CIFAR ResNets (He et al. 2016, section 4.2): resnet20/56/110 with 6n+2 layers.

Downsampling shortcuts are 1x1 convolutions with batch norm (option B), which
adds 2,752 parameters to resnet20 (272 k instead of 270 k) and keeps every
channel dependency an addition that structured pruning can follow.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import nn

from robustprune import ModelSpec, Recipe, hookimpl


class BasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = nn.Sequential()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    def __init__(self, depth: int, num_classes: int = 10, in_channels: int = 3):
        super().__init__()
        if (depth - 2) % 6:
            raise ValueError(f"CIFAR ResNet depth must be 6n+2 (20, 32, 44, 56, 110), got {depth}")
        n = (depth - 2) // 6
        self.conv1 = nn.Conv2d(in_channels, 16, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        blocks, c_in = [], 16
        for stage, width in enumerate((16, 32, 64)):
            for i in range(n):
                blocks.append(BasicBlock(c_in, width, stride=2 if stage > 0 and i == 0 else 1))
                c_in = width
        self.layers = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(64, num_classes)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        return self.fc(self.flatten(self.pool(self.layers(out))))


# The paper's resnet20 recipe (DESIGN.md section 3): 182 epochs, lr x0.1 at 91 and 136, 5 warm-up epochs.
CIFAR_RESNET_RECIPE = Recipe(
    epochs=182, batch_size=128, lr=0.1, momentum=0.9, weight_decay=1e-4,
    milestones=(91 / 182, 136 / 182), gamma=0.1, warmup=5 / 182, augment="crop_flip",
)


def _builder(depth: int):
    return lambda num_classes, input_shape: CifarResNet(depth, num_classes, in_channels=input_shape[0])


@hookimpl
def robustprune_register_models(register):
    for depth, params in ((20, "0.27 M"), (56, "0.86 M"), (110, "1.7 M")):
        register(
            ModelSpec(
                name=f"resnet{depth}",
                build=_builder(depth),
                recipe=CIFAR_RESNET_RECIPE,
                description=f"CIFAR ResNet-{depth} ({params} parameters), the paper's recipe",
            )
        )
