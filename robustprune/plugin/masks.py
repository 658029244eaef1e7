"""Masks and ratio accounting: the part of pruning every method shares.

A *mask* is a boolean tensor (True = keep) shaped like one prunable weight; a
*mask set* maps the parameter names of every prunable weight (the weights of
``Conv2d`` and ``Linear`` layers) to their masks. The prune *ratio* of a mask
set is the fraction of prunable weights it removes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import torch
from torch import nn

__all__ = [
    "RATIO_TOLERANCE",
    "ArrayLike",
    "Masks",
    "PrunableLayer",
    "PruneError",
    "apply_masks",
    "as_numpy",
    "count_nonzero_prunable",
    "count_parameters",
    "full_masks",
    "global_top_masks",
    "prunable_weights",
    "ratio_of",
    "validate_masks",
    "weight_name",
    "within_tolerance",
]

RATIO_TOLERANCE = 0.005
"""Relative tolerance between the requested and the achieved ratio."""

Masks = dict[str, torch.Tensor]
"""A mask set: one boolean tensor (True = keep) per prunable weight, keyed by parameter name."""

ArrayLike = torch.Tensor | np.ndarray
"""A tensor or a numpy array: what mask and score helpers accept."""

PrunableLayer = nn.Conv2d | nn.Linear
"""The layers whose weights are prunable."""


class PruneError(ValueError):
    """A prune step could not produce valid masks; the message says why and what to do."""


def weight_name(module: str) -> str:
    """The parameter name of a layer's weight, the key of its mask: ``"layer1.conv1"`` -> ``"layer1.conv1.weight"``."""
    return f"{module}.weight" if module else "weight"


def prunable_weights(network: nn.Module) -> dict[str, torch.Tensor]:
    """The weights of every Conv2d and Linear layer, by parameter name, in module order."""
    return {
        weight_name(name): module.weight
        for name, module in network.named_modules()
        if isinstance(module, (nn.Conv2d, nn.Linear))
    }


def as_numpy(tensor: ArrayLike) -> np.ndarray:
    """A CPU numpy view of a tensor (no copy for CPU tensors).

    Mask bookkeeping runs on many tiny arrays; numpy does each in
    microseconds, while torch's per-op thread-pool overhead can cost
    milliseconds on a busy machine.
    """
    if isinstance(tensor, torch.Tensor):
        return tensor.detach().cpu().numpy()
    return np.asarray(tensor)


def full_masks(network: nn.Module) -> Masks:
    """Masks that keep everything."""
    return {name: torch.ones_like(w, dtype=torch.bool) for name, w in prunable_weights(network).items()}


def ratio_of(masks: Mapping[str, torch.Tensor]) -> float:
    """Fraction of masked-out entries over all masks."""
    total = sum(m.numel() for m in masks.values())
    kept = sum(int(m.sum()) for m in masks.values())
    return 1.0 - kept / total if total else 0.0


def within_tolerance(achieved: float, target: float, rel: float = RATIO_TOLERANCE) -> bool:
    """Whether ``achieved`` is within ``rel`` (relative) of ``target``: the host's test for every prune step."""
    return abs(achieved - target) <= rel * target


@torch.no_grad()
def apply_masks(network: nn.Module, masks: Mapping[str, torch.Tensor]) -> None:
    """Zero the masked-out weights in place (called after every optimizer step)."""
    params = dict(network.named_parameters())
    for name, mask in masks.items():
        # masked_fill, not multiply: 0 * inf would leave a NaN in a pruned weight
        params[name].masked_fill_(~mask.to(params[name].device, torch.bool), 0.0)


def global_top_masks(
    scores: Mapping[str, torch.Tensor], ratio: float, previous: Mapping[str, torch.Tensor] | None = None
) -> Masks:
    """Remove exactly ``round(ratio * total)`` entries with the lowest scores, over all layers at once.

    Entries already removed in ``previous`` are removed first, whatever their
    score, so a cascade never revives a weight. Ties are broken by position,
    which keeps the result deterministic. At least one entry is always kept:
    a ratio that would remove everything raises :class:`PruneError` naming the
    largest reachable ratio (a ratio below 1 within tolerance of that one
    keeps one entry instead).
    """
    names = list(scores)
    flat = torch.cat([scores[n].detach().flatten().double() for n in names])
    if previous is not None:
        dead = torch.cat([~previous[n].flatten() for n in names])
        flat = torch.where(dead, torch.full_like(flat, -math.inf), flat)
    n_remove = int(round(ratio * flat.numel()))
    if flat.numel() and n_remove >= flat.numel():
        largest = (flat.numel() - 1) / flat.numel()
        if ratio >= 1 or not within_tolerance(largest, ratio):
            raise PruneError(
                f"cannot prune {ratio:.4f} of the prunable weights: that removes all {flat.numel()} of them "
                f"and leaves a network that ignores its input; the largest reachable ratio is {largest:.6f}"
            )
        n_remove = flat.numel() - 1
    keep = torch.ones(flat.numel(), dtype=torch.bool)
    if n_remove > 0:
        # stable sort: ties keep index order, so equal scores prune deterministically
        order = torch.sort(flat, stable=True).indices
        keep[order[:n_remove]] = False
    masks: Masks = {}
    offset = 0
    for n in names:
        size = scores[n].numel()
        masks[n] = keep[offset : offset + size].view_as(scores[n])
        offset += size
    return masks


def validate_masks(
    masks: Mapping[str, torch.Tensor],
    reference: Mapping[str, torch.Tensor],
    target: float,
    method: str,
) -> tuple[Masks, float]:
    """Check a method's masks against the prunable weights and the target ratio.

    Returns the masks (combined with ``reference`` so removed weights stay
    removed) and the achieved ratio. Raises :class:`PruneError` naming the
    method and the problem.
    """
    missing = [n for n in reference if n not in masks]
    extra = [n for n in masks if n not in reference]
    if missing or extra:
        detail = []
        if missing:
            detail.append(f"missing masks for {', '.join(missing[:3])}")
        if extra:
            detail.append(f"masks for non-prunable parameters {', '.join(extra[:3])}")
        raise PruneError(f"method {method!r} returned wrong masks: {'; '.join(detail)}")
    combined: Masks = {}
    for name, ref in reference.items():
        mask = masks[name]
        if tuple(mask.shape) != tuple(ref.shape):
            raise PruneError(
                f"method {method!r} returned a mask of shape {tuple(mask.shape)} for {name}, "
                f"which has shape {tuple(ref.shape)}"
            )
        combined[name] = mask.to(torch.bool).cpu() & ref.cpu()
    achieved = ratio_of(combined)
    if not within_tolerance(achieved, target):
        raise PruneError(
            f"method {method!r} removed {achieved:.4f} of the prunable weights, but {target:.4f} was "
            f"requested (tolerance {RATIO_TOLERANCE:.1%} relative); fix the method's ratio targeting"
        )
    return combined, achieved


def count_parameters(network: nn.Module) -> int:
    """All parameters of ``network`` (pruned entries included)."""
    return sum(p.numel() for p in network.parameters())


def count_nonzero_prunable(network: nn.Module) -> int:
    """Non-zero entries of the prunable weights."""
    return sum(int((w != 0).sum()) for w in prunable_weights(network).values())
