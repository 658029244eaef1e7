"""Segmentation networks: a small CPU-sized DeepLabV3-style net and torchvision's DeepLabV3 models.

Every model here takes normalized ``(N, 3, H, W)`` images and returns dense
logits ``(N, num_classes, H, W)`` at the input's size, as a segmentation
dataset's per-pixel labels need.

* ``seg_cnn``: a small network for the 32x32 ``digits_seg`` images (about
  60 k parameters): four conv-BN-ReLU layers with two stride-2 steps, a mini
  ASPP head in DeepLabV3's style (a 1x1 branch, a dilated 3x3 branch and an
  image-pooling branch, concatenated and projected by a 1x1 conv), a 1x1
  classifier and a bilinear upsampling back to the input size. Its output
  stride is 4: the digits are 8x8 scans upsampled to 32x32, so the 8x8
  feature map carries all the detail the masks have.
* ``deeplabv3_resnet50`` and ``deeplabv3_mobilenet_v3_large``:
  torchvision's models (``torchvision.models.segmentation``) built untrained,
  without the auxiliary classifier (``aux_loss=False``), wrapped so that the
  forward returns the ``"out"`` logits as a tensor (torchvision returns a dict).

The DeepLabV3 recipe follows the paper's config for DeepLabV3-ResNet50 on
Pascal VOC 2011 (torchprune, ``paper/lost/param/voc/deeplabv3_resnet50.yaml``,
whose ``training: file: "training/voc/deeplab.yaml"`` is
``src/experiment/experiment/param/training/voc/deeplab.yaml``): SGD, lr 0.02,
momentum 0.9, weight decay 1e-4, no Nesterov, batch size 16, 45 epochs,
``PolyLR`` (``lr * (1 - epoch / 45) ** 0.9``, torchprune's
``util/lr_scheduler.py``), no warm-up. Where this recipe differs:

* **Schedule.** A :class:`~robustprune.Recipe` has step milestones with a
  factor ``gamma``, not a polynomial decay. The closest step schedule with
  four milestones on a 5 % grid (least squares against the poly curve) is
  ``gamma=0.6`` at 20 %, 55 %, 75 % and 85 % of training: an RMS difference
  of 0.09 x lr, at most 0.22 x lr, the same mean rate (0.523 x lr against
  1 / 1.9 = 0.526 x lr) and a last stretch at 0.13 x lr where poly runs to
  zero. A replayed retrain sees about the same amount of learning.
* **Augmentation: none.** torchprune draws a random scale (shorter side
  256-1024 pixels), a horizontal flip and a random 513x513 crop of each image
  *and its mask* every epoch. robustprune's training moves a mask with its
  image too, but none of its augmentations is that transform:
  ``resized_crop_flip`` only zooms in (8-100 % of the area, aspect jitter),
  ``crop`` and ``crop_flip`` shift by at most 4 pixels. The recipe trains on
  the images as the dataset gives them; a suite picks an augmentation with
  ``recipes={"deeplabv3_resnet50": {"augment": "crop_flip"}}``.
* **No auxiliary loss, no pretrained backbone.** torchprune builds
  ``deeplabv3_resnet50(num_classes=21, aux_loss=True)`` (torchprune's
  ``util/models/deeplab.py``; the torchvision of its time loaded an
  ImageNet-pretrained backbone by default) and trains with
  ``CrossEntropyLossWithAuxiliary``. Here the network is built from scratch
  with ``weights=None, weights_backbone=None, aux_loss=False``: give trained
  weights as the suite's parent checkpoint to start from them
  (``parent_checkpoints={"deeplabv3_resnet50": "..."}``).
* **Weight decay** is not applied to batch norm parameters and biases
  (robustprune's training never decays them; torchprune decays every parameter).

``deeplabv3_mobilenet_v3_large`` has no config in the paper; it uses the same
VOC recipe.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from robustprune import ModelSpec, Recipe, hookimpl


def _conv_bn_relu(c_in: int, c_out: int, kernel: int = 3, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    padding = dilation * (kernel - 1) // 2
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=padding, dilation=dilation, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class MiniASPP(nn.Module):
    """DeepLabV3's atrous spatial pyramid pooling, small: a 1x1 branch, one dilated 3x3 branch and an
    image-pooling branch (global average, 1x1 conv, BN, ReLU, upsampled back), concatenated and projected
    by a 1x1 conv-BN-ReLU."""

    def __init__(self, c_in: int, c_out: int, dilation: int = 2):
        super().__init__()
        self.branch1x1 = _conv_bn_relu(c_in, c_out, kernel=1)
        self.branch_dilated = _conv_bn_relu(c_in, c_out, kernel=3, dilation=dilation)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.pool_conv = _conv_bn_relu(c_in, c_out, kernel=1)
        self.project = _conv_bn_relu(3 * c_out, c_out, kernel=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = F.interpolate(self.pool_conv(self.pool(x)), size=x.shape[-2:], mode="bilinear",
                               align_corners=False)
        return self.project(torch.cat([self.branch1x1(x), self.branch_dilated(x), pooled], dim=1))


class SegCNN(nn.Module):
    """conv16/2 - conv32 - conv48/2 - conv48 - mini ASPP (32) - 1x1 classifier - bilinear x4 (about 60 k
    parameters with 11 classes, about 4.7 M multiply-accumulates per 32x32 image)."""

    def __init__(self, num_classes: int = 11, in_channels: int = 3,
                 widths: tuple[int, int, int, int] = (16, 32, 48, 48), aspp_channels: int = 32):
        super().__init__()
        w1, w2, w3, w4 = widths
        self.features = nn.Sequential(
            _conv_bn_relu(in_channels, w1, stride=2),
            _conv_bn_relu(w1, w2),
            _conv_bn_relu(w2, w3, stride=2),
            _conv_bn_relu(w3, w4),
        )
        self.aspp = MiniASPP(w4, aspp_channels)
        self.classifier = nn.Conv2d(aspp_channels, num_classes, 1)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.classifier(self.aspp(self.features(x)))
        return F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)


class SegmentationOutput(nn.Module):
    """A torchvision segmentation model whose forward returns its ``"out"`` logits as a tensor."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.model(x)["out"]
        return out


