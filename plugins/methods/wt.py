"""WT: weight thresholding (Renda et al. 2020), one global magnitude threshold."""

from __future__ import annotations

from torch import nn

from robustprune import PruneContext, PruneMethod, hookimpl
from robustprune.plugin.masks import Masks, global_top_masks, prunable_weights


class WeightThresholding(PruneMethod):
    name = "wt"
    description = "weight thresholding: remove the smallest |w| under one global threshold (unstructured)"

    def prune(self, network: nn.Module, ratio: float, context: PruneContext) -> Masks:
        scores = {name: weight.detach().abs() for name, weight in prunable_weights(network).items()}
        return global_top_masks(scores, ratio, previous=context.masks)


@hookimpl
def robustprune_register_methods(register):
    register(WeightThresholding())
