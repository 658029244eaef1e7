"""Parent checkpoints: start a suite from trained weights on disk instead of training the parent.

Accepted files (read with ``torch.load(weights_only=True)``): a plain state
dict (torchvision's published ``.pth`` weights, ``torch.save(net.state_dict())``),
or a dict holding one under ``state_dict``, ``model`` or ``state`` (Lightning,
many training scripts, a robustprune store entry's value). A ``module.``
prefix from ``nn.DataParallel`` is removed.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

__all__ = ["CheckpointError", "file_digest", "fit_problems", "read_checkpoint"]

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
            f"parent checkpoint {path} is not a readable torch file ({type(exc).__name__}: {str(exc)[:200]}); "
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
