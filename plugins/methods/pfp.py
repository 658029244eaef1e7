"""PFP: provable filter pruning (Liebenwein et al., ICLR 2020), deterministic variant. Structured, data-informed.

1. Sensitivity of every input channel of every layer: its largest share of
   any pre-activation it feeds, over a batch of training inputs, the output
   positions and the kernel (see :mod:`robustprune.plugin.sensitivity`).
2. Per-layer budgets from one global error ``eps``: a layer with
   sensitivities ``s`` (sum ``S``, probabilities ``p = s / S``) needs
   ``m(eps) = ceil(3 (6 + 2 eps) alpha S / eps^2)`` samples, with
   ``alpha = 2 C log(8 (patches + 1) kernel / delta)``, and keeps the expected
   number of distinct channels among them, ``ceil(sum_j 1 - (1 - p_j)^m)``.
3. ``eps`` is root-found so that the kept channels meet the requested ratio;
   each layer keeps its most sensitive channels (the deterministic variant).

Two allocations (docs/methods.md compares them on resnet20):

* ``pfp`` (the paper's, torchprune's): every layer keeps its own most
  sensitive input channels, as many as its own budget; a channel leaves when
  no layer reads it any more, and then its producers lose its filters
  (:mod:`robustprune.plugin.layerwise`). A residual channel stays while any
  block reads it.
* ``pfp_grouped``: whole channels everywhere: a channel group (a ResNet
  stage's residual stream feeds every block) keeps the largest budget any of
  its consumers asks for, and ranks its channels by their largest sensitivity
  over the consumers.

Every layer (or group) keeps at least one channel. A layer reading a
concatenation draws its samples over all its inputs; it keeps its budget's
share in each concatenated group.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from robustprune import PruneContext, hookimpl
from robustprune.plugin.allocation import allocate_counts
from robustprune.plugin.channels import ChannelGroup
from robustprune.plugin.layerwise import allocate_per_layer
from robustprune.plugin.masks import Masks
from robustprune.plugin.sensitivity import LayerInfo, SampledSensitivityMethod, input_channel_sensitivities, layer_info


class ProvableFilterPruning(SampledSensitivityMethod):
    structured = True

    def __init__(self, delta: float = 1e-16, c_constant: float = 3.0, max_data: int = 256, *,
                 allocation: str = "layer"):
        super().__init__(delta=delta, c_constant=c_constant, max_data=max_data)
        if allocation not in ("layer", "group"):
            raise ValueError(f"allocation must be 'layer' or 'group', got {allocation!r}")
        self.allocation = allocation
        self.name = "pfp" if allocation == "layer" else "pfp_grouped"
        self.description = (
            "PFP: data-informed channel sensitivities, per-layer budgets from one global error, "
            + ("each layer its own input channels (the paper's allocation; structured)" if allocation == "layer"
               else "whole channels removed from every layer (grouped allocation; structured)"))

    def params(self) -> dict[str, Any]:
        return {**super().params(), "allocation": self.allocation}

    def channel_sensitivities(
        self, network: nn.Module, groups: Sequence[ChannelGroup], data: torch.Tensor | None
    ) -> list[list[torch.Tensor]]:
        """Per group, per consumer (in ``group.consumers`` order): the sensitivity of each of the group's channels.

        A ``Linear`` after a flatten reads several features per channel; the
        channel's sensitivity is their max.
        """
        return _per_consumer(input_channel_sensitivities(network, data), groups)

    def prune(self, network: nn.Module, ratio: float, context: PruneContext) -> Masks:
        groups = context.channel_groups
        per_layer = input_channel_sensitivities(network, context.data)
        sensitivities = _per_consumer(per_layer, groups)
        # a layer reading a concatenation draws its samples over all its input channels, not one group's
        totals = {c.module: float(per_layer[_weight(c.module)].view(-1, c.features_per_channel).amax(dim=1).sum())
                  for g in groups for c in g.consumers}
        info = layer_info(network, context.example_input)
        budgets = Budgets(groups, sensitivities, info, self.delta, self.c_constant, layer_totals=totals)
        if self.allocation == "layer":  # each consumer keeps its own most sensitive input channels
            scores = [s for per_consumer in sensitivities for s in per_consumer]
            return allocate_per_layer(network, groups, "columns", scores, ratio, budgets.consumer_counts,
                                      previous_masks=context.masks)
        scores = [torch.stack(s).amax(dim=0) if s else torch.zeros(g.channels) for g, s in zip(groups, sensitivities)]
        return allocate_counts(network, groups, scores, ratio, budgets.counts, previous_masks=context.masks)


class Budgets:
    """PFP's kept channels per group as a function of the global error ``eps`` (non-increasing in ``eps``).

    ``sensitivities`` are per group, per consumer (as
    :meth:`ProvableFilterPruning.channel_sensitivities` returns them) and
    ``info`` the consumers' :class:`~robustprune.plugin.sensitivity.LayerInfo`.
    ``layer_totals`` maps a consumer to the sum ``S`` of the sensitivities of
    all its input channels (by default the group's channels only, which is the
    same unless the consumer reads a concatenation).
    """

    def __init__(
        self,
        groups: Sequence[ChannelGroup],
        sensitivities: Sequence[Sequence[torch.Tensor]],
        info: Mapping[str, LayerInfo],
        delta: float,
        c_constant: float,
        layer_totals: Mapping[str, float] | None = None,
    ):
        # per group, per consumer: (probabilities, alpha * S), or None for a consumer that reads nothing of it
        self.layers: list[list[tuple[np.ndarray, float] | None]] = []
        for group, per_consumer in zip(groups, sensitivities):
            layers: list[tuple[np.ndarray, float] | None] = []
            for consumer, sensitivity in zip(group.consumers, per_consumer):
                s = sensitivity.double().numpy()
                # S: the consumer's whole input (a concatenation of several groups), else this group's channels
                total = float(s.sum()) if layer_totals is None else layer_totals[consumer.module]
                if total <= 0 or not s.any():
                    layers.append(None)  # reads nothing from the group: asks for no channels
                    continue
                layer = info[_weight(consumer.module)]
                kernel = layer.kernel * consumer.features_per_channel
                alpha = 2.0 * c_constant * math.log(8.0 * (layer.patches + 1) * kernel / delta)
                layers.append((s / total, alpha * total))
            self.layers.append(layers)

    def counts(self, eps: float) -> list[float]:
        """Channels to keep per group: the most any consumer's ``ceil(sum_j 1 - (1 - p_j)^m(eps))`` asks for."""
        return [max((self._kept(layer, eps) for layer in layers), default=0.0) for layers in self.layers]

    def consumer_counts(self, eps: float) -> list[float]:
        """Channels each consumer keeps of each group (per group, per consumer, flattened): its own budget."""
        return [self._kept(layer, eps) for layers in self.layers for layer in layers]

    @staticmethod
    def _kept(layer: tuple[np.ndarray, float] | None, eps: float) -> float:
        if layer is None:
            return 0.0
        probabilities, coefficient = layer
        with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
            # log space: eps spans 1e-300..1e150, where eps**2 under- or overflows
            log_samples = math.log(3.0 * (6.0 + 2.0 * eps) * coefficient) - 2.0 * math.log(eps)
            samples = 1e300 if log_samples > 690 else max(1.0, math.ceil(math.exp(log_samples)))
            # expected number of distinct channels in `samples` draws: sum_j 1 - (1 - p_j)^m
            unique = float(np.sum(-np.expm1(samples * np.log1p(-probabilities))))
        return float(math.ceil(unique - 1e-9))


def _per_consumer(per_layer: Mapping[str, torch.Tensor], groups: Sequence[ChannelGroup]) -> list[list[torch.Tensor]]:
    """Per group, per consumer: the sensitivities of the group's channels among the consumer's inputs."""
    return [
        [per_layer[_weight(c.module)].view(-1, c.features_per_channel)[c.offset : c.offset + group.channels]
         .amax(dim=1) for c in group.consumers]
        for group in groups
    ]


def _weight(module: str) -> str:
    return f"{module}.weight" if module else "weight"


@hookimpl
def robustprune_register_methods(register):
    register(ProvableFilterPruning(allocation="layer"))
    register(ProvableFilterPruning(allocation="group"))
