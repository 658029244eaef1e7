"""The deploy gate: may this pruned network ship at this ratio?

A suite declares the gate as data, ``Suite(gate=DeployGate(...))``, so that

- the pytest plugin generates one check per case, ``deploy_gate[<case id>]``,
  whose failure message names the worst shift and its numbers;
- the report computes the same verdict from plain numbers (the JSON carries
  the gate's result per case, and ``robustprune report`` re-renders it);
- ``--rp-export DIR`` knows which networks passed.

The gate passes when, at the deploy ratio, the pruned network's accuracy loss
against its parent is within the limit (default: the suite's delta) on every
shift of the gated shift entries (``mode="every"``) or on each entry's mean
(``mode="mean"``), and, if the suite sets a limit, the delta excess error is
within it too. For a network pruned elsewhere (``Suite(pruned_checkpoints=...)``)
the deploy ratio is a minimum: the sparsity measured from its weights must
reach it.

Pure functions over accuracies: no torch, easy to check by hand.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from . import metrics
from .shifts import NOMINAL
from .uncertainty import PerRepeat, Resampling

__all__ = ["DeployGate", "GateCheck", "GateResult", "ShiftNumbers", "ShiftStatistics", "evaluate_gate",
           "resolve_entries", "shift_numbers"]

MODES = ("every", "mean")
_EPS = 1e-12  # accuracies are ratios of counts: an exact tie is within the limit
# robustprune.plugin.masks.RATIO_TOLERANCE, repeated so that suites (which import this module) need no torch;
# tests/test_architecture.py checks that the two agree
SPARSITY_TOLERANCE = 0.005


@dataclass(frozen=True)
class DeployGate:
    """What a network must show at its deploy ratio to ship.

    Attributes:
        ratio: the deploy ratio: a number or ``{method: ratio}``. For methods it
            becomes the suite's ``gate_ratio`` (so it must be one of the suite's
            ``ratios``); for a pruned checkpoint it is the minimum sparsity.
            ``None``: the suite's ``gate_ratio``.
        shifts: the shift entries gated, as written in ``Suite.shifts``
            (``"corruptions@3"``), plus ``"nominal"`` if wanted. ``None``: nominal
            and every entry of the suite.
        mode: ``"every"``: each member shift of each entry must be within the
            limits; ``"mean"``: each entry's mean over its members must be.
        max_accuracy_loss: parent accuracy minus pruned accuracy, per shift
            (0.005 = 0.5 points). ``None``: the suite's ``delta``.
        max_delta_excess_error: the largest tolerated delta excess error
            (what pruning adds to the error a shift causes). ``None``: not limited.
        confidence: judge the numbers' one-sided upper bounds at this level
            (Student's t over repeats and the bootstrap over test images) instead
            of their means: with ``0.95`` the gate passes only when, with 95 %
            confidence, the loss is within the limit. ``None``: the means.
    """

    ratio: float | Mapping[str, float] | None = None
    shifts: Sequence[str] | None = None
    mode: str = "every"
    max_accuracy_loss: float | None = None
    max_delta_excess_error: float | None = None
    confidence: float | None = None

    def __post_init__(self) -> None:
        if isinstance(self.shifts, str):
            object.__setattr__(self, "shifts", (self.shifts,))
        elif self.shifts is not None:
            object.__setattr__(self, "shifts", tuple(self.shifts))
            if not self.shifts:
                raise ValueError("DeployGate(shifts=[]) gates nothing: name shift entries, or leave it None for all")
        if self.mode not in MODES:
            raise ValueError(f"DeployGate mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        for name in ("max_accuracy_loss", "max_delta_excess_error"):
            value = getattr(self, name)
            if value is not None and not (0 <= float(value) < 1):
                raise ValueError(f"DeployGate {name} must be in [0, 1) (0.01 = 1 point), got {value}")
        if isinstance(self.ratio, Mapping):
            object.__setattr__(self, "ratio", {str(k): float(v) for k, v in self.ratio.items()})
            ratios = list(self.ratio.values())
        else:
            ratios = [] if self.ratio is None else [float(self.ratio)]
        bad = [r for r in ratios if not 0 < r < 1 or math.isnan(r)]
        if bad:
            raise ValueError(f"DeployGate ratio {bad[0]} is outside (0, 1): a ratio is the removed fraction of weights")
        confidence = self.confidence
        if confidence is not None and (isinstance(confidence, bool) or not isinstance(confidence, (int, float))
                                       or not 0 < confidence < 1):
            raise ValueError(f"DeployGate confidence is a level in (0, 1) (0.95 = 95 %), got {confidence!r}")

    def to_dict(self) -> dict[str, Any]:
        return {"ratio": dict(self.ratio) if isinstance(self.ratio, Mapping) else self.ratio,
                "shifts": list(self.shifts) if self.shifts is not None else None, "mode": self.mode,
                "max_accuracy_loss": self.max_accuracy_loss, "max_delta_excess_error": self.max_delta_excess_error,
                "confidence": self.confidence}


@dataclass(frozen=True)
class ShiftNumbers:
    """One shift at the deploy ratio: the parent's and the pruned network's accuracy, and what follows."""

    parent_accuracy: float
    accuracy: float
    accuracy_loss: float
    delta_excess_error: float | None  # None for nominal (0 by definition)


@dataclass(frozen=True)
class ShiftStatistics:
    """One shift at the deploy ratio on every repeat and bootstrap resample: what a gate with a confidence
    reads its bounds from."""

    accuracy_loss: PerRepeat
    delta_excess_error: PerRepeat | None  # None for nominal


def shift_numbers(accuracy: Mapping[str, Sequence[float]], index: int) -> dict[str, ShiftNumbers]:
    """Per shift label, the numbers of the network at position ``index`` of the curves (0 = the parent).

    ``accuracy`` maps shift labels to ``[parent, network 1, ...]`` as in the engine's results.
    """
    nominal = accuracy[NOMINAL]
    out = {}
    for label, values in accuracy.items():
        parent, pruned = values[0], values[index]
        dee = None if label == NOMINAL else metrics.delta_excess_error(
            1 - pruned, 1 - nominal[index], 1 - parent, 1 - nominal[0])
        out[label] = ShiftNumbers(parent, pruned, metrics.accuracy_loss(parent, pruned), dee)
    return out


@dataclass(frozen=True)
class GateCheck:
    """One limit of the gate: its worst value, where it occurs, and whether it holds."""

    what: str  # "accuracy loss" (or the score's: "mIoU loss"), "delta excess error" or "sparsity"
    value: float
    limit: float
    limit_name: str  # "delta", "limit" or "required"
    passed: bool
    shift: str | None = None  # the worst shift (mode every) or entry (mode mean)
    entry: str | None = None  # the entry the worst shift belongs to
    worst_member: str | None = None  # mode mean: the worst member of the worst entry
    worst_member_value: float | None = None
    confidence: float | None = None  # the values are upper bounds at this level, not means

    def sentence(self) -> str:
        """``accuracy loss 3.1 % under glass_blur@3 > delta 0.5 % (worst of corruptions@3)``; with a
        confidence, ``accuracy loss 3.6 % (95 % upper bound) under ...``."""
        if self.what == "sparsity":
            op = ">=" if self.passed else "<"
            return f"sparsity {self.value:.3f} measured from the weights {op} required {self.limit:g}"
        op = "<=" if self.passed else ">"
        value, limit = _pct_pair(self.value, self.limit)
        bound = f" ({self.confidence * 100:g} % upper bound)" if self.confidence is not None else ""
        if self.worst_member is not None:  # mode mean: the entry's mean, and its worst member
            member = _pct(self.worst_member_value) + (" % upper bound" if self.confidence is not None else " %")
            return (f"mean {self.what} {value} %{bound} over {self.shift} {op} {self.limit_name} {limit} % "
                    f"(worst member {self.worst_member}: {member})")
        where = f" under {self.shift}" if self.shift else ""
        of = f" (worst of {self.entry})" if self.entry and self.entry != self.shift else ""
        return f"{self.what} {value} %{bound}{where} {op} {self.limit_name} {limit} %{of}"


@dataclass(frozen=True)
class GateResult:
    """The gate's verdict for one case, with every number it was made from.

    Truthy when the gate passed; its ``repr`` is :attr:`message`, so
    ``assert case.deploy_gate()`` fails with the sentence.
    """

    name: str
    ratio: float
    achieved: float
    single_network: bool
    mode: str
    checks: tuple[GateCheck, ...]
    shifts: Mapping[str, ShiftNumbers] = field(default_factory=dict)  # the gated shifts only
    entries: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    @property
    def failed_checks(self) -> tuple[GateCheck, ...]:
        return tuple(c for c in self.checks if not c.passed)

    @property
    def worst(self) -> str | None:
        """The shift with the largest accuracy loss among the gated ones."""
        if not self.shifts:
            return None
        return max(self.shifts, key=lambda s: (self.shifts[s].accuracy_loss, -list(self.shifts).index(s)))

    @property
    def where(self) -> str:
        if self.single_network:
            return f"for {self.name} at sparsity {self.achieved:.3f} (pruned checkpoint)"
        return f"for {self.name} at ratio {self.ratio:g}"

    @property
    def message(self) -> str:
        """``deploy gate failed for wt at ratio 0.5: accuracy loss 3.1 % under glass_blur@3 > delta 0.5 % ...``."""
        shown = self.failed_checks or self.checks
        verdict = "failed" if self.failed_checks else "passed"
        return f"deploy gate {verdict} {self.where}: " + "; ".join(c.sentence() for c in shown)

    @property
    def summary(self) -> str:
        """The short form the report's verdict column shows: the first failing check, else the worst loss."""
        losses = [c for c in self.checks if c.what.endswith(" loss")]
        first = (self.failed_checks or losses or self.checks)[:1]
        return first[0].sentence() if first else "nothing gated"

    def __bool__(self) -> bool:
        return self.passed

    def __repr__(self) -> str:
        return self.message

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed, "name": self.name, "ratio": self.ratio, "achieved": self.achieved,
            "single_network": self.single_network, "mode": self.mode, "message": self.message,
            "summary": self.summary, "worst": self.worst,
            "checks": [asdict(c) for c in self.checks],
            "entries": {k: list(v) for k, v in self.entries.items()},
            "shifts": {k: asdict(v) for k, v in self.shifts.items()},
        }


