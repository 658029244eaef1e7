"""Batched inference over (shifted) test sets, reduced to what a metric needs per sample."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

EVAL_BATCH = 500
EVAL_PIXELS = 2**22
"""Segmentation evaluates at most this many pixels per batch: dense logits are C times larger."""

Statistics = Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor]
"""A :attr:`robustprune.Metric.statistics`: (outputs, labels, num_classes) -> (N, K) per-sample rows."""


def eval_batch_size(labels: torch.Tensor) -> int:
    """Images per forward pass: :data:`EVAL_BATCH`, fewer for dense labels of large images."""
    if labels.ndim < 3:
        return EVAL_BATCH
    return max(1, min(EVAL_BATCH, EVAL_PIXELS // max(1, labels.shape[1] * labels.shape[2])))


@torch.inference_mode()
def evaluate(network: nn.Module, inputs: torch.Tensor, labels: torch.Tensor, statistics: Statistics,
             num_classes: int, device: str = "cpu", batch_size: int | None = None) -> torch.Tensor:
    """The metric's per-sample statistics ``(N, K)`` (int64, on the CPU) of ``network`` on normalized ``inputs``.

    Raises ``ValueError`` when the statistics do not have one row per sample."""
    network.eval().to(device)
    size = batch_size or eval_batch_size(labels)
    rows = []
    for start in range(0, len(inputs), size):
        batch_labels = labels[start : start + size].to(device, non_blocking=True)
        out = statistics(network(inputs[start : start + size].to(device, non_blocking=True)), batch_labels,
                         num_classes)
        if out.ndim != 2 or len(out) != len(batch_labels):
            raise ValueError(f"a metric's statistics must be (N, K) with a row per sample; got shape "
                             f"{tuple(out.shape)} for {len(batch_labels)} samples")
        if out.is_floating_point() or out.is_complex():
            raise ValueError(f"a metric's statistics must be integer counts (they are summed exactly and stored as "
                             f"int64), got {out.dtype}; count what the score needs, e.g. pixels right and pixels")
        rows.append(out)
    if not rows:
        raise ValueError("cannot evaluate on an empty test set")
    # one transfer at the end instead of a synchronisation per batch
    return torch.cat(rows).cpu().to(torch.int64)