# Tried on digits_seg (1,437 training images, 11 classes): 10 epochs take about 13 s on one CPU thread and
# reach 0.98 pixel accuracy, 0.94 mean IoU on its test split. Worse: lr 0.05 with steps at 50 % and 75 %
# (0.97, 0.91), augment="crop" (4-pixel shifts, masks moved along: 0.97, 0.92). No flips: digits are not symmetric.
SEG_CNN_RECIPE = Recipe(
    epochs=10, batch_size=64, lr=0.1, momentum=0.9, weight_decay=5e-4,
    milestones=(0.7, 0.9), gamma=0.1, warmup=0.1, augment="none",
)

# torchprune's training/voc/deeplab.yaml (see the module docstring): poly decay fitted by four steps of x0.6.
DEEPLAB_VOC_RECIPE = Recipe(
    epochs=45, batch_size=16, lr=0.02, momentum=0.9, weight_decay=1e-4, nesterov=False,
    milestones=(0.2, 0.55, 0.75, 0.85), gamma=0.6, warmup=0.0, augment="none",
)


def _build_seg_cnn(num_classes: int, input_shape: tuple[int, int, int]) -> nn.Module:
    return SegCNN(num_classes, in_channels=input_shape[0])


def _torchvision_builder(name: str) -> Callable[[int, tuple[int, int, int]], nn.Module]:
    def build(num_classes: int, input_shape: tuple[int, int, int]) -> nn.Module:
        import torchvision.models.segmentation

        if input_shape[0] != 3:
            raise ValueError(f"{name} takes RGB inputs (3 channels), got {input_shape[0]}")
        model = getattr(torchvision.models.segmentation, name)(
            weights=None, weights_backbone=None, num_classes=num_classes, aux_loss=False
        )
        return SegmentationOutput(model)

    return build


@hookimpl
def robustprune_register_models(register):
    register(
        ModelSpec(
            name="seg_cnn",
            build=_build_seg_cnn,
            recipe=SEG_CNN_RECIPE,
            description="small DeepLabV3-style segmentation CNN for 32x32 images (about 60 k parameters, mini "
                        "ASPP head), trains on a CPU",
        )
    )
    for name, params in (("deeplabv3_resnet50", "39.6 M"), ("deeplabv3_mobilenet_v3_large", "11.0 M")):
        register(
            ModelSpec(
                name=name,
                build=_torchvision_builder(name),
                recipe=DEEPLAB_VOC_RECIPE,
                description=f"torchvision {name} without auxiliary head ({params} parameters with 21 classes), "
                            "the paper's VOC recipe (step approximation of poly decay)",
            )
        )
