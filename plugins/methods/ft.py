"""FT: filter thresholding. Remove the output filters with the smallest l1 norm, the same fraction in every layer.

Two allocations (docs/methods.md compares them on resnet20):

* ``ft`` (the paper's, torchprune's): every layer keeps its own filters with
  the largest l1 norm, the same kept fraction per layer; a channel leaves
  when every layer writing it dropped it (after a residual addition it stays
  while any block writes it), and then the layers reading it lose their
  matching input columns (:mod:`robustprune.plugin.layerwise`).
* ``ft_grouped``: whole channels everywhere: each channel group (a residual
  stage's stream is one) keeps the same fraction of its channels, scored by
  the l1 norm summed over all its producers (:mod:`robustprune.plugin.allocation`).
  Removed channels go from every layer, so the network compacts further.

The last layer's outputs are never pruned. The kept fraction is found by
bisection and single layers (or groups) are then nudged by one channel so
that the ratio is hit within the host's tolerance.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from robustprune import PruneContext, PruneMethod, hookimpl
from robustprune.plugin.allocation import allocate_uniform
from robustprune.plugin.layerwise import allocate_per_layer, members
from robustprune.plugin.masks import Masks, as_numpy, prunable_weights, weight_name

ALLOCATIONS = ("layer", "group")


class FilterThresholding(PruneMethod):
    structured = True

    def __init__(self, *, allocation: str = "layer"):
        if allocation not in ALLOCATIONS:
            raise ValueError(f"allocation must be one of {ALLOCATIONS}, got {allocation!r}")
        self.allocation = allocation
        self.name = "ft" if allocation == "layer" else "ft_grouped"
        self.description = (
            "filter thresholding: remove the filters with the smallest l1 norm, the same fraction per layer, "
            + ("each layer its own filters (the paper's allocation; structured)" if allocation == "layer"
               else "whole channels removed from every layer (grouped allocation; structured)"))

    def params(self) -> dict[str, Any]:
        return {"allocation": self.allocation}

    def prune(self, network: nn.Module, ratio: float, context: PruneContext) -> Masks:
        groups = context.channel_groups
        if self.allocation == "group":
            # The current weights are already zero where earlier cascade steps removed
            # filters; allocate_uniform also removes those channels first explicitly.
            scores = [group.filter_l1(network) for group in groups]
            return allocate_uniform(network, groups, scores, ratio, previous_masks=context.masks)
        weights = prunable_weights(network)
        layer_scores = []
        for member in members(network, groups, "rows"):
            channels = groups[member.group].channels
            rows = weights[weight_name(member.module)].detach()[member.offset : member.offset + channels]
            layer_scores.append(torch.from_numpy(np.abs(as_numpy(rows.float())).reshape(len(rows), -1)
                                                 .sum(axis=1, dtype=np.float64)))
        return allocate_per_layer(network, groups, "rows", layer_scores, ratio, previous_masks=context.masks)


@hookimpl
def robustprune_register_methods(register):
    register(FilterThresholding(allocation="layer"))
    register(FilterThresholding(allocation="group"))
