"""Bring your own pruned network: evaluate a checkpoint pruned elsewhere, with any tool, against its parent.

A suite names it next to (or instead of) prune methods::

    Suite(models=["mynet"], datasets=["mydata"], methods=[],
          parent_checkpoints={"mynet": "checkpoints/parent.pt"},
          pruned_checkpoints={"my_prune": {"model": "mynet", "path": "checkpoints/pruned.pt"}})

Each entry becomes one case (``my_prune-mynet-mydata``) with a single network:
per-shift accuracy loss, excess error and delta excess error against the
parent, and the sparsity measured from its weights (the fraction of zero
weights of its Conv2d and Linear layers, the same accounting as a method's
ratio). A single network has no curve, hence no prune potential; the report
says so.

Accepted files are those of :mod:`robustprune.checkpoints` (a state dict,
possibly wrapped or ``module.``-prefixed), plus the layout
``torch.nn.utils.prune`` leaves in a state dict (``<name>_orig`` and
``<name>_mask`` instead of ``<name>``), which is folded into plain weights.
The checkpoint must keep the parent's architecture: pruned weights are zeros,
not removed rows (a physically smaller network does not load into the model).

This module imports torch only inside functions: suites import it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from torch import nn

__all__ = ["PrunedCheckpoint", "PrunedNetwork", "as_pruned_checkpoint", "fold_torch_prune", "read_pruned"]

_SHOWN = 5  # keys named in a message


@dataclass(frozen=True)
class PrunedCheckpoint:
    """A network pruned elsewhere: its model's name, the file, and optionally the one dataset it belongs to.

    ``path`` is relative to the suite file. The parent it was pruned from must
    be the suite's ``parent_checkpoints[model]``: comparing it with a parent
    robustprune trained itself would measure nothing.
    """

    model: str
    path: str | os.PathLike[str]
    dataset: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.model, str) or not self.model:
            raise ValueError(f"PrunedCheckpoint needs the model's name, got {self.model!r}")
        object.__setattr__(self, "path", str(self.path))

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "path": str(self.path), "dataset": self.dataset}


def as_pruned_checkpoint(name: str, value: Any) -> PrunedCheckpoint:
    """A :class:`PrunedCheckpoint` from itself or a ``{"model": ..., "path": ..., "dataset": ...}`` mapping."""
    if isinstance(value, PrunedCheckpoint):
        return value
    if isinstance(value, Mapping):
        unknown = sorted(set(value) - {"model", "path", "dataset"})
        missing = [k for k in ("model", "path") if k not in value]
        if unknown or missing:
            problem = f"unknown key(s) {', '.join(unknown)}" if unknown else f"missing {', '.join(missing)}"
            raise ValueError(f"pruned_checkpoints[{name!r}]: {problem}; write "
                             "{'model': MODEL, 'path': FILE} (optionally 'dataset': DATASET)")
        return PrunedCheckpoint(**value)
    raise ValueError(f"pruned_checkpoints[{name!r}] must be a PrunedCheckpoint or a mapping with 'model' and 'path', "
                     f"got {type(value).__name__}")


@dataclass
class PrunedNetwork:
    """A pruned checkpoint read and checked: plain weights, masks of the prunable weights, measured sparsity."""

    state: dict[str, "torch.Tensor"]
    masks: dict[str, "torch.Tensor"]
    sparsity: float
    layout: str  # "state dict" or "torch.nn.utils.prune"


def fold_torch_prune(state: Mapping[str, "torch.Tensor"]) -> tuple[dict[str, "torch.Tensor"], bool]:
    """Replace each ``<name>_orig`` / ``<name>_mask`` pair (torch.nn.utils.prune) by ``<name> = orig * mask``.

    Returns the plain state and whether anything was folded. A ``_mask`` without
    its ``_orig`` (or the other way round) is left alone, so the fit check names it.
    """
    out = dict(state)
    folded = False
    for key in list(state):
        if not key.endswith("_orig"):
            continue
        base = key[: -len("_orig")]
        mask_key = base + "_mask"
        if mask_key not in state or base in state:
            continue
        orig, mask = state[key], state[mask_key]
        if tuple(orig.shape) != tuple(mask.shape):
            continue
        # masked_fill, not multiply: 0 * inf would keep a NaN in a pruned weight
        out[base] = orig.masked_fill(mask == 0, 0.0)
        del out[key], out[mask_key]
        folded = True
    return out, folded


def read_pruned(path: Path, network: "nn.Module", parent_state: Mapping[str, "torch.Tensor"],
                what: str) -> PrunedNetwork:
    """Read ``path`` as a pruned version of ``network`` (whose parent's weights are ``parent_state``).

    Raises :class:`robustprune.checkpoints.CheckpointError` saying why a file
    is refused: unreadable; not pruned from this parent (no tensor shares a
    shape with it); or not fitting the model (the first mismatching keys).
    """
    from .checkpoints import CheckpointError, fit_problems, read_checkpoint
    from .pruning import prunable_weights, ratio_of

    if not path.is_file():
        raise CheckpointError(f"{what}: {path} not found; fix the path in the suite's pruned_checkpoints "
                              "(relative paths are relative to the suite file)")
    try:
        raw = read_checkpoint(path)
    except CheckpointError as exc:
        raise CheckpointError(f"{what}: " + str(exc).replace("parent checkpoint", "pruned checkpoint")) from None
    state, folded = fold_torch_prune(raw)
    same = [k for k, v in state.items() if k in parent_state and tuple(parent_state[k].shape) == tuple(v.shape)]
    if not same:
        shown = ", ".join(f"{k} {tuple(v.shape)}" for k, v in list(state.items())[:3])
        raise CheckpointError(
            f"{what}: {path} shares no tensor of the same name and shape with the parent ({len(state)} tensors, "
            f"e.g. {shown}; the parent has {len(parent_state)}): it was not pruned from this parent. A pruned "
            "checkpoint keeps the parent's architecture, with pruned weights set to zero (or torch.nn.utils.prune's "
            "weight_orig/weight_mask pairs)"
        )
    problems = fit_problems(network, state)
    if problems:
        raise CheckpointError(
            f"{what}: {path} does not fit the model: {problems}. A pruned checkpoint must have the parent's keys "
            "and shapes (zeros where pruned, not removed channels)"
        )
    weights = prunable_weights(network)
    masks = {name: state[name] != 0 for name in weights}
    return PrunedNetwork(state=state, masks=masks, sparsity=ratio_of(masks),
                         layout="torch.nn.utils.prune" if folded else "state dict")
