"""Pure functions over accuracy curves: prune potential, excess error, group summaries.

Definitions follow "Lost in Pruning" (Liebenwein et al., MLSys 2021) and
DESIGN.md section 2. Nothing here imports torch; inputs are plain numbers, except
:func:`prune_potentials`, which takes numpy arrays (numpy imported on first use).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

# Accuracies are ratios of integer counts; comparing them to acc - delta in
# floating point must not flip a boundary case that is exactly equal.
_EPS = 1e-12


def prune_potential(
    ratios: Sequence[float], accuracies: Sequence[float], parent_accuracy: float, delta: float
) -> float:
    """P(delta, D): the largest ratio r with acc_r(D) >= acc_parent(D) - delta; 0 if none.

    ``accuracies[i]`` is the pruned network's accuracy at ``ratios[i]`` on the
    same distribution D as ``parent_accuracy``. A failing point inside the grid
    does not end the search: the largest qualifying ratio counts.
    """
    if len(ratios) != len(accuracies):
        raise ValueError(f"{len(ratios)} ratios but {len(accuracies)} accuracies")
    if delta < 0:
        raise ValueError(f"delta must be >= 0, got {delta}")
    threshold = parent_accuracy - delta
    qualifying = [r for r, a in zip(ratios, accuracies) if a >= threshold - _EPS]
    return max(qualifying, default=0.0)


def prune_potentials(ratios: Sequence[float], accuracies: Any, parent_accuracy: Any, delta: float) -> Any:
    """:func:`prune_potential` of many curves at once: ``accuracies`` has a row per ratio and a column per
    curve (e.g. per bootstrap resample), ``parent_accuracy`` a value per column; returns a value per column."""
    import numpy as np

    accuracies = np.asarray(accuracies, dtype=float)
    if accuracies.shape[0] != len(ratios):
        raise ValueError(f"{len(ratios)} ratios but {accuracies.shape[0]} rows of accuracies")
    if delta < 0:
        raise ValueError(f"delta must be >= 0, got {delta}")
    qualifying = accuracies >= np.asarray(parent_accuracy, dtype=float) - delta - _EPS
    grid = np.asarray(ratios, dtype=float).reshape((len(ratios),) + (1,) * (accuracies.ndim - 1))
    return np.where(qualifying, grid, 0.0).max(axis=0, initial=0.0)


def excess_error(error_shifted: float, error_nominal: float) -> float:
    """e(theta, D') = err(D') - err(D_nominal): the error a shift adds for one network."""
    return error_shifted - error_nominal


def delta_excess_error(
    pruned_error_shifted: float,
    pruned_error_nominal: float,
    parent_error_shifted: float,
    parent_error_nominal: float,
) -> float:
    """Delta e(r, D') = e(pruned_r, D') - e(parent, D'): what pruning adds to the shift's cost."""
    return excess_error(pruned_error_shifted, pruned_error_nominal) - excess_error(
        parent_error_shifted, parent_error_nominal
    )


@dataclass(frozen=True)
class GroupSummary:
    """Prune potential over a group of shifts: mean, minimum and the shift that gives the minimum."""

    mean: float
    min: float
    worst: str
    values: Mapping[str, float]


def summarize_group(values: Mapping[str, float]) -> GroupSummary:
    """Mean and min over a group's members; ``worst`` is the first member attaining the min."""
    if not values:
        raise ValueError("cannot summarize an empty shift group")
    worst = min(values, key=lambda k: (values[k], list(values).index(k)))
    # rounded: the mean of three 0.7s is 0.6999999999999998 in binary, and a gate ">= 0.7" must pass
    mean = round(math.fsum(values.values()) / len(values), 12)
    return GroupSummary(mean=mean, min=values[worst], worst=worst, values=dict(values))


def accuracy_loss(parent_accuracy: float, pruned_accuracy: float) -> float:
    """How much accuracy pruning cost on one distribution (positive = worse)."""
    return parent_accuracy - pruned_accuracy


def bisect_last_qualifying(count: int, qualifies: Callable[[int], bool]) -> int:
    """Index of the last grid point that qualifies, by bisection; -1 if none does.

    ``qualifies(i)`` is called once per probed index, in bisection order (at
    most ceil(log2(count + 1)) calls). On a monotone grid (qualifying points
    first) the answer equals a scan of the whole grid.
    """
    qualifying, failing = -1, count  # invariant: index `qualifying` passes, index `failing` fails
    while failing - qualifying > 1:
        middle = (qualifying + failing) // 2
        if qualifies(middle):
            qualifying = middle
        else:
            failing = middle
    return qualifying
