"""Building blocks of :class:`~robustprune.plugin.api.Metric` plugins: per-sample statistics and scores.

Statistics (torch, per batch) are what the host stores for every network and
shift; scores (numpy, vectorized over any leading dimensions) turn their sums
into a number where higher is better. The first-party ``top1``, ``top5`` and
``miou`` metrics are made of these; a third-party metric may use them too.
"""

from __future__ import annotations

import numpy as np
import torch

from .api import IGNORE_INDEX

__all__ = ["confusion_statistics", "fraction", "mean_iou", "top_k_statistics"]


def top_k_statistics(outputs: torch.Tensor, labels: torch.Tensor, k: int = 1) -> torch.Tensor:
    """``(N, 1)`` int64: 1 where the label is among the ``k`` highest logits of ``outputs`` ``(N, C)``.

    With fewer than ``k`` classes every prediction counts as right."""
    if outputs.ndim != 2:
        raise ValueError(f"top-{k} scores classification outputs (N, C); got shape {tuple(outputs.shape)} "
                         "(a segmentation dataset is scored with 'miou')")
    if k == 1:
        hit = outputs.argmax(1) == labels
    else:
        top = outputs.topk(min(k, outputs.shape[1]), dim=1).indices
        hit = (top == labels.view(-1, 1)).any(1)
    return hit.to(torch.int64).view(-1, 1)


def fraction(totals: np.ndarray, count: int) -> np.ndarray:
    """The share of samples counted: ``totals[..., 0] / count`` (the score of :func:`top_k_statistics`)."""
    if count <= 0:
        raise ValueError("cannot score an empty test set")
    return np.asarray(totals, dtype=np.float64)[..., 0] / count


def confusion_statistics(outputs: torch.Tensor, labels: torch.Tensor, num_classes: int,
                         ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """``(N, C * C)`` int64: each image's confusion matrix, row = true class, column = predicted class,
    flattened; pixels labelled ``ignore_index`` (or outside ``[0, C)``) are not counted.

    ``outputs`` are dense logits ``(N, C, H, W)``, ``labels`` masks ``(N, H, W)``."""
    if outputs.ndim != 4 or labels.ndim != 3:
        raise ValueError(f"a confusion matrix needs dense logits (N, C, H, W) and masks (N, H, W); got shapes "
                         f"{tuple(outputs.shape)} and {tuple(labels.shape)}")
    if outputs.shape[2:] != labels.shape[1:]:
        raise ValueError(f"the network's output is {tuple(outputs.shape[2:])} pixels but the masks are "
                         f"{tuple(labels.shape[1:])}: a segmentation model must return logits at the input size")
    n = len(labels)
    predicted = outputs.argmax(1).reshape(n, -1).to(torch.int64)
    truth = labels.reshape(n, -1).to(torch.int64)
    counted = (truth != ignore_index) & (truth >= 0) & (truth < num_classes)
    # one bincount over (image, true, predicted) cells for the whole batch
    cell = torch.arange(n, device=truth.device).view(n, 1) * num_classes**2 + truth * num_classes + predicted
    counts = torch.bincount(cell[counted], minlength=n * num_classes**2)
    return counts.view(n, num_classes**2)


def mean_iou(totals: np.ndarray, count: int) -> np.ndarray:
    """Mean intersection over union from summed confusion matrices ``(..., C * C)``.

    IoU of class c = TP / (TP + FP + FN). A class neither labelled nor
    predicted anywhere has no IoU and is left out of the mean (a test set
    without class c says nothing about it); a score with no class at all is 0.
    ``count`` is the number of images (unused: IoU is a ratio of pixel counts).
    """
    del count
    totals = np.asarray(totals, dtype=np.float64)
    classes = int(round(np.sqrt(totals.shape[-1])))
    if classes * classes != totals.shape[-1]:
        raise ValueError(f"confusion statistics have {totals.shape[-1]} entries, not a square number of classes")
    matrix = totals.reshape(*totals.shape[:-1], classes, classes)
    hits = np.diagonal(matrix, axis1=-2, axis2=-1)
    union = matrix.sum(-1) + matrix.sum(-2) - hits
    present = union > 0
    iou = np.divide(hits, union, out=np.zeros_like(hits), where=present)
    classes_present = present.sum(-1)
    return np.divide(iou.sum(-1), classes_present, out=np.zeros(iou.shape[:-1]), where=classes_present > 0)
