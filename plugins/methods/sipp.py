"""SiPP: sensitivity-informed provable pruning (Baykal et al.), deterministic variant. Unstructured, data-informed.

Each weight is scored by its largest share of its neuron's pre-activation
over a batch of training inputs (the mean over conv patches, positive and
negative parts separately; see :mod:`robustprune.sensitivity`), and one global
top-k over all layers keeps the most sensitive weights. The batch size follows
the paper's bound ``ceil(C log(8 eta eta* / delta))`` with a cap; ``delta``,
``C`` and the cap are the method's parameters and enter the store key.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from robustprune import PruneContext, PruneMethod, hookimpl
from robustprune.pruning import Masks, global_top_masks
from robustprune.sensitivity import sample_size, weight_sensitivities


class SiPP(PruneMethod):
    name = "sipp"
    structured = False
    data_informed = True
    description = "SiPP: data-informed weight sensitivities, one global top-k (unstructured)"

    def __init__(self, delta: float = 1e-16, c_constant: float = 3.0, max_data: int = 256):
        if not 0 < delta < 1:
            raise ValueError(f"delta is a failure probability in (0, 1), got {delta}")
        self.delta = delta
        self.c_constant = c_constant
        self.data_batch_size = max_data  # the cap; the host asks data_size() for the actual size

    def params(self) -> dict[str, Any]:
        return {"delta": self.delta, "c_constant": self.c_constant, "max_data": self.data_batch_size}

    def data_size(self, network: nn.Module, example_input: torch.Tensor) -> int:
        return sample_size(network, example_input, self.delta, self.c_constant, cap=self.data_batch_size)

    def sensitivities(self, network: nn.Module, data: torch.Tensor) -> dict[str, torch.Tensor]:
        """The score of every prunable weight (higher = more worth keeping)."""
        return weight_sensitivities(network, data, patch_reduction="mean")

    def prune(self, network: nn.Module, ratio: float, context: PruneContext) -> Masks:
        return global_top_masks(self.sensitivities(network, context.data), ratio, previous=context.masks)


@hookimpl
def robustprune_register_methods(register):
    register(SiPP())
