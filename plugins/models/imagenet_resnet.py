"""torchvision's ResNet-18 and ResNet-101 for 224x224 inputs, with the paper's ImageNet recipe.

Built untrained (``weights=None``). To start from published weights, give
the weights file as the suite's parent checkpoint:
``Suite(models=["resnet18"], parent_checkpoints={"resnet18": "resnet18-f37072d3.pth"})``;
robustprune then uses it as the parent instead of training one (and says
which keys do not fit if the file belongs to another architecture or class count).
"""

from __future__ import annotations

from torch import nn

from robustprune import ModelSpec, Recipe, hookimpl

# torchprune's training/imagenet/{common,resnet}.yaml: 90 epochs, lr x0.1 at 30, 60 and 80, 5 warm-up epochs.
IMAGENET_RECIPE = Recipe(
    epochs=90, batch_size=256, lr=0.1, momentum=0.9, weight_decay=1e-4, nesterov=False,
    milestones=(30 / 90, 60 / 90, 80 / 90), gamma=0.1, warmup=5 / 90, augment="resized_crop_flip",
)


def _builder(depth: int):
    def build(num_classes: int, input_shape: tuple[int, int, int]) -> nn.Module:
        import torchvision.models

        if input_shape[0] != 3:
            raise ValueError(f"resnet{depth} takes RGB inputs (3 channels), got {input_shape[0]}")
        return getattr(torchvision.models, f"resnet{depth}")(weights=None, num_classes=num_classes)

    return build


@hookimpl
def robustprune_register_models(register):
    for depth, params in ((18, "11.7 M"), (101, "44.5 M")):
        register(
            ModelSpec(
                name=f"resnet{depth}",
                build=_builder(depth),
                recipe=IMAGENET_RECIPE,
                description=f"torchvision ResNet-{depth} for 224x224 inputs ({params} parameters with 1000 "
                            "classes), the paper's ImageNet recipe",
            )
        )
