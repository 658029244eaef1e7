"""Channel allocation: per-channel scores become masks that remove whole channels and hit a ratio exactly.

A structured method scores the channels of every group
(:func:`robustprune.plugin.channels.channel_groups`); these functions decide
how many channels each group keeps so that the prunable weights (the
dependent input columns of the next layers included) lose the requested
fraction within :data:`~robustprune.plugin.masks.RATIO_TOLERANCE`:

:func:`allocate_uniform` turns per-channel scores into masks that remove the
same fraction of channels in every group and hit a requested prune ratio; the
first-party structured methods (``ft``, ``random_structured``) are thin
wrappers around it, and third-party structured methods can be too.
:func:`allocate_counts` does the same for per-group budgets that follow from
one global knob (``pfp``: one error bound), root-finding the knob.

Both count kept weights exactly with :class:`_Accounting` (prefix sums over
each layer's previous mask), so they can try hundreds of thousands of
allocations to hit the ratio.
"""

from __future__ import annotations

import itertools
import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from .channels import ChannelGroup, channel_masks
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

__all__ = ["allocate_counts", "allocate_uniform", "check_reachable", "previous_arrays",
           "previous_if_reached", "uniform_steps"]

class _Accounting:
    """Exact count of the kept prunable weights for any number of kept channels per group.

    Within a group, channels go in a fixed order (lowest score first), so a
    group's state is one integer: how many channels it keeps. A weight
    ``W[o, i, ...]`` survives if its producer channel ``o`` is kept, the
    channel ``i`` it reads is kept and the previous masks keep it. With ``K``
    the previous mask summed over the kernel (and over the
    ``features_per_channel`` columns of one channel), and rows and columns
    sorted best channel first, a layer keeping its best ``a`` output and ``b``
    input channels keeps the 2-d prefix sum ``K[:a, :b]``. Tabulating those
    sums once turns every evaluation into a few integer look-ups: exact
    (overlaps of removed rows and columns included) and cheap enough to try
    hundreds of thousands of allocations.
    """

    def __init__(
        self,
        network: nn.Module,
        groups: Sequence[ChannelGroup],
        scores: Sequence[ArrayLike],
        previous: Mapping[str, ArrayLike],
    ):
        self.best_first: list[np.ndarray] = []  # per group: channels, the most worth keeping first
        self.low: list[int] = []  # fewest kept channels allowed (never empty a group)
        self.high: list[int] = []  # most kept channels allowed (removed channels stay removed)
        for group, given in zip(groups, scores):
            score = as_numpy(given.double() if isinstance(given, torch.Tensor) else given).astype(np.float64).ravel()
            if score.size != group.channels:
                raise ValueError(
                    f"scores for the group of {group.name} have {score.size} entries, "
                    f"but the group has {group.channels} channels"
                )
            if np.isnan(score).any():
                raise PruneError(f"channel scores for the group of {group.name} contain NaN")
            dead = as_numpy(group.removed_channels(previous))
            score = np.where(dead, -np.inf, score)
            # stable sort: equal scores are removed in channel order, so results are deterministic
            self.best_first.append(np.argsort(score, kind="stable")[::-1].copy())
            self.low.append(1)
            self.high.append(max(1, group.channels - int(dead.sum())))

        weights = prunable_weights(network)
        self.total = sum(w.numel() for w in weights.values())
        rows_of: dict[str, list[tuple[int, int]]] = defaultdict(list)  # weight -> (group, first row)
        columns_of: dict[str, list[tuple[int, int]]] = defaultdict(list)  # weight -> (group, first input channel)
        features: dict[str, int] = {}  # weight -> input columns per channel
        for g, group in enumerate(groups):
            for producer, offset in group.producer_rows():
                rows_of[weight_name(producer)].append((g, offset))
            for consumer in group.consumers:
                columns_of[weight_name(consumer.module)].append((g, consumer.offset))
                features[weight_name(consumer.module)] = consumer.features_per_channel
        self.constant = 0  # kept weights of the layers no group touches
        self.tables: list[np.ndarray] = []  # per block of a layer: kept weights by (producer count, consumer count)
        self.ends: list[tuple[int, int]] = []  # per block: (producer group, consumer group), -1 for none
        for name in weights:
            prev = as_numpy(previous[name]).astype(bool, copy=False)
            if name not in rows_of and name not in columns_of:
                self.constant += int(prev.sum())
                continue
            # K[o, i]: kept weights between output channel o and input channel i
            in_channels = prev.shape[1] // features.get(name, 1)
            k = prev.reshape(prev.shape[0], in_channels, -1).sum(axis=2, dtype=np.int64)
            # a layer's rows (and columns) split into blocks: one per group reaching it, the rest in one each
            for p, rows in _blocks_of(rows_of[name], prev.shape[0], groups):
                for c, columns in _blocks_of(columns_of[name], in_channels, groups):
                    block = k[rows, columns]
                    if p >= 0:  # row a: the best a output channels kept
                        block = np.vstack([np.zeros((1, block.shape[1]), np.int64),
                                           block[self.best_first[p]].cumsum(axis=0)])
                    else:  # one row: every output channel kept
                        block = block.sum(axis=0, keepdims=True)
                    if c >= 0:
                        block = np.hstack([np.zeros((block.shape[0], 1), np.int64),
                                           block[:, self.best_first[c]].cumsum(axis=1)])
                    else:
                        block = block.sum(axis=1, keepdims=True)
                    self.tables.append(block)
                    self.ends.append((p, c))

    def kept(self, counts: np.ndarray) -> np.ndarray:
        """Kept weights for each row of ``counts`` (shape (M, groups)), an int array of length M."""
        counts = np.atleast_2d(counts)
        zero = np.zeros(len(counts), dtype=np.int64)
        total = np.full(len(counts), self.constant, dtype=np.int64)
        for table, (p, c) in zip(self.tables, self.ends):
            total += table[counts[:, p] if p >= 0 else zero, counts[:, c] if c >= 0 else zero]
        return total

    def ratio(self, counts: Sequence[int] | np.ndarray) -> float:
        return 1.0 - int(self.kept(np.asarray(counts))[0]) / self.total

    def keep_vector(self, g: int, count: int) -> np.ndarray:
        keep = np.zeros(len(self.best_first[g]), dtype=bool)
        keep[self.best_first[g][:count]] = True
        return keep


