"""Per-layer channel allocation: the paper's FT and PFP, where each layer chooses its own filters or inputs.

:mod:`robustprune.plugin.allocation` removes whole channels: every producer,
consumer and norm of a group loses the same channels. The paper's code
(torchprune) allocates per *layer* instead, and a channel leaves the network
only when nothing uses it any more:

* **rows** (FT): every layer that produces a group's channels keeps its own
  best output filters (``round(f * filters)``, the same kept fraction ``f``
  in every layer). A reader keeps its input column of a channel while some
  producer *upstream of it* still writes the channel: after an addition (a
  ResNet stage's residual stream) a channel one block dropped stays for the
  blocks after it while another block (or the stem) still writes it; a reader
  that only the dropping producers reach loses the column. A depthwise conv's
  filter follows the same rule.
* **columns** (PFP): every layer that reads a group keeps its own best input
  channels (its own budget). A producer keeps its filter of a channel while
  some reader *downstream of it* still reads the channel; otherwise the
  filter (and a depthwise conv's) goes.

What is removed is what the masks say: filters of a live channel that one
producer dropped are zero rows and count as removed weights, so parameters
and MACs are counted from what is actually removed. Such a network compacts
less than a grouped one (a live channel keeps its place in every layer):
:func:`robustprune.compute.compaction.compact` cuts only the channels nobody
reads.

A *member* is one layer's side of one group (:func:`members`); methods score
each member's channels and :func:`allocate_per_layer` finds the kept counts
that hit the ratio within :data:`~robustprune.plugin.masks.RATIO_TOLERANCE`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import nn

from .allocation import check_reachable, previous_arrays, previous_if_reached, uniform_steps
from .channels import ChannelGroup
from .masks import (
    RATIO_TOLERANCE,
    ArrayLike,
    Masks,
    PruneError,
    as_numpy,
    prunable_weights,
    weight_name,
    within_tolerance,
)

__all__ = ["Member", "Side", "allocate_per_layer", "members"]

Side = Literal["rows", "columns"]
"""What each layer chooses: its own output filters (``"rows"``, FT) or its own input channels (``"columns"``, PFP)."""


@dataclass(frozen=True)
class Member:
    """One layer's side of one channel group: the ``group``-th group's channels as rows or input columns of
    ``module``, starting at ``offset`` (``features_per_channel`` columns per channel)."""

    group: int
    module: str
    offset: int = 0
    features_per_channel: int = 1


def members(network: nn.Module, groups: Sequence[ChannelGroup], side: Side) -> list[Member]:
    """The layers that choose channels per group, in group order: for ``"rows"`` each group's producers that make
    channels (depthwise convs only follow), for ``"columns"`` each group's consumers."""
    modules = dict(network.named_modules())
    out: list[Member] = []
    for g, group in enumerate(groups):
        if side == "rows":
            out += [Member(g, p, o) for p, o in group.producer_rows() if not _depthwise(modules[p])]
        elif side == "columns":
            out += [Member(g, c.module, c.offset, c.features_per_channel) for c in group.consumers]
        else:
            raise ValueError(f"side must be 'rows' or 'columns', got {side!r}")
    return out


def _depthwise(module: nn.Module) -> bool:
    return isinstance(module, nn.Conv2d) and module.groups > 1


