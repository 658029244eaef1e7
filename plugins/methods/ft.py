"""FT: filter thresholding. Remove the output filters with the smallest l1 norm, the same fraction in every layer.

Structured: a removed filter takes the matching input channels of the layers
that read it along (see :mod:`robustprune.plugin.channels`), and those count toward
the ratio. The last layer's outputs are never pruned. The kept fraction is
found by bisection and single groups are then nudged by one channel so that
the ratio is hit within the host's tolerance.
"""

from __future__ import annotations

from torch import nn

from robustprune import PruneContext, PruneMethod, hookimpl
from robustprune.plugin.allocation import allocate_uniform
from robustprune.plugin.masks import Masks


class FilterThresholding(PruneMethod):
    name = "ft"
    structured = True
    description = ("filter thresholding: remove the filters with the smallest l1 norm, the same fraction per layer "
                   "(structured)")

    def prune(self, network: nn.Module, ratio: float, context: PruneContext) -> Masks:
        groups = context.channel_groups
        # The current weights are already zero where earlier cascade steps removed
        # filters; allocate_uniform also removes those channels first explicitly.
        scores = [group.filter_l1(network) for group in groups]
        return allocate_uniform(network, groups, scores, ratio, previous_masks=context.masks)


@hookimpl
def robustprune_register_methods(register):
    register(FilterThresholding())
