"""Checkpoints: parents trained elsewhere (``Suite.parent_checkpoints``) and networks pruned elsewhere
(``Suite.pruned_checkpoints``), read and checked against the model.

Accepted files (read with ``torch.load(weights_only=True)``): a plain state
dict (torchvision's published ``.pth`` weights, ``torch.save(net.state_dict())``),
or a dict holding one under ``state_dict``, ``model`` or ``state`` (Lightning,
many training scripts, a robustprune store entry's value). A ``module.``
prefix from ``nn.DataParallel`` is removed.

A pruned checkpoint may also hold the layout ``torch.nn.utils.prune`` leaves
in a state dict (``<name>_orig`` and ``<name>_mask`` instead of ``<name>``),
which is folded into plain weights; it must keep the parent's architecture
(pruned weights are zeros, not removed rows). Its sparsity is measured from
its weights with the same accounting as a method's ratio.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..plugin.masks import prunable_weights, ratio_of
from .torchload import load_problem

__all__ = ["CheckpointError", "PrunedNetwork", "file_digest", "fit_problems", "fold_torch_prune", "read_checkpoint",
           "read_pruned"]

_WRAPPERS = ("state_dict", "model", "state")
_SHOWN = 5  # keys named per kind of mismatch


class CheckpointError(ValueError):
    """A checkpoint file is missing, unreadable or does not fit the network."""


def file_digest(path: Path) -> str:
    """SHA-256 of the file's bytes: the parent's store key changes whenever the file does."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_checkpoint(path: Path) -> dict[str, torch.Tensor]:
    """The state dict stored in ``path``."""
    if not path.is_file():
        raise CheckpointError(f"parent checkpoint {path} not found; fix the path in the suite's "
                              "parent_checkpoints (relative paths are relative to the suite file)")
    try:
        loaded: Any = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file gets the same explanation
        raise CheckpointError(
            f"parent checkpoint {path} is not a readable torch file ({load_problem(exc)}); "
            "expected a state dict saved with torch.save(network.state_dict(), path)"
        ) from None
    for key in _WRAPPERS:
        if isinstance(loaded, Mapping) and isinstance(loaded.get(key), Mapping):
            loaded = loaded[key]
            break
    if not isinstance(loaded, Mapping) or not all(isinstance(v, torch.Tensor) for v in loaded.values()):
        raise CheckpointError(
            f"parent checkpoint {path} holds {type(loaded).__name__}, not a state dict of tensors; expected "
            f"torch.save(network.state_dict(), path) or a dict with the state dict under one of {', '.join(_WRAPPERS)}"
        )
    state = dict(loaded)
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


def fit_problems(network: nn.Module, state: Mapping[str, torch.Tensor]) -> str | None:
    """``None`` if ``state`` loads into ``network`` exactly, else which keys are missing, unexpected or mis-shaped."""
    own = network.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    misshaped = [
        f"{k} (checkpoint {tuple(state[k].shape)}, network {tuple(own[k].shape)})"
        for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)
    ]
    parts = []
    for what, keys in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", misshaped)):
        if keys:
            more = f" and {len(keys) - _SHOWN} more" if len(keys) > _SHOWN else ""
            parts.append(f"{len(keys)} {what}: {', '.join(keys[:_SHOWN])}{more}")
    return "; ".join(parts) if parts else None


# --------------------------------------------------------------------------- pruned checkpoints


@dataclass
class PrunedNetwork:
    """A pruned checkpoint read and checked: plain weights, masks of the prunable weights, measured sparsity."""

    state: dict[str, torch.Tensor]
    masks: dict[str, torch.Tensor]
    sparsity: float
    layout: str  # "state dict" or "torch.nn.utils.prune"


def fold_torch_prune(state: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], bool]:
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


def read_pruned(path: Path, network: nn.Module, parent_state: Mapping[str, torch.Tensor],
                what: str) -> PrunedNetwork:
    """Read ``path`` as a pruned version of ``network`` (whose parent's weights are ``parent_state``).

    Raises :class:`robustprune.compute.checkpoints.CheckpointError` saying why a file
    is refused: unreadable; not pruned from this parent (no tensor shares a
    shape with it); or not fitting the model (the first mismatching keys).
    """
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