class _Layout:
    """Masks and exact kept-weight counts for per-member kept counts.

    Each member's channels go in a fixed order (lowest score first, channels
    that earlier steps removed before all others); a state is one kept count
    per member. A layer's kept weights are ``rows @ K @ columns`` with ``K``
    its previous mask summed per (output channel, input channel), its rows
    and columns kept where its groups' channels are alive and (for a member)
    where it keeps them. Only the layers a changed member's group reaches are
    recounted, so trying thousands of single-channel moves stays cheap.
    """

    def __init__(self, network: nn.Module, groups: Sequence[ChannelGroup], side: Side, chosen: Sequence[Member],
                 scores: Sequence[ArrayLike], previous: Mapping[str, np.ndarray]):
        self.groups, self.side, self.members = groups, side, list(chosen)
        weights = prunable_weights(network)
        self.total = sum(w.numel() for w in weights.values())
        self.previous = previous
        self.order: list[np.ndarray] = []  # per member: channels, the most worth keeping first
        self.low: list[int] = []
        self.high: list[int] = []
        dead = [as_numpy(g.removed_channels(previous)) for g in groups]
        for member, given in zip(self.members, scores):
            channels = groups[member.group].channels
            score = as_numpy(given.double() if isinstance(given, torch.Tensor) else given).astype(np.float64).ravel()
            if score.size != channels:
                raise ValueError(f"scores for {member.module} in the group of {groups[member.group].name} have "
                                 f"{score.size} entries, but the group has {channels} channels")
            if np.isnan(score).any():
                raise PruneError(f"channel scores for {member.module} contain NaN")
            gone = dead[member.group] | ~self._used(member)
            score = np.where(gone, -np.inf, score)
            self.order.append(np.argsort(score, kind="stable")[::-1].copy())
            self.low.append(1)
            self.high.append(max(1, channels - int(gone.sum())))
        member_of = {(member.group, member.module, member.offset): m for m, member in enumerate(self.members)}
        self.features = {weight_name(c.module): c.features_per_channel for g in groups for c in g.consumers}
        # per layer: its blocks of rows and of input channels, (offset, channels, sources): a block keeps the
        # channels that some source member keeps (all of them without sources)
        self.rows_of: dict[str, list[tuple[int, int, list[int]]]] = {}
        self.columns_of: dict[str, list[tuple[int, int, list[int]]]] = {}
        for g, group in enumerate(groups):
            channels = group.channels
            for j, (producer, offset) in enumerate(group.producer_rows()):
                if side == "rows":  # its own filters; a depthwise conv keeps what reaches it
                    own = member_of.get((g, producer, offset))
                    sources = [own] if own is not None else [
                        member_of[(g, group.producers[i], group.producer_rows()[i][1])]
                        for i in group.producers_reaching(producer)
                        if (g, group.producers[i], group.producer_rows()[i][1]) in member_of]
                else:  # what any layer it reaches still reads
                    sources = [member_of[(g, c.module, c.offset)] for c in group.consumers
                               if j in group.producers_reaching(c.module)]
                self.rows_of.setdefault(weight_name(producer), []).append((offset, channels, sources))
            for consumer in group.consumers:
                if side == "columns":  # its own inputs
                    sources = [member_of[(g, consumer.module, consumer.offset)]]
                else:  # what any producer reaching it still writes
                    sources = [member_of[(g, group.producers[i], group.producer_rows()[i][1])]
                               for i in group.producers_reaching(consumer.module)
                               if (g, group.producers[i], group.producer_rows()[i][1]) in member_of]
                self.columns_of.setdefault(weight_name(consumer.module), []).append(
                    (consumer.offset, channels, sources))
        self.kernels: dict[str, np.ndarray] = {}
        self.constant = 0  # kept weights of the layers no group reaches
        for name in weights:
            prev = previous[name]
            if name not in self.rows_of and name not in self.columns_of:
                self.constant += int(prev.sum())
                continue
            in_channels = prev.shape[1] // self.features.get(name, 1)
            self.kernels[name] = prev.reshape(prev.shape[0], in_channels, -1).sum(axis=2, dtype=np.int64)
        # the layers whose blocks follow a member: what a change in that member recounts
        self.layers_of_member: list[set[str]] = [set() for _ in self.members]
        for name, blocks in [*self.rows_of.items(), *self.columns_of.items()]:
            for _, _, sources in blocks:
                for m in sources:
                    self.layers_of_member[m].add(name)
        self._keep_cache: dict[tuple[int, int], np.ndarray] = {}

    def _used(self, member: Member) -> np.ndarray:
        """The member's channels that the previous masks leave some weight in (rows: a row, columns: a column)."""
        mask = self.previous[weight_name(member.module)]
        channels = self.groups[member.group].channels
        if self.side == "rows":
            return np.asarray(mask[member.offset : member.offset + channels].reshape(channels, -1).any(axis=1))
        per_channel = mask.reshape(mask.shape[0], -1, member.features_per_channel * math.prod(mask.shape[2:]))
        return np.asarray(per_channel[:, member.offset : member.offset + channels].any(axis=(0, 2)))

    def keep(self, m: int, count: int) -> np.ndarray:
        """Member ``m``'s kept channels when it keeps ``count``."""
        key = (m, int(count))
        if key not in self._keep_cache:
            keep = np.zeros(len(self.order[m]), dtype=bool)
            keep[self.order[m][: int(count)]] = True
            self._keep_cache[key] = keep
        return self._keep_cache[key]

    def _vector(self, size: int, blocks: Sequence[tuple[int, int, list[int]]], counts: np.ndarray) -> np.ndarray:
        vector = np.ones(size, dtype=bool)
        for offset, channels, sources in blocks:
            if sources:
                live = self.keep(sources[0], counts[sources[0]])
                for m in sources[1:]:
                    live = live | self.keep(m, counts[m])
                vector[offset : offset + channels] &= live
        return vector

    def layer_vectors(self, name: str, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """A layer's kept rows and kept input channels."""
        k = self.kernels[name]
        return (self._vector(k.shape[0], self.rows_of.get(name, ()), counts),
                self._vector(k.shape[1], self.columns_of.get(name, ()), counts))

    def layer_kept(self, name: str, counts: np.ndarray) -> int:
        rows, columns = self.layer_vectors(name, counts)
        return int(rows.astype(np.int64) @ self.kernels[name] @ columns.astype(np.int64))

    def per_layer(self, counts: np.ndarray) -> dict[str, int]:
        return {name: self.layer_kept(name, counts) for name in self.kernels}

    def kept_weights(self, counts: np.ndarray) -> int:
        return self.constant + sum(self.per_layer(counts).values())

    def ratio(self, counts: np.ndarray) -> float:
        return 1.0 - self.kept_weights(counts) / self.total

    def masks(self, counts: np.ndarray) -> Masks:
        out = {}
        for name, prev in self.previous.items():
            if name not in self.kernels:
                out[name] = torch.from_numpy(prev.copy())
                continue
            rows, columns = self.layer_vectors(name, counts)
            fpc = self.features.get(name, 1)
            mask = prev & rows.reshape(-1, *[1] * (prev.ndim - 1))
            out[name] = torch.from_numpy(mask & np.repeat(columns, fpc).reshape(1, -1, *[1] * (prev.ndim - 2)))
        return out


def allocate_per_layer(
    network: nn.Module,
    groups: Sequence[ChannelGroup],
    side: Side,
    scores: Sequence[ArrayLike],
    ratio: float,
    counts: Callable[[float], Sequence[float]] | None = None,
    previous_masks: Mapping[str, torch.Tensor] | None = None,
    knob_range: tuple[float, float] = (1e-300, 1e150),
) -> Masks:
    """Each layer keeps its own best channels (``side``), so that the prunable weights lose ``ratio``.

    ``scores[i]`` scores the channels of ``members(network, groups, side)[i]``
    (higher = more worth keeping). Without ``counts`` every member keeps the
    same fraction of its channels (rounded, at least one), the fraction found
    by bisection (FT); with ``counts`` (a function of one knob, not increasing
    in it, one count per member) the knob is root-found on a log scale in
    ``knob_range`` (PFP: the error bound). Then single-channel moves in single
    members bring the ratio within
    :data:`~robustprune.plugin.masks.RATIO_TOLERANCE`. Channels and entries
    that ``previous_masks`` removed stay removed. Raises
    :class:`~robustprune.plugin.masks.PruneError` when the ratio cannot be met.
    """
    chosen = members(network, groups, side)
    if len(scores) != len(chosen):
        raise ValueError(f"{len(chosen)} layers choose {side} but {len(scores)} score vectors were given")
    if not 0.0 <= ratio < 1.0:
        raise PruneError(f"prune ratio must be in [0, 1), got {ratio}")
    previous = previous_arrays(network, previous_masks)
    if not chosen:
        reached = previous_if_reached(previous, ratio)  # nothing to choose, and nothing more asked for
        if reached is not None:
            return reached
        raise PruneError(f"cannot prune {ratio:.4f} of {type(network).__name__} with a structured method: the "
                         "network has no prunable channel groups (see robustprune.plugin.channels.explain_channels)")
    layout = _Layout(network, groups, side, chosen, scores, previous)
    check_reachable(ratio, layout.ratio(np.asarray(layout.low)), layout.ratio(np.asarray(layout.high)),
                    "layer by layer", "layer")
    if counts is None:
        candidates = _uniform(layout, ratio)
    else:
        candidates = _knob(layout, ratio, counts, knob_range)
    target = (1.0 - ratio) * layout.total
    best = min(candidates, key=lambda c: abs(layout.kept_weights(c) - target))
    best = _refine(layout, best, target, RATIO_TOLERANCE * ratio * layout.total * (1 - 1e-9))
    achieved = layout.ratio(best)
    if not within_tolerance(achieved, ratio):
        raise PruneError(f"cannot bring the structured prune ratio within {RATIO_TOLERANCE:.1%} of {ratio:.4f}: "
                         f"whole channels are too coarse here, and the closest allocation found removes "
                         f"{achieved:.4f}; try a nearby ratio")
    return layout.masks(best)


def _uniform(layout: _Layout, ratio: float, floor: np.ndarray | None = None) -> list[np.ndarray]:
    """The same kept fraction in every member (at least ``floor``): bisection over the fractions where some
    member's count changes."""
    sizes = [len(order) for order in layout.order]
    steps = uniform_steps(sizes)
    low = np.asarray(layout.low) if floor is None else np.maximum(layout.low, floor)
    high = np.asarray(layout.high)

    def at(level: int) -> np.ndarray:
        counts = np.bincount(np.asarray(steps[: level + 1], dtype=np.int64), minlength=len(sizes))
        return np.clip(counts, low, high)

    lo, hi = -1, len(steps) - 1
    if layout.ratio(at(hi)) >= ratio:
        return [at(hi)]
    while hi - lo > 1:  # invariant: ratio(lo) >= ratio > ratio(hi)
        mid = (lo + hi) // 2
        if layout.ratio(at(mid)) >= ratio:
            lo = mid
        else:
            hi = mid
    return [at(lo), at(hi)]


def _knob(layout: _Layout, ratio: float, counts: Callable[[float], Sequence[float]],
          knob_range: tuple[float, float]) -> list[np.ndarray]:
    low_knob, high_knob = knob_range
    if not 0 < low_knob < high_knob:
        raise ValueError(f"knob_range must satisfy 0 < low < high, got {knob_range}")

    def at(knob: float) -> np.ndarray:
        proposed = np.asarray(counts(knob), dtype=np.float64).ravel()
        if proposed.size != len(layout.members):
            raise ValueError(f"counts({knob:g}) returned {proposed.size} counts for {len(layout.members)} layers")
        return np.clip(np.ceil(proposed - 1e-9).astype(np.int64), layout.low, layout.high)

    lo, hi = math.log(low_knob), math.log(high_knob)
    if layout.ratio(at(low_knob)) >= ratio:
        # even the largest budgets prune too much (channels no data reaches have no budget at all): keep
        # the budgets and add the same fraction of every layer's other channels
        return _uniform(layout, ratio, floor=at(low_knob))
    if layout.ratio(at(high_knob)) < ratio:
        return [at(high_knob)]
    for _ in range(200):  # invariant: ratio(lo) < ratio <= ratio(hi)
        mid = (lo + hi) / 2
        if mid in (lo, hi):
            break
        if layout.ratio(at(math.exp(mid))) >= ratio:
            hi = mid
        else:
            lo = mid
    return [at(math.exp(lo)), at(math.exp(hi))]


def _refine(layout: _Layout, counts: np.ndarray, target: float, tolerance: float) -> np.ndarray:
    """Moves of one channel in one member, then in two members at once, towards the target, while the error drops.

    Each step takes the move that brings the kept weights nearest the target
    (ties to the first in a fixed order, so the result is deterministic); only
    the layers the moved members reach are recounted. Pairs are tried only
    when single moves stop helping (coarse layers, as in a plain chain where
    one filter takes the next layer's input channel along).
    """
    low, high = np.asarray(layout.low), np.asarray(layout.high)
    best = counts.copy()
    layers = layout.per_layer(best)
    kept = layout.constant + sum(layers.values())
    error = abs(kept - target)

    def moved(changes: Sequence[tuple[int, int]]) -> tuple[float, np.ndarray, dict[str, int]] | None:
        candidate = best.copy()
        for m, delta in changes:
            candidate[m] += delta
            if not low[m] <= candidate[m] <= high[m]:
                return None
        touched = set().union(*(layout.layers_of_member[m] for m, _ in changes))
        recounted = {name: layout.layer_kept(name, candidate) for name in touched}
        total = kept + sum(recounted[n] - layers[n] for n in touched)
        return abs(total - target), candidate, recounted

    size = len(best)
    for _ in range(8 * size + 32):
        if error <= tolerance:
            break
        found = None
        for pairs in (False, True):
            moves: list[list[tuple[int, int]]]
            if not pairs:
                moves = [[(m, d)] for m in range(size) for d in (-1, 1)]
            elif size <= 64:  # 4 * 64 * 63 / 2 moves at most
                moves = [[(a, da), (b, db)] for a in range(size) for b in range(a + 1, size)
                         for da in (-1, 1) for db in (-1, 1)]
            else:
                break
            for changes in moves:
                result = moved(changes)
                if result is not None and result[0] < error and (found is None or result[0] < found[0]):
                    found = result
            if found is not None:
                break
        if found is None:
            break
        error, best, recounted = found
        layers.update(recounted)
        kept = layout.constant + sum(layers.values())
    return best
