"""A small CNN sized for a fast CPU default: four conv layers, global pooling, one linear layer.

Two registrations: ``small_cnn`` reads the normalized input as it comes;
``small_cnn_std`` first standardises each image (zero mean, unit variance
over its pixels and channels, like TensorFlow's ``per_image_standardization``),
so a global change of brightness or contrast does not move its input. On the
bundled digits (white strokes on black) that is the difference between
chance and 99 % under ``contrast@3``: ``small_cnn`` has only ever seen
full-brightness strokes. The quickstart uses ``small_cnn_std``.
"""

from __future__ import annotations

from torch import nn

from robustprune import ModelSpec, Recipe, hookimpl


def _conv_block(c_in: int, c_out: int, stride: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(c_out),
            nn.ReLU(inplace=True)]


class SmallCNN(nn.Module):
    """conv16/2 - conv32 - conv32/2 - conv64 - global average pool - linear (about 33 k parameters).

    The first layer downsamples at once: about 3 M multiply-accumulates per
    32x32 image, so a CPU trains it in about a second per digits epoch.
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 3, widths: tuple[int, ...] = (16, 32, 32, 64),
                 standardize: bool = False):
        super().__init__()
        self.standardize = standardize
        layers: list[nn.Module] = []
        c_in = in_channels
        for i, width in enumerate(widths):
            layers += _conv_block(c_in, width, stride=1 if i % 2 else 2)
            c_in = width
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.classifier = nn.Linear(c_in, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x):
        if self.standardize:  # per image; the floor keeps a flat image (all one value) finite
            x = (x - x.mean(dim=(1, 2, 3), keepdim=True)) / x.std(dim=(1, 2, 3), keepdim=True).clamp_min(1e-3)
        return self.classifier(self.flatten(self.pool(self.features(x))))


# Tuned on digits for a quick, stable parent: high lr with warm-up, no flips (digits are not symmetric).
SMALL_CNN_RECIPE = Recipe(
    epochs=30, batch_size=64, lr=0.05, momentum=0.9, weight_decay=5e-4,
    milestones=(0.5, 0.75), gamma=0.1, warmup=0.1, augment="crop",
)


@hookimpl
def robustprune_register_models(register):
    register(
        ModelSpec(
            name="small_cnn",
            build=lambda num_classes, input_shape: SmallCNN(num_classes, in_channels=input_shape[0]),
            recipe=SMALL_CNN_RECIPE,
            description="4-layer CNN (about 33 k parameters), the fast CPU default",
        )
    )
    register(
        ModelSpec(
            name="small_cnn_std",
            build=lambda num_classes, input_shape: SmallCNN(num_classes, in_channels=input_shape[0],
                                                            standardize=True),
            recipe=SMALL_CNN_RECIPE,
            description="small_cnn standardising each input image (robust to global contrast), the quickstart's",
        )
    )
