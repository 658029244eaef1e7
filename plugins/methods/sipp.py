"""SiPP: sensitivity-informed provable pruning (Baykal et al.), deterministic variant. Unstructured, data-informed.

Each weight is scored by its largest share of its neuron's pre-activation
over a batch of training inputs (the mean over conv patches, positive and
negative parts separately; see :mod:`robustprune.plugin.sensitivity`), and one global
top-k over all layers keeps the most sensitive weights. The batch size follows
the paper's bound ``ceil(C log(8 eta eta* / delta))`` with a cap; ``delta``,
``C`` and the cap are the method's parameters and enter the store key.
"""

from __future__ import annotations

import torch
from torch import nn

from robustprune import PruneContext, hookimpl
from robustprune.plugin.masks import Masks, global_top_masks
from robustprune.plugin.sensitivity import SampledSensitivityMethod, weight_sensitivities


class SiPP(SampledSensitivityMethod):
    name = "sipp"
    structured = False
    description = "SiPP: data-informed weight sensitivities, one global top-k (unstructured)"

    def sensitivities(self, network: nn.Module, data: torch.Tensor | None) -> dict[str, torch.Tensor]:
        """The score of every prunable weight (higher = more worth keeping)."""
        return weight_sensitivities(network, data, patch_reduction="mean")

    def prune(self, network: nn.Module, ratio: float, context: PruneContext) -> Masks:
        return global_top_masks(self.sensitivities(network, context.data), ratio, previous=context.masks)


@hookimpl
def robustprune_register_methods(register):
    register(SiPP())