def resolve_entries(gate: DeployGate, available: Mapping[str, Sequence[str]]) -> dict[str, tuple[str, ...]]:
    """The gated entries with their member shift labels. ``available``: every shift entry of the suite
    (label -> member labels). Unknown names raise ``ValueError`` naming the valid ones."""
    names = [NOMINAL, *available] if gate.shifts is None else list(gate.shifts)
    out: dict[str, tuple[str, ...]] = {}
    for name in names:
        if name == NOMINAL:
            out[NOMINAL] = (NOMINAL,)
        elif name in available:
            out[name] = tuple(available[name])
        else:
            raise ValueError(f"DeployGate shifts names {name!r}, which is not one of the suite's shift entries: "
                             f"{', '.join([NOMINAL, *available])}")
    return out


def evaluate_gate(
    gate: DeployGate,
    *,
    name: str,
    ratio: float,
    achieved: float,
    numbers: Mapping[str, ShiftNumbers],
    entries: Mapping[str, Sequence[str]],
    delta: float,
    single_network: bool = False,
    required_sparsity: float | None = None,
    statistics: Mapping[str, ShiftStatistics] | None = None,
    resampling: Resampling | None = None,
    score: str = "accuracy",
) -> GateResult:
    """Judge one network. ``numbers``: per shift label at the deploy ratio (:func:`shift_numbers`);
    ``entries``: the gated entries and their members (:func:`resolve_entries`). A gate with a
    ``confidence`` needs ``statistics`` (every gated shift on every repeat and resample) and the
    ``resampling`` that reads bounds from them. ``score`` names what the numbers are in the sentences
    (``mIoU loss 3.1 % under ...``)."""
    if gate.confidence is not None and (statistics is None or resampling is None):
        raise ValueError("a DeployGate with a confidence needs the per-repeat statistics and the resampling")
    checks: list[GateCheck] = []
    if required_sparsity is not None:
        # the tolerance methods get for hitting a ratio (0.5 % relative) applies to a checkpoint too
        enough = achieved >= required_sparsity * (1 - SPARSITY_TOLERANCE)
        checks.append(GateCheck("sparsity", achieved, required_sparsity, "required", enough))
    loss_limit, loss_name = (delta, "delta") if gate.max_accuracy_loss is None else (gate.max_accuracy_loss, "limit")
    losses = {label: numbers[label].accuracy_loss for members in entries.values() for label in members}
    loss_value = _valuer(gate, losses, {label: s.accuracy_loss for label, s in (statistics or {}).items()},
                         resampling)
    checks.append(_check(gate, f"{score} loss", loss_value, list(losses), entries, loss_limit, loss_name))
    if gate.max_delta_excess_error is not None:
        dees = {label: dee for members in entries.values() for label in members
                if (dee := numbers[label].delta_excess_error) is not None}
        shifted = {k: tuple(m for m in v if m in dees) for k, v in entries.items()}
        shifted = {k: v for k, v in shifted.items() if v}
        if dees:
            dee_stats = {label: s.delta_excess_error for label, s in (statistics or {}).items()
                         if s.delta_excess_error is not None}
            dee_value = _valuer(gate, dees, dee_stats, resampling)
            checks.append(_check(gate, "delta excess error", dee_value, list(dees), shifted,
                                 gate.max_delta_excess_error, "limit"))
    gated = {label: numbers[label] for members in entries.values() for label in members}
    return GateResult(name=name, ratio=ratio, achieved=achieved, single_network=single_network, mode=gate.mode,
                      checks=tuple(checks), shifts=gated, entries={k: tuple(v) for k, v in entries.items()})