def _blocks_of(
    entries: Sequence[tuple[int, int]], size: int, groups: Sequence[ChannelGroup]
) -> list[tuple[int, slice]]:
    """A layer dimension of ``size`` channels as blocks: ``(group, its slice)`` per entry ``(group, offset)``
    and ``(-1, slice)`` for each stretch no group covers."""
    blocks: list[tuple[int, slice]] = []
    at = 0
    for g, offset in sorted(entries, key=lambda e: e[1]):
        if offset > at:
            blocks.append((-1, slice(at, offset)))
        blocks.append((g, slice(offset, offset + groups[g].channels)))
        at = offset + groups[g].channels
    if at < size:
        blocks.append((-1, slice(at, size)))
    return blocks


def uniform_steps(channels: Sequence[int]) -> list[int]:
    """Groups (or layers) in the order their kept count grows as the kept fraction f rises from 0 to 1.

    Group g keeps round(f * C_g) channels, i.e. its k-th channel returns at
    f = (k - 1/2) / C_g. Sorting these breakpoints turns the bisection over f
    into a bisection over a list; equal breakpoints (groups of equal width)
    are split by group order, so consecutive levels differ by one channel.
    """
    steps = sorted(((2 * k - 1) / (2 * c), g) for g, c in enumerate(channels) for k in range(1, c + 1))
    return [g for _, g in steps]


def _counts_at(level: int, steps: Sequence[int], accounting: _Accounting) -> np.ndarray:
    """Kept counts at a bisection level (-1 = keep the fewest), clamped to each group's bounds."""
    counts = np.bincount(np.asarray(steps[: level + 1], dtype=np.int64), minlength=len(accounting.low))
    return np.clip(counts, accounting.low, accounting.high)


