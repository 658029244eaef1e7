"""Random unstructured pruning: the baseline every informed method should beat."""

from __future__ import annotations

import torch
from torch import nn

from robustprune import PruneContext, PruneMethod, hookimpl
from robustprune.plugin.masks import Masks, global_top_masks, prunable_weights


class RandomPruning(PruneMethod):
    name = "random"
    description = "random unstructured pruning (seeded), a baseline"

    def prune(self, network: nn.Module, ratio: float, context: PruneContext) -> Masks:
        scores = {
            name: torch.rand(weight.shape, generator=context.generator)
            for name, weight in prunable_weights(network).items()
        }
        return global_top_masks(scores, ratio, previous=context.masks)


@hookimpl
def robustprune_register_methods(register):
    register(RandomPruning())