def _valuer(gate: DeployGate, points: Mapping[str, float], statistics: Mapping[str, PerRepeat],
            resampling: Resampling | None) -> Callable[[Sequence[str]], float]:
    """What the gate compares for a set of shifts: their mean, or with a confidence the upper bound of it."""
    if gate.confidence is None:
        return lambda labels: math.fsum(points[s] for s in labels) / len(labels)
    confidence = float(gate.confidence)
    assert resampling is not None

    def bound(labels: Sequence[str]) -> float:
        statistic = PerRepeat.combine([statistics[s] for s in labels], "mean")
        return resampling.estimate(statistic).bound(confidence, "upper")

    return bound


def _check(gate: DeployGate, what: str, value: Callable[[Sequence[str]], float], gated: Sequence[str],
           entries: Mapping[str, Sequence[str]], limit: float, limit_name: str) -> GateCheck:
    """The worst value over the gated shifts (mode every) or over the entries' means (mode mean)."""
    confidence = gate.confidence
    single = {s: value((s,)) for s in gated}
    if gate.mode == "every":
        # the first entry a shift appears in names it; ties go to the earlier shift
        entry_of: dict[str, str] = {}
        for entry, members in entries.items():
            for member in members:
                entry_of.setdefault(member, entry)
        order = list(entry_of)
        worst = max(order, key=lambda s: (single[s], -order.index(s)))
        return GateCheck(what, single[worst], limit, limit_name, single[worst] <= limit + _EPS,
                         shift=worst, entry=entry_of[worst], confidence=confidence)
    means = {entry: value(tuple(members)) for entry, members in entries.items()}
    order = list(means)
    worst_entry = max(order, key=lambda e: (means[e], -order.index(e)))
    members = list(entries[worst_entry])
    worst_member = max(members, key=lambda s: (single[s], -members.index(s)))
    if len(members) == 1:  # a single shift: its mean is itself
        return GateCheck(what, means[worst_entry], limit, limit_name, means[worst_entry] <= limit + _EPS,
                         shift=worst_member, entry=worst_entry, confidence=confidence)
    return GateCheck(what, means[worst_entry], limit, limit_name, means[worst_entry] <= limit + _EPS,
                     shift=worst_entry, entry=worst_entry, worst_member=worst_member,
                     worst_member_value=single[worst_member], confidence=confidence)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f}"


def _pct_pair(value: float, limit: float) -> tuple[str, str]:
    """Both as percentages with one decimal, or two when one decimal would print them equal."""
    a, b = f"{value * 100:.1f}", f"{limit * 100:.1f}"
    if a == b and not math.isclose(value, limit, abs_tol=_EPS):
        a, b = f"{value * 100:.2f}", f"{limit * 100:.2f}"
    return a, b.rstrip("0").rstrip(".") if "." in b else b

