"""Uniform noise as the paper defines it: x + U[-eps, eps] on the *normalized* input, no clipping."""

from __future__ import annotations

import numpy as np
import torch

from robustprune import ShiftParam, TensorShift, hookimpl


def add_uniform_noise(batch: torch.Tensor, eps: float, seeds: np.ndarray) -> torch.Tensor:
    """Add U[-eps, eps] noise to each image, drawn from that image's own seed."""
    if eps == 0:
        return batch
    shape = tuple(batch.shape[1:])
    noise = np.stack([np.random.default_rng(int(s)).uniform(-eps, eps, size=shape) for s in seeds])
    return batch + torch.from_numpy(noise).to(batch.dtype)


@hookimpl
def robustprune_register_shifts(register):
    register(
        TensorShift(
            name="uniform_noise",
            apply=add_uniform_noise,
            param=ShiftParam("eps", float, 0.0),
            description="x + U[-eps, eps] on the normalized input, without clipping (the paper's noise)",
        )
    )