def _moves(groups: int, size: int) -> Iterable[np.ndarray]:
    """All integer vectors with ``sum(|d|) == size``, in a fixed order, in blocks.

    A vector with ``size`` = m is m single-channel adjustments (+1 or -1) spread
    over some groups.
    """
    for support in range(1, min(size, groups) + 1):
        # magnitudes: compositions of `size` into `support` positive parts
        combos = list(itertools.combinations(range(1, size), support - 1))
        cuts = np.array(combos, dtype=np.int64).reshape(len(combos), support - 1)
        bounds = np.hstack([np.zeros((len(cuts), 1), np.int64), cuts, np.full((len(cuts), 1), size, np.int64)])
        magnitudes = np.diff(bounds, axis=1)
        signs = np.array(list(itertools.product((-1, 1), repeat=support)), dtype=np.int64)
        values = (magnitudes[:, None, :] * signs[None, :, :]).reshape(-1, support)
        for chosen in _blocks(itertools.combinations(range(groups), support), max(1, 16384 // len(values))):
            where = np.array(chosen, dtype=np.int64)  # (supports, support)
            block = np.zeros((len(where), len(values), groups), dtype=np.int64)
            rows = np.arange(len(where))[:, None, None]
            block[rows, np.arange(len(values))[None, :, None], where[:, None, :]] = values[None, :, :]
            yield block.reshape(-1, groups)


def _blocks(items: Iterable[Any], size: int) -> Iterable[list[Any]]:
    iterator = iter(items)
    while block := list(itertools.islice(iterator, size)):
        yield block


_SEARCH_BUDGET = 2_000_000
"""Most allocations tried around the uniform one before giving up (a fraction of a second)."""


def _adjust(accounting: _Accounting, base: np.ndarray, target_kept: float, tolerance: float) -> np.ndarray:
    """The allocation closest to ``base`` (fewest +-1 channel moves) whose kept count fits the tolerance.

    Tries every allocation ``sum(|counts - base|) == m`` for m = 1, 2, ...
    (vectorized); among the fitting ones at the smallest m it takes the one
    nearest the target, ties to the first in a fixed order, so the result is
    deterministic. When the budget runs out it walks greedily (the best move of
    one or two channels at a time) from the nearest allocation seen so far.
    """
    low, high = np.asarray(accounting.low), np.asarray(accounting.high)
    best, best_error = base, abs(float(accounting.kept(base)[0]) - target_kept)
    tried, size = 0, 0
    while tried < _SEARCH_BUDGET:
        size += 1
        fitting: tuple[float, np.ndarray] | None = None
        for block in _moves(len(base), size):
            counts = base + block
            counts = counts[((counts >= low) & (counts <= high)).all(axis=1)]
            tried += len(block)
            if not len(counts):
                continue
            errors = np.abs(accounting.kept(counts) - target_kept)
            i = int(np.argmin(errors))
            if errors[i] < best_error:
                best, best_error = counts[i], float(errors[i])
            if errors[i] <= tolerance and (fitting is None or errors[i] < fitting[0]):
                fitting = (float(errors[i]), counts[i])
        if fitting is not None:
            return fitting[1]
        if size > int((high - low).sum()):  # every allocation within the bounds has been tried
            return best
    # greedy walk: descend with moves of one or two channels while the error drops
    while best_error > tolerance:
        neighbours = np.vstack([best + block for m in (1, 2) for block in _moves(len(base), m)])
        neighbours = neighbours[((neighbours >= low) & (neighbours <= high)).all(axis=1)]
        if not len(neighbours):
            break
        errors = np.abs(accounting.kept(neighbours) - target_kept)
        i = int(np.argmin(errors))
        if errors[i] >= best_error:
            break
        best, best_error = neighbours[i], float(errors[i])
    return best


def allocate_uniform(
    network: nn.Module,
    groups: Sequence[ChannelGroup],
    scores: Sequence[ArrayLike],
    ratio: float,
    previous_masks: Mapping[str, torch.Tensor] | None = None,
) -> Masks:
    """Remove the lowest-scoring channels, the same fraction in every group, to hit ``ratio``.

    ``scores[i]`` scores the channels of ``groups[i]`` (higher = more worth
    keeping). The kept fraction is found by bisection; then the fewest
    single-channel moves (+-1 in individual groups) bring the achieved ratio
    of the prunable weights (dependent input channels included) within
    :data:`~robustprune.plugin.masks.RATIO_TOLERANCE` of ``ratio``. Every group
    keeps at least one channel. Channels that ``previous_masks`` already
    removed are removed first and stay removed, and the returned masks (one
    per prunable weight) are combined with ``previous_masks``.

    Raises :class:`~robustprune.plugin.masks.PruneError` when the ratio cannot be
    reached, naming the reachable ratios.
    """

    def uniform(accounting: _Accounting, ratio: float) -> np.ndarray:
        # Bisection over the uniform kept fraction; the ratio does not increase with the level.
        steps = uniform_steps([g.channels for g in groups])
        lo, hi = -1, len(steps) - 1
        if accounting.ratio(_counts_at(hi, steps, accounting)) >= ratio:
            lo = hi
        else:
            while hi - lo > 1:  # invariant: ratio(lo) >= ratio > ratio(hi)
                mid = (lo + hi) // 2
                if accounting.ratio(_counts_at(mid, steps, accounting)) >= ratio:
                    lo = mid
                else:
                    hi = mid
        return np.stack([_counts_at(lo, steps, accounting), _counts_at(hi, steps, accounting)])

    return _allocate(network, groups, scores, ratio, previous_masks, uniform)


def allocate_counts(
    network: nn.Module,
    groups: Sequence[ChannelGroup],
    scores: Sequence[ArrayLike],
    ratio: float,
    counts: Callable[[float], Sequence[float]],
    previous_masks: Mapping[str, torch.Tensor] | None = None,
    knob_range: tuple[float, float] = (1e-300, 1e150),
) -> Masks:
    """Keep the best ``counts(knob)[i]`` channels of each ``groups[i]``, with ``knob`` root-found to hit ``ratio``.

    For methods whose per-group budgets come from one global parameter (PFP:
    one error bound ``eps`` gives every layer its sample size). ``counts``
    maps a knob value in ``knob_range`` to the number of channels to keep per
    group; it must not increase as the knob grows. Counts are clamped to what
    a group can keep (at least one channel, at most the channels that earlier
    steps left). The knob is found by bisection on a log scale (both ends of
    ``knob_range`` must be > 0); then, as in :func:`allocate_uniform`, the
    fewest single-channel moves bring the ratio within
    :data:`~robustprune.plugin.masks.RATIO_TOLERANCE`. ``scores`` decide *which*
    channels of a group are kept (the highest first); everything else behaves
    like :func:`allocate_uniform`, errors included.
    """
    low, high = knob_range
    if not 0 < low < high:
        raise ValueError(f"knob_range must satisfy 0 < low < high, got {knob_range}")

    def search(accounting: _Accounting, ratio: float) -> np.ndarray:
        def at(knob: float) -> np.ndarray:
            proposed = np.asarray(counts(knob), dtype=np.float64).ravel()
            if proposed.size != len(groups):
                raise ValueError(f"counts({knob:g}) returned {proposed.size} counts for {len(groups)} groups")
            return np.clip(np.ceil(proposed - 1e-9).astype(np.int64), accounting.low, accounting.high)

        lo, hi = math.log(low), math.log(high)
        if accounting.ratio(at(low)) >= ratio:  # even the smallest knob prunes enough
            return at(low)[None]
        if accounting.ratio(at(high)) < ratio:  # even the largest knob prunes too little
            return at(high)[None]
        for _ in range(400):  # invariant: ratio(lo) < ratio <= ratio(hi)
            mid = (lo + hi) / 2
            if mid in (lo, hi):
                break
            if accounting.ratio(at(math.exp(mid))) >= ratio:
                hi = mid
            else:
                lo = mid
        return np.stack([at(math.exp(lo)), at(math.exp(hi))])

    return _allocate(network, groups, scores, ratio, previous_masks, search)


def previous_arrays(network: nn.Module, previous_masks: Mapping[str, torch.Tensor] | None) -> dict[str, np.ndarray]:
    """The previous masks of every prunable weight as bool arrays (all True without ``previous_masks``)."""
    weights = prunable_weights(network)
    if previous_masks is None:
        return {n: np.ones(tuple(w.shape), dtype=bool) for n, w in weights.items()}
    return {n: as_numpy(previous_masks[n]).astype(bool) for n in weights}


def previous_if_reached(previous: Mapping[str, np.ndarray], ratio: float) -> Masks | None:
    """The previous masks, when they already remove ``ratio`` (within tolerance): what a method with nothing
    to choose returns; else None."""
    done = 1.0 - sum(int(m.sum()) for m in previous.values()) / sum(m.size for m in previous.values())
    if done == ratio or within_tolerance(done, ratio):
        return {name: torch.from_numpy(mask) for name, mask in previous.items()}
    return None


def check_reachable(ratio: float, most: float, least: float, how: str, unit: str) -> None:
    """Raise :class:`~robustprune.plugin.masks.PruneError` unless ``ratio`` lies (within tolerance) between
    ``least`` (what the previous masks already remove) and ``most`` (one channel left in every ``unit``)."""
    if ratio > most and not within_tolerance(most, ratio):
        raise PruneError(
            f"cannot prune {ratio:.4f} of the prunable weights {how}: the largest reachable "
            f"ratio, with one channel left in every {unit}, is {most:.4f}; request at most that"
        )
    if ratio < least and not within_tolerance(least, ratio):
        raise PruneError(
            f"cannot prune only {ratio:.4f} of the prunable weights: the previous masks already remove "
            f"{least:.4f} (the smallest reachable ratio); a cascade step must not prune less than the one before"
        )


def _allocate(
    network: nn.Module,
    groups: Sequence[ChannelGroup],
    scores: Sequence[ArrayLike],
    ratio: float,
    previous_masks: Mapping[str, torch.Tensor] | None,
    propose: Callable[[_Accounting, float], np.ndarray],
) -> Masks:
    """What every allocation shares: checks, the proposal's closest candidate, +-1 adjustment, masks.

    ``propose(accounting, ratio)`` returns candidate kept counts, one row per
    candidate; the one nearest the target is refined.
    """
    if len(scores) != len(groups):
        raise ValueError(f"{len(groups)} channel groups but {len(scores)} score vectors")
    if not 0.0 <= ratio < 1.0:
        raise PruneError(f"prune ratio must be in [0, 1), got {ratio}")
    previous = previous_arrays(network, previous_masks)
    if not groups:
        reached = previous_if_reached(previous, ratio)
        if reached is not None:
            return reached
        raise PruneError(
            f"cannot prune {ratio:.4f} of {type(network).__name__} with a structured method: the network "
            "has no prunable channel groups (see robustprune.plugin.channels.explain_channels)"
        )
    accounting = _Accounting(network, groups, scores, previous)
    check_reachable(ratio, accounting.ratio(accounting.low), accounting.ratio(accounting.high),
                    "by removing channels", "group")

    target_kept = (1.0 - ratio) * accounting.total
    candidates = np.atleast_2d(propose(accounting, ratio))
    counts = candidates[int(np.argmin(np.abs(accounting.kept(candidates) - target_kept)))]
    if not within_tolerance(accounting.ratio(counts), ratio):
        # the same test as the host's (masks.validate_masks), as a bound on kept weights
        # (shrunk by a hair so that float rounding cannot make the two tests disagree)
        counts = _adjust(accounting, counts, target_kept, RATIO_TOLERANCE * ratio * accounting.total * (1 - 1e-9))

    achieved = accounting.ratio(counts)
    if not within_tolerance(achieved, ratio):
        raise PruneError(
            f"cannot bring the structured prune ratio within {RATIO_TOLERANCE:.1%} of {ratio:.4f}: whole "
            f"channels are too coarse here, and the closest allocation near the method's own removes "
            f"{achieved:.4f}; try a nearby ratio"
        )
    keep = [accounting.keep_vector(g, int(k)) for g, k in enumerate(counts)]
    masks = {name: as_numpy(mask) & previous[name] for name, mask in channel_masks(network, groups, keep).items()}
    # the accounting is exact; this guards the bookkeeping itself
    kept = sum(int(mask.sum()) for mask in masks.values())
    assert kept == accounting.kept(counts)[0], (kept, accounting.kept(counts)[0])
    return {name: torch.from_numpy(mask) for name, mask in masks.items()}
