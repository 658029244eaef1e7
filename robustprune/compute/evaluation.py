"""Batched inference over (shifted) test sets."""

from __future__ import annotations

import torch
from torch import nn

EVAL_BATCH = 500


@torch.inference_mode()
def predict(network: nn.Module, inputs: torch.Tensor, device: str = "cpu",
            batch_size: int = EVAL_BATCH) -> torch.Tensor:
    """Top-1 predictions (int64, on the CPU) for normalized ``inputs``."""
    network.eval().to(device)
    outputs = [
        network(inputs[start : start + batch_size].to(device, non_blocking=True)).argmax(1)
        for start in range(0, len(inputs), batch_size)
    ]
    # one transfer at the end instead of a synchronisation per batch
    return torch.cat(outputs).cpu() if outputs else torch.empty(0, dtype=torch.long)


def accuracy(predictions: torch.Tensor, labels: torch.Tensor) -> float:
    """Fraction of predictions equal to the labels."""
    if len(labels) == 0:
        raise ValueError("cannot compute accuracy on an empty test set")
    return float((predictions == labels).sum()) / len(labels)
