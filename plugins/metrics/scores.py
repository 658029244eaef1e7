"""The first-party scores: ``top1`` (the default for classification), ``top5`` and ``miou`` (segmentation).

Made from :mod:`robustprune.plugin.scores`, the same building blocks a third-party metric can use.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

from robustprune import IGNORE_INDEX, Metric, hookimpl

if TYPE_CHECKING:  # torch and numpy load with the first evaluation, not with the plugin
    import numpy as np
    import torch


def _top_k(outputs: torch.Tensor, labels: torch.Tensor, num_classes: int, k: int) -> torch.Tensor:
    from robustprune.plugin.scores import top_k_statistics

    return top_k_statistics(outputs, labels, k)


def _fraction(totals: np.ndarray, count: int) -> np.ndarray:
    from robustprune.plugin.scores import fraction

    return fraction(totals, count)


def _confusion(outputs: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    from robustprune.plugin.scores import confusion_statistics

    return confusion_statistics(outputs, labels, num_classes, IGNORE_INDEX)


def _mean_iou(totals: np.ndarray, count: int) -> np.ndarray:
    from robustprune.plugin.scores import mean_iou

    return mean_iou(totals, count)


@hookimpl
def robustprune_register_metrics(register):
    register(Metric("top1", "acc", functools.partial(_top_k, k=1), _fraction,
                    description="top-1 accuracy: the share of images whose highest logit is the label"))
    register(Metric("top5", "top-5 acc", functools.partial(_top_k, k=5), _fraction,
                    description="top-5 accuracy: the share of images whose label is among the five highest logits"))
    register(Metric("miou", "mIoU", _confusion, _mean_iou, tasks=("segmentation",),
                    description=f"mean intersection over union of the classes present; pixels labelled "
                                f"{IGNORE_INDEX} are ignored"))
