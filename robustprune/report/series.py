"""Report series derived from a case's curves: what the figures plot, as plain data.

Pure functions over the JSON report's case entries (``ratios``, the curves of
each repeat and draw, the suite's ``delta``), so ``robustprune report
RESULTS.json`` re-renders figures without torch and without recomputing
anything. Like every number of the report, a series value is the mean over
repeats of the value on each repeat's curve (and over the draws of a noise
shift):

- prune potential against noise level, per noise family (eps 0 is nominal);
- prune potential per shift (per corruption);
- delta excess error against ratio, per shift, and the slope of the line
  through the origin fitted to all of them (the paper's Figure 5 style).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ..core import metrics
from ..core.shifts import NOMINAL, split_label


def repeat_curves(case: Mapping[str, Any]) -> list[Mapping[str, Sequence[Sequence[float]]]]:
    """Per repeat: shift label -> the curves ``[parent, step 1, ...]`` of its draws. A report written before
    repeats existed has one repeat of one draw: its ``accuracy``."""
    repeats = case.get("repeats")
    if repeats:
        return [r["accuracy"] for r in repeats]
    return [{label: [curve] for label, curve in case["accuracy"].items()}]


def _mean(values: Sequence[float]) -> float:
    return math.fsum(values) / len(values)


def _averaged(case: Mapping[str, Any], label: str, function: Callable[..., float]) -> float:
    """``function(curve, nominal curve)`` on every repeat and draw of ``label``, averaged (draws first)."""
    out = []
    for curves in repeat_curves(case):
        nominal = curves[NOMINAL][0]
        out.append(_mean([function(curve, nominal) for curve in curves[label]]))
    return _mean(out)


def prune_potentials(case: Mapping[str, Any], delta: float) -> dict[str, float]:
    """P(delta, D) for every evaluated shift label of a report case (nominal included)."""
    ratios = case["ratios"]
    return {label: _averaged(case, label, lambda c, n: metrics.prune_potential(ratios, c[1:], c[0], delta))
            for label in repeat_curves(case)[0]}


def noise_families(kinds: Mapping[str, str]) -> dict[str, list[str]]:
    """Tensor shifts (noise with a float level) grouped by name, ordered by level: ``{name: [label, ...]}``."""
    families: dict[str, list[str]] = {}
    for label, kind in kinds.items():
        if kind == "tensor":
            families.setdefault(split_label(label)[0], []).append(label)
    return {name: sorted(labels, key=lambda lab: float(split_label(lab)[1])) for name, labels in families.items()}


def noise_series(case: Mapping[str, Any], delta: float, kinds: Mapping[str, str]) -> dict[str, dict[str, list[float]]]:
    """Per noise family: ``{"eps": [0, ...], "prune_potential": [...]}``; eps 0 is the nominal test set."""
    potentials = prune_potentials(case, delta)
    out = {}
    for name, labels in noise_families(kinds).items():
        labels = [lab for lab in labels if lab in potentials]  # a level whose shift failed has no point
        if not labels:
            continue
        eps = [float(split_label(lab)[1]) for lab in labels]
        values = [potentials[lab] for lab in labels]
        if 0.0 not in eps:
            eps, values = [0.0, *eps], [potentials[NOMINAL], *values]
        out[name] = {"eps": eps, "prune_potential": values}
    return out


def per_shift_series(case: Mapping[str, Any], delta: float, kinds: Mapping[str, str]) -> dict[str, float]:
    """Prune potential per non-noise shift (each corruption at its severity), in evaluation order."""
    potentials = prune_potentials(case, delta)
    return {label: potentials[label] for label in repeat_curves(case)[0]
            if label != NOMINAL and kinds.get(label, "pixel") != "tensor"}


def delta_excess_errors(case: Mapping[str, Any]) -> dict[str, list[float]]:
    """Delta e(r, D') at every ratio, per non-nominal shift label."""

    def at(i: int) -> Callable[[Sequence[float], Sequence[float]], float]:
        return lambda c, n: metrics.delta_excess_error(1 - c[i + 1], 1 - n[i + 1], 1 - c[0], 1 - n[0])

    return {label: [_averaged(case, label, at(i)) for i in range(len(case["ratios"]))]
            for label in repeat_curves(case)[0] if label != NOMINAL}


def fit_through_origin(xs: Sequence[float], ys: Sequence[float]) -> float | None:
    """Least-squares slope b of y = b x (no intercept): sum(x y) / sum(x^2); None without data."""
    sxx = math.fsum(x * x for x in xs)
    if not xs or sxx == 0:
        return None
    return math.fsum(x * y for x, y in zip(xs, ys)) / sxx


def delta_excess_error_slope(case: Mapping[str, Any]) -> float | None:
    """The slope of delta e against ratio over every (shift, ratio) point of a case."""
    xs, ys = [], []
    for values in delta_excess_errors(case).values():
        xs += list(case["ratios"])
        ys += values
    return fit_through_origin(xs, ys)


def case_series(case: Mapping[str, Any], delta: float, kinds: Mapping[str, str]) -> dict[str, Any]:
    """Everything the figures of one case plot, for the JSON report."""
    return {
        "prune_potential": prune_potentials(case, delta),
        "noise": noise_series(case, delta, kinds),
        "per_shift": per_shift_series(case, delta, kinds),
        "delta_excess_error": delta_excess_errors(case),
        "delta_excess_error_slope": delta_excess_error_slope(case),
    }


__all__ = [
    "case_series",
    "delta_excess_error_slope",
    "delta_excess_errors",
    "fit_through_origin",
    "noise_families",
    "noise_series",
    "per_shift_series",
    "prune_potentials",
]
