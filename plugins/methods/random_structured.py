"""Random structured pruning: random channels, the same fraction in every channel group (whole channels, the
grouped allocation). The baseline for ft_grouped and pfp_grouped."""

from __future__ import annotations

import torch
from torch import nn

from robustprune import PruneContext, PruneMethod, hookimpl
from robustprune.plugin.allocation import allocate_uniform
from robustprune.plugin.masks import Masks


class RandomStructuredPruning(PruneMethod):
    name = "random_structured"
    structured = True
    description = "random structured pruning (seeded): random channels, the same fraction per layer, a baseline"

    def prune(self, network: nn.Module, ratio: float, context: PruneContext) -> Masks:
        groups = context.channel_groups
        scores = [torch.rand(group.channels, generator=context.generator, dtype=torch.float64) for group in groups]
        return allocate_uniform(network, groups, scores, ratio, previous_masks=context.masks)


@hookimpl
def robustprune_register_methods(register):
    register(RandomStructuredPruning())
