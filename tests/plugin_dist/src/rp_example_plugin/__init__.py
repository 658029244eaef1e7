"""An example third-party plugin: one prune method and one shift, through the public API only."""

from __future__ import annotations

import numpy as np

from robustprune import PixelShift, PruneMethod, ShiftParam, hookimpl
from robustprune.plugin.masks import global_top_masks, prunable_weights


class LayerMagnitude(PruneMethod):
    """Magnitude pruning with the same ratio in every layer (instead of WT's one global threshold)."""

    name = "layer_magnitude"
    description = "per-layer magnitude pruning, the same fraction in every layer"

    def prune(self, network, ratio, context):
        masks = {}
        for name, weight in prunable_weights(network).items():
            masks.update(global_top_masks({name: weight.detach().abs()}, ratio, {name: context.masks[name]}))
        return masks


def invert(image: np.ndarray, strength: float, seed: int) -> np.ndarray:
    """Blend an image with its negative: 0 = unchanged, 1 = fully inverted."""
    return np.clip((1 - strength) * image + strength * (255 - image.astype(np.float64)), 0, 255).astype(np.uint8)


@hookimpl
def robustprune_register_methods(register):
    register(LayerMagnitude())


@hookimpl
def robustprune_register_shifts(register):
    register(PixelShift("invert", invert, ShiftParam("strength", float, 0.0, 1.0), "blend with the negative image"))
