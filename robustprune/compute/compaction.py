"""Compaction: a structured prune result becomes a physically smaller network.

A structured method removes channels by masking: the producers' rows and the
consumers' columns of a removed channel are zero. :func:`compact` cuts them
out for real, on a copy of the network: the output filters (and biases) of
the producers, the batch-norm entries, and the matching input channels of the
consumers (a block of ``H*W`` columns of a ``Linear`` after a flatten; the
group's slice of the inputs after a concatenation), and the filters of the
depthwise convs acting on a removed channel. The channel groups come from
:func:`robustprune.plugin.channels.channel_groups`, so residual connections are
handled: a ResNet stage's stem, shortcut and every block's last conv share one
group and lose the same channels.

Why removing a channel is exact, not an approximation
-----------------------------------------------------
A removed channel need not be zero in the masked network: with zero rows its
producers output their bias, batch norm turns that into a constant
``beta - gamma * mean / sqrt(var + eps)`` and a ReLU may let it through, and
a residual addition carries it along. Folding that constant into the next
layer's bias would be wrong at image borders (zero padding reads zeros
there, not the constant), but no folding is needed: the channel analysis only
forms a group when *every* reader of the channel space is in it (channel-wise
ops, additions and gating products that stay in the space, concatenations
that carry it to a consumer at an offset, flattens, depthwise convs, which
are producers of the group too, and the consumers); anything else makes the
space non-prunable. So a removed channel's constant only reaches the group's
own layers: depthwise convs and gates that stay inside the channel, and
consumers that read it through zero columns.
:func:`compact` therefore removes a channel exactly when no consumer reads it
(all consumer columns masked out); a channel whose rows are masked but whose
columns are not (it carries a constant someone still reads) is kept. The
compacted network computes what the masked one computes, up to float
rounding; :func:`compact` checks that on the example input.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..plugin.channels import NORM_LAYERS, ChannelGroup, channel_groups
from ..plugin.masks import Masks, PruneError, apply_masks, prunable_weights, weight_name

__all__ = ["CompactionError", "Compacted", "compact", "removable_channels"]


class CompactionError(PruneError):
    """The network could not be compacted exactly (the message says why)."""


@dataclass
class Compacted:
    """A compacted network with what was kept.

    ``network`` is a new module (the input is left untouched); ``masks`` holds
    the masks of its prunable weights (weights that were masked but not part
    of a removed channel stay masked); ``kept`` maps each channel group's name
    to the indices of its kept channels.
    """

    network: nn.Module
    masks: Masks
    kept: dict[str, torch.Tensor]


def removable_channels(group: ChannelGroup, masks: Mapping[str, torch.Tensor]) -> np.ndarray:
    """Channels of ``group`` that can be cut out exactly: no consumer reads them (a bool array).

    For a group without consumers (nothing reads the space) the channels
    whose producer rows are all masked out.
    """
    return group.unread(masks) if group.consumers else group.dead_rows(masks)


def compact(
    network: nn.Module,
    masks: Mapping[str, torch.Tensor],
    example_input: torch.Tensor,
    groups: list[ChannelGroup] | None = None,
    check: bool = True,
) -> Compacted:
    """A smaller copy of ``network`` without the channels that ``masks`` remove.

    ``masks`` (one per prunable weight, True = keep) are applied to the copy
    first. Every group keeps at least one channel, so no layer is emptied.
    ``example_input`` is a batch the network accepts (for the channel analysis
    and the check); ``groups`` may pass a precomputed analysis. With ``check``
    the masked and the compacted networks run on ``example_input`` in eval
    mode and must agree (a compaction that is not exact raises
    :class:`CompactionError` instead of returning a wrong network).
    """
    weights = prunable_weights(network)
    missing = [n for n in weights if n not in masks]
    if missing:
        raise CompactionError(f"no mask for {', '.join(missing[:3])}: pass one mask per prunable weight")
    if groups is None:
        groups = channel_groups(network, example_input)
    masked = copy.deepcopy(network)
    apply_masks(masked, masks)
    small = copy.deepcopy(masked)
    modules = dict(small.named_modules())
    # per module, which rows (output channels), input columns and norm features stay
    rows: dict[str, np.ndarray] = {}
    columns: dict[str, np.ndarray] = {}
    features: dict[str, np.ndarray] = {}
    kept: dict[str, torch.Tensor] = {}
    for group in groups:
        removable = removable_channels(group, masks)
        if removable.all():
            removable[0] = False  # the floor: a layer never loses its last channel
        kept[group.name] = torch.from_numpy(np.flatnonzero(~removable))
        removed = np.flatnonzero(removable)
        if not len(removed):
            continue
        for producer, offset in group.producer_rows():
            _keep_of(rows, producer, modules[producer].weight.shape[0])[removed + offset] = False
        for norm, offset in group.norm_entries():
            _keep_of(features, norm, getattr(modules[norm], "num_features", 0))[removed + offset] = False
        for consumer in group.consumers:
            _keep_of(columns, consumer.module, modules[consumer.module].weight.shape[1])[
                consumer.columns(removed)] = False

    small_masks = {name: mask.detach().cpu().to(torch.bool).clone() for name, mask in masks.items() if name in weights}
    for name in sorted(set(rows) | set(columns)):
        module = modules[name]
        weight_key = weight_name(name)
        keep_rows = torch.from_numpy(np.flatnonzero(rows[name])) if name in rows else None
        keep_columns = torch.from_numpy(np.flatnonzero(columns[name])) if name in columns else None
        _shrink_layer(module, keep_rows, keep_columns)
        mask = small_masks[weight_key]
        if keep_rows is not None:
            mask = mask[keep_rows]
        if keep_columns is not None:
            mask = mask[:, keep_columns]
        small_masks[weight_key] = mask.contiguous()
    for name, keep in features.items():
        _shrink_norm(modules[name], torch.from_numpy(np.flatnonzero(keep)))

    if check:
        _check_equal(masked, small, example_input)
        small.train(network.training)
    return Compacted(network=small, masks=small_masks, kept=kept)


def _keep_of(table: dict[str, np.ndarray], name: str, size: int) -> np.ndarray:
    """The keep vector of ``name`` in ``table``, all True when first asked for."""
    if name not in table:
        table[name] = np.ones(size, dtype=bool)
    return table[name]


@torch.no_grad()
def _shrink_layer(module: nn.Module, rows: torch.Tensor | None, columns: torch.Tensor | None) -> None:
    if not isinstance(module, (nn.Conv2d, nn.Linear)):
        raise CompactionError(f"cannot compact a {type(module).__name__}: only Conv2d and Linear layers")
    weight = module.weight.detach()
    if rows is not None:
        weight = weight[rows.to(weight.device)]
        if module.bias is not None:
            module.bias = nn.Parameter(module.bias.detach()[rows.to(weight.device)].clone())
    if columns is not None:
        weight = weight[:, columns.to(weight.device)]
    module.weight = nn.Parameter(weight.clone().contiguous())
    if isinstance(module, nn.Conv2d) and module.groups > 1:
        # a depthwise conv (the only grouped conv the channel analysis prunes) loses rows only
        if columns is not None or module.groups != module.out_channels:
            raise CompactionError(f"cannot compact the grouped convolution {module}: only depthwise ones")
        module.out_channels = module.in_channels = module.groups = weight.shape[0]
    elif isinstance(module, nn.Conv2d):
        module.out_channels, module.in_channels = weight.shape[0], weight.shape[1]
    else:
        module.out_features, module.in_features = weight.shape[0], weight.shape[1]


@torch.no_grad()
def _shrink_norm(module: nn.Module, keep: torch.Tensor) -> None:
    if not isinstance(module, NORM_LAYERS):
        raise CompactionError(f"cannot compact a {type(module).__name__}: only batch norms")
    for attr in ("weight", "bias"):
        value = getattr(module, attr)
        if value is not None:
            setattr(module, attr, nn.Parameter(value.detach()[keep.to(value.device)].clone()))
    for attr in ("running_mean", "running_var"):
        value = getattr(module, attr)
        if value is not None:
            setattr(module, attr, value[keep.to(value.device)].clone())
    module.num_features = len(keep)


@torch.no_grad()
def _check_equal(masked: nn.Module, small: nn.Module, example_input: torch.Tensor) -> None:
    masked.eval()
    small.eval()
    parameter = next(masked.parameters(), None)
    x = example_input.to(parameter.device) if parameter is not None else example_input
    try:
        expected, got = masked(x), small(x)
    except Exception as exc:  # a forward that hard-codes channel counts (x.view(-1, 64)) breaks here
        raise CompactionError(
            f"the compacted {type(small).__name__} does not run: {type(exc).__name__}: {exc}. Its forward may "
            "hard-code a channel count; compaction needs shapes that follow the layers"
        ) from exc
    if expected.shape != got.shape or not torch.allclose(expected, got, rtol=1e-4, atol=1e-4):
        difference = (expected - got).abs().max().item() if expected.shape == got.shape else float("inf")
        raise CompactionError(
            f"the compacted {type(small).__name__} differs from the masked network by {difference:.3g} on the "
            "example input; this is a bug in the channel analysis, please report it"
        )

