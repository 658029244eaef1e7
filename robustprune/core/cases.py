"""What suite checks receive: a case's numbers as values that explain themselves when an assert fails.

``case``, ``shift_case`` and ``group_case`` fixtures hand these views to plain
test functions. Every number is a :class:`Measure`, a ``float`` that knows
what it is and how sure it is, so ``assert shift_case.prune_potential >= 0.8``
fails with ``prune potential 0.50 ±0.05 [0.40, 0.60] (3 repeats, 95 %) under
contrast@3 < required 0.80 (delta 0.5 %)``.

A number is the mean over the suite's repeats of the same statistic on each
repeat's curve (see :mod:`robustprune.core.uncertainty`); a noise shift's
numbers are means over its draws, as the paper estimates prune potential
under noise.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from typing import TYPE_CHECKING, Any

from . import metrics
from .beyond import TEST_LABEL, TRAIN_LABEL
from .gate import DeployGate, GateResult, ShiftNumbers, ShiftStatistics, evaluate_gate, resolve_entries
from .results import CaseError, CaseKey, CaseResult, FeaturesResult, SimilarityResult, score_name
from .shifts import NOMINAL, ShiftEntry
from .suite import Suite
from .uncertainty import Estimate, PerRepeat, Reducer

if TYPE_CHECKING:  # pragma: no cover
    from numpy.typing import NDArray

__all__ = ["Case", "GroupCase", "Measure", "NotApplicable", "ShiftCase"]

_ACCURACY = (0.0, 1.0)  # what an accuracy can be: its interval ends inside

# The negation of each comparison: what is true when the assert fails.
_FAILED = {">=": "<", ">": "<=", "<=": ">", "<": ">="}


class Measure(float):
    """A float with a description and its spread, used to phrase failed comparisons.

    Compared and computed with like any float (the point estimate: the mean
    over repeats); ``values``, ``std``, ``interval()``, ``lower()`` and
    ``upper()`` say how sure it is.
    """

    what: str
    context: str
    note: str
    digits: int
    estimate: Estimate | None

    def __new__(cls, value: float, what: str, context: str = "", note: str = "", digits: int = 2,
                estimate: Estimate | None = None) -> Measure:
        obj = super().__new__(cls, value)
        obj.what, obj.context, obj.note, obj.digits, obj.estimate = what, context, note, digits, estimate
        return obj

    @property
    def values(self) -> tuple[float, ...]:
        """The number on each repeat (one value without repeats)."""
        return self.estimate.values if self.estimate is not None else (float(self),)

    @property
    def repeats(self) -> int:
        return len(self.values)

    @property
    def std(self) -> float:
        """The standard deviation over repeats (0 with one repeat)."""
        return self.estimate.std if self.estimate is not None else 0.0

    def interval(self, level: float | None = None) -> tuple[float, float]:
        """The interval at ``level`` (default: the suite's ``confidence``): Student's t over repeats and the
        bootstrap over test images; the value itself with one repeat and no bootstrap."""
        if self.estimate is None:
            return float(self), float(self)
        return self.estimate.interval(level)

    def lower(self, level: float | None = None) -> float:
        return self.interval(level)[0]

    def upper(self, level: float | None = None) -> float:
        return self.interval(level)[1]

    def spread_text(self) -> str:
        """`` ±0.05 [0.35, 0.55] (3 repeats, 95 %)``: what is known of the spread, or nothing; under noise
        evaluated with several draws also how much the draws differ."""
        estimate = self.estimate
        if estimate is None or (estimate.repeats == 1 and not estimate.replicates and estimate.draws is None):
            return ""
        fmt = f".{self.digits}f"
        text = f" ±{format(estimate.std, fmt)}" if estimate.repeats > 1 else ""
        has_interval = estimate.repeats > 1 or bool(estimate.replicates)  # t over repeats, and/or the images
        if has_interval:
            low, high = estimate.interval()
            text += f" [{format(low, fmt)}, {format(high, fmt)}]"
        count = f"{estimate.repeats} repeat{'s' if estimate.repeats > 1 else ''}"
        level = f", {estimate.level * 100:g} %" if has_interval else ""
        draws = ""
        if estimate.draws is not None and estimate.draw_std is not None:
            draws = f"; {max(map(len, estimate.draws))} noise draws, ±{format(estimate.draw_std, fmt)} between them"
        return f"{text} ({count}{level}{draws})"

    def explain(self, op: str, other: object) -> str | None:
        """The sentence for a failed ``self <op> other``; None for other operators."""
        if op not in _FAILED or not isinstance(other, (int, float)):
            return None
        bound = "required" if op in (">=", ">") else "limit"
        fmt = f".{self.digits}f"
        parts = [self.what, format(float(self), fmt) + self.spread_text()]
        if self.context:
            parts.append(self.context)
        parts += [_FAILED[op], bound, format(float(other), fmt)]
        if self.note:
            parts.append(self.note)
        return " ".join(parts)


def _delta_note(delta: float) -> str:
    return f"(delta {delta * 100:g} %)"


def _ratio_index(ratios: tuple[float, ...], ratio: float) -> int:
    for i, r in enumerate(ratios):
        if abs(r - ratio) < 1e-9:
            return i
    raise ValueError(f"ratio {ratio} is not in the suite's grid {', '.join(f'{r:g}' for r in ratios)}")


class NotApplicable(LookupError):
    """A number that does not exist for this case (prune potential of a single pruned checkpoint).

    The pytest plugin turns it into a skipped check with this message.
    """


class Case:
    """One method x model x dataset: curves on nominal and every shift of the suite."""

    def __init__(self, result_fn: Callable[[], CaseResult], suite: Suite, entries: Sequence[ShiftEntry],
                 key: CaseKey):
        self._result_fn = result_fn
        self.suite = suite
        self.entries = {e.label: e for e in entries}
        self.key = key
        self.method, self.model, self.dataset = key.method, key.model, key.dataset
        self._statistics: dict[Hashable, PerRepeat] = {}
        self._estimates: dict[int, tuple[PerRepeat, Estimate]] = {}
        self._curves: dict[tuple[int, str, int], NDArray[Any]] = {}

    @property
    def id(self) -> str:
        return self.key.id

    @property
    def result(self) -> CaseResult:
        """The case's :class:`~robustprune.core.results.CaseResult` (computed on first use)."""
        return self._result_fn()

    @property
    def ratios(self) -> tuple[float, ...]:
        """The evaluated ratios: the suite's grid, or the probed subset with ``search="bisect"``."""
        return tuple(self.result.ratios)

    @property
    def achieved_ratios(self) -> tuple[float, ...]:
        return self.result.achieved

    @property
    def single_network(self) -> bool:
        """True for a pruned checkpoint (``Suite.pruned_checkpoints``): one network, no curve."""
        return self.method in self.suite.pruned_checkpoints

    @property
    def gate_ratio(self) -> float:
        """The ratio numbers are read at by default; for a pruned checkpoint, its sparsity measured from the weights."""
        if self.single_network:
            return self.result.ratios[0]
        return self.suite.gate_ratio_for(self.method)

    def deploy_gate(self, gate: DeployGate | None = None) -> GateResult:
        """The deploy gate's verdict for this case: the suite's ``Suite(gate=...)``, or ``gate``.

        Truthy when it passes; ``assert case.deploy_gate()`` fails with
        ``deploy gate failed for wt at ratio 0.5: accuracy loss 3.1 % under glass_blur@3 > delta 0.5 %
        (worst of corruptions@3)``. With a gate in the suite, robustprune also runs it as the check
        ``deploy_gate[<case id>]`` by itself. A gate with a ``confidence`` judges the upper bound of each
        number at that level instead of its mean.
        """
        gate = gate if gate is not None else self.suite.gate
        if gate is None:
            raise LookupError("no deploy gate: set Suite(gate=DeployGate(...)) or pass one: "
                              "case.deploy_gate(DeployGate(...))")
        ratio = self.gate_ratio
        index = _ratio_index(self.ratios, ratio)
        entries = resolve_entries(gate, {label: [m.label for m in e.members] for label, e in self.entries.items()})
        required = None
        if self.single_network:
            # for a network pruned elsewhere the deploy ratio is a minimum sparsity
            required = self.suite.deploy_ratio_for(self.method)
        gated = {label for members in entries.values() for label in members}
        numbers, statistics = {}, {}  # a gated shift that failed raises here (every statistic checks its shifts)
        for label in gated:
            loss = self._loss(label, index)
            dee = None if label == NOMINAL else self._delta_excess_statistic(label, index)
            statistics[label] = ShiftStatistics(loss, dee)
            numbers[label] = ShiftNumbers(float(self.parent_accuracy(label)), float(self.accuracy(label, ratio)),
                                          self._point(loss), None if dee is None else self._point(dee))
        return evaluate_gate(
            gate, name=self.method, ratio=ratio, achieved=self.result.achieved[index], numbers=numbers,
            entries=entries, delta=self.delta, single_network=self.single_network, required_sparsity=required,
            statistics=statistics, resampling=self.result.resampling, score=score_name(self.result.metric),
        )

    @property
    def delta(self) -> float:
        return self.suite.delta

    @property
    def repeats(self) -> int:
        """How many independently trained parents and cascades the numbers are means over."""
        return len(self.result.repeats)

    def _check_shift(self, shift: str) -> None:
        failed = self.result.shift_errors.get(shift)
        if failed is not None:  # its plugin failed (or its name clashes): what needs it fails, saying why
            raise CaseError(failed)
        if shift not in self.result.repeats[0].accuracy:
            raise KeyError(f"shift {shift!r} is not evaluated by this suite; evaluated: "
                           f"{', '.join(self.result.repeats[0].accuracy)}")

    # ------------------------------------------------------------ statistics over repeats and resamples

    def _statistic(self, key: Hashable, shifts: Sequence[str], function: Callable[..., Any],
                   limits: tuple[float, float] | None = None) -> PerRepeat:
        """What :meth:`statistic` computes, cached under ``key`` as given (robustprune's own keys)."""
        cached = self._statistics.get(key)
        if cached is not None:
            return cached
        for shift in shifts:  # every statistic passes here: a failed or unknown shift is named, never a KeyError
            self._check_shift(shift)
        import numpy as np

        values: list[float] = []
        draw_values: list[tuple[float, ...]] = []
        rows: list[NDArray[Any]] = []
        for r, repeat in enumerate(self.result.repeats):
            draws = max(repeat.draws(s) for s in shifts)
            per_draw = []
            for d in range(draws):
                curves = [self._curve_matrix(r, s, min(d, repeat.draws(s) - 1)) for s in shifts]
                per_draw.append(np.broadcast_to(np.asarray(function(*curves), dtype=float), curves[0].shape[1:]))
            combined = per_draw[0] if draws == 1 else sum(per_draw[1:], per_draw[0]) / draws
            values.append(float(combined[0]))
            draw_values.append(tuple(float(v[0]) for v in per_draw))
            rows.append(combined[1:])
        replicates = tuple(rows) if all(len(row) for row in rows) else None
        return self._remember(key, PerRepeat(tuple(values), replicates, _drawn(draw_values), limits))

    def _column_statistic(self, key: Hashable, columns: Sequence[tuple[str, int]],
                          function: Callable[..., Any], limits: tuple[float, float] | None = None) -> PerRepeat:
        """What :meth:`column_statistic` computes, cached under ``key`` as given."""
        shifts = list(dict.fromkeys(s for s, _ in columns))
        positions = [(shifts.index(s), i) for s, i in columns]
        return self._statistic(key, shifts, lambda *curves: function(*[curves[k][i] for k, i in positions]), limits)

    def statistic(self, key: Hashable, shifts: Sequence[str], function: Callable[..., Any],
                  limits: tuple[float, float] | None = None) -> PerRepeat:
        """``function`` of the curves of ``shifts``, on every repeat and every bootstrap resample at once.

        Each curve is a numpy array of shape ``(networks, K)``: row 0 the
        parent, row ``i`` step ``i``; column 0 the whole test set, the other
        columns the bootstrap resamples. ``function`` returns ``K`` values
        (arithmetic on rows does: ``lambda c: c[0] - c[3]``). A noise shift's
        draws are averaged, each paired with draw 0 of a shift that has only
        one. ``limits``: the range the number can take, which its interval
        does not leave (``(0, 1)`` for an accuracy). Cached under ``key``
        (your keys never meet robustprune's own).
        """
        return self._statistic(("own", key), shifts, function, limits)

    def column_statistic(self, key: Hashable, columns: Sequence[tuple[str, int]], function: Callable[..., Any],
                         limits: tuple[float, float] | None = None) -> PerRepeat:
        """``function`` of single networks' accuracies, ``columns`` naming each by shift and position
        (0 = the parent): :meth:`statistic` for numbers read at one ratio. Each argument is the network's
        row: the whole test set, then every bootstrap resample."""
        return self._column_statistic(("own", key), columns, function, limits)

    def _combined(self, key: Hashable, parts: Callable[[], list[PerRepeat]], how: Reducer) -> PerRepeat:
        """The ``how`` of statistics within each repeat and resample (a group's min), made once."""
        cached = self._statistics.get(("combined", how, key))
        if cached is None:
            cached = self._remember(("combined", how, key), PerRepeat.combine(parts(), how))
        return cached

    def _remember(self, key: Hashable, statistic: PerRepeat) -> PerRepeat:
        self._statistics[key] = statistic
        return statistic

    def _curve_matrix(self, repeat: int, shift: str, draw: int) -> NDArray[Any]:
        """A repeat's curve ``[parent, step 1, ...]`` on ``shift`` (draw ``draw``) as networks x (whole test
        set, resample 1, ...), made once."""
        key = (repeat, shift, draw)
        matrix = self._curves.get(key)
        if matrix is None:
            import numpy as np

            curves = self.result.repeats[repeat]
            accuracy = np.asarray(curves.accuracy[shift][draw], dtype=float)
            if curves.replicates is None or not self.result.resampling.samples:
                matrix = accuracy[:, None]
            else:
                resampled = [np.asarray(row, dtype=float) for row in curves.replicates[shift][draw]]
                matrix = np.column_stack([accuracy, np.stack(resampled)])
            self._curves[key] = matrix
        return matrix

    def estimate(self, statistic: PerRepeat) -> Estimate:
        """The statistic's mean over repeats with its spread and bootstrap interval."""
        found = self._estimates.get(id(statistic))
        if found is None or found[0] is not statistic:
            found = self._estimates[id(statistic)] = (statistic, self.result.resampling.estimate(statistic))
        return found[1]

    def _point(self, statistic: PerRepeat) -> float:
        return self.estimate(statistic).point

    def _measure(self, statistic: PerRepeat, what: str, context: str, note: str = "", digits: int = 2) -> Measure:
        estimate = self.estimate(statistic)
        return Measure(estimate.point, what, context, note, digits, estimate)

    def _loss(self, shift: str, index: int) -> PerRepeat:
        return self._column_statistic(("loss", shift, index), [(shift, 0), (shift, index + 1)],
                                     metrics.accuracy_loss)

    def _delta_excess_statistic(self, shift: str, index: int) -> PerRepeat:
        # delta e = e(pruned) - e(parent), e = err(shift) - err(nominal) = acc(nominal) - acc(shift)
        return self._column_statistic(("dee", shift, index),
                                     [(shift, index + 1), (NOMINAL, index + 1), (shift, 0), (NOMINAL, 0)],
                                     _delta_excess_error)

    def _prune_potential_statistic(self, shift: str, delta: float | None = None) -> PerRepeat:
        """P(delta, shift) on every repeat and resample (what :meth:`prune_potential` and groups read)."""
        self._check_shift(shift)
        delta = self.delta if delta is None else delta
        ratios = self.ratios
        return self._statistic(("P", shift, delta), [shift],
                              lambda c: metrics.prune_potentials(ratios, c[1:], c[0], delta), (0.0, max(ratios)))

    # ------------------------------------------------------------ the numbers

    @property
    def _score(self) -> str:
        """What the case's numbers are, in sentences: ``accuracy`` (top-1), or the metric's label (``mIoU``)."""
        return score_name(self.result.metric)

    def parent_accuracy(self, shift: str = NOMINAL) -> Measure:
        self._check_shift(shift)
        statistic = self._column_statistic(("parent", shift), [(shift, 0)], _itself, _ACCURACY)
        return self._measure(statistic, f"parent {self._score}", f"under {shift}", digits=3)

    def accuracy(self, shift: str = NOMINAL, ratio: float | None = None) -> Measure:
        """The pruned network's accuracy at ``ratio`` (default: the gate ratio)."""
        self._check_shift(shift)
        ratio = self.gate_ratio if ratio is None else ratio
        index = _ratio_index(self.ratios, ratio)
        statistic = self._column_statistic(("accuracy", shift, index), [(shift, index + 1)], _itself, _ACCURACY)
        return self._measure(statistic, self._score, f"under {shift} at ratio {ratio:g}", digits=3)

    def prune_potential(self, shift: str = NOMINAL, delta: float | None = None) -> Measure:
        """P(delta, shift): the largest ratio whose accuracy is within delta of the parent's on that shift."""
        self._check_shift(shift)
        if self.single_network:
            raise NotApplicable(f"prune potential: n/a for {self.id} (single network: the pruned checkpoint "
                                f"{self.method!r} is one point, not a curve)")
        delta = self.delta if delta is None else delta
        return self._measure(self._prune_potential_statistic(shift, delta), "prune potential", f"under {shift}",
                             _delta_note(delta))

    def accuracy_loss(self, shift: str = NOMINAL, ratio: float | None = None) -> Measure:
        """Parent accuracy minus pruned accuracy on ``shift`` at ``ratio`` (default: the gate ratio)."""
        self._check_shift(shift)
        ratio = self.gate_ratio if ratio is None else ratio
        statistic = self._loss(shift, _ratio_index(self.ratios, ratio))
        return self._measure(statistic, f"{self._score} loss", f"under {shift} at ratio {ratio:g}", digits=3)

    def excess_error(self, shift: str, ratio: float | None = None) -> Measure:
        """e(pruned_r, shift) = err(shift) - err(nominal) of the pruned network at ``ratio``."""
        self._check_shift(shift)
        ratio = self.gate_ratio if ratio is None else ratio
        index = _ratio_index(self.ratios, ratio)
        statistic = self._column_statistic(("excess", shift, index), [(shift, index + 1), (NOMINAL, index + 1)],
                                          _excess_error)
        return self._measure(statistic, "excess error", f"under {shift} at ratio {ratio:g}", digits=3)

    def delta_excess_error(self, shift: str, ratio: float | None = None) -> Measure:
        """Delta e(r, shift): the error the shift adds to the pruned network beyond what it adds to the parent."""
        self._check_shift(shift)
        ratio = self.gate_ratio if ratio is None else ratio
        statistic = self._delta_excess_statistic(shift, _ratio_index(self.ratios, ratio))
        return self._measure(statistic, "delta excess error", f"under {shift} at ratio {ratio:g}", digits=3)

    def delta_excess_error_slope(self, shifts: Sequence[str] | None = None, where: str = "") -> Measure:
        """How fast pruning adds error under shifts: the slope b of ``mean delta e(r) = b r`` (least squares
        through the origin over every ratio of the grid, the mean over ``shifts``: every shift of the suite
        by default), as the paper regresses it; delta e per unit of prune ratio."""
        every = [*self.result.repeats[0].accuracy, *self.result.shift_errors]
        shifts = [s for s in (every if shifts is None else shifts) if s != NOMINAL]
        if not shifts:
            raise LookupError("no shift to regress the delta excess error over: the suite evaluates nominal only")
        for shift in shifts:
            self._check_shift(shift)
        ratios = self.ratios
        import numpy as np

        def slope(*curves: NDArray[Any]) -> NDArray[Any]:
            nominal = curves[-1]
            # delta e of every step and resample, per shift, then the mean over shifts: (steps, K)
            mean = sum(_delta_excess_error(c[1:], nominal[1:], c[0], nominal[0]) for c in curves[:-1]) / len(shifts)
            x = np.asarray(ratios, dtype=float)[:, None]
            return (x * mean).sum(axis=0) / float((x * x).sum())

        statistic = self._statistic(("dee-slope", *shifts), [*shifts, NOMINAL], slope)
        context = (where or f"over {len(shifts)} shifts") + " (per unit prune ratio)"
        return self._measure(statistic, "delta excess error slope", context, digits=3)

    # ------------------------------------------------------------ beyond accuracy (docs/beyond-accuracy.md)

    def _similarity(self) -> SimilarityResult:
        sim = self.result.similarity
        if sim is None:
            raise LookupError("functional similarity was not computed: set Suite(similarity=Similarity(...))")
        return sim

    def _similarity_entry(self, eps: float, ratio: float | None, kind: str) -> tuple[float, str, str]:
        sim = self._similarity()
        index = sim.eps_index(eps)
        note = f"({sim.images} images x {sim.draws} draws)"
        if ratio is None:
            ratio = self.gate_ratio
        curve = sim.curve_at(ratio)
        if curve is None:
            computed = ", ".join(f"{c.ratio:g}" for c in sim.pruned)
            raise KeyError(f"similarity was computed at ratio(s) {computed}, not {ratio:g}; "
                           f"Similarity(ratios='all') computes it at every ratio")
        values = curve.agreement if kind == "agreement" else curve.distance
        return values[index], f"under uniform noise eps {eps:g} at ratio {ratio:g}", note

    def _baseline_entry(self, eps: float, kind: str) -> tuple[float, str, str]:
        sim = self._similarity()
        index = sim.eps_index(eps)
        base = sim.baseline
        if base is None:
            raise LookupError("the separately trained parent was not computed: set Similarity(baseline=True)")
        values = base.agreement if kind == "agreement" else base.distance
        return values[index], f"under uniform noise eps {eps:g}", \
            f"(parent of seed {base.seed}; {sim.images} images x {sim.draws} draws)"

    def agreement(self, eps: float, ratio: float | None = None) -> Measure:
        """Fraction of noisy inputs (x + U[-eps, eps]) on which the pruned network at ``ratio`` (default: the
        gate ratio) predicts the parent's top-1 class."""
        value, context, note = self._similarity_entry(eps, ratio, "agreement")
        return Measure(value, "top-1 agreement with the parent", context, note, digits=3)

    def softmax_distance(self, eps: float, ratio: float | None = None) -> Measure:
        """Mean l2 distance between the pruned network's and the parent's softmax outputs under noise ``eps``."""
        value, context, note = self._similarity_entry(eps, ratio, "distance")
        return Measure(value, "softmax distance to the parent", context, note, digits=3)

    def baseline_agreement(self, eps: float) -> Measure:
        """The same agreement for a separately trained parent (another seed): two unrelated networks."""
        value, context, note = self._baseline_entry(eps, "agreement")
        return Measure(value, "top-1 agreement of a separately trained parent", context, note, digits=3)

    def baseline_softmax_distance(self, eps: float) -> Measure:
        """The softmax distance of a separately trained parent to the parent under noise ``eps``."""
        value, context, note = self._baseline_entry(eps, "distance")
        return Measure(value, "softmax distance of a separately trained parent", context, note, digits=3)

    def _features(self) -> FeaturesResult:
        features = self.result.features
        if features is None:
            raise LookupError("informative features were not computed: set Suite(features=Features(...))")
        return features

    def feature_overlap(self) -> Measure:
        """Mean intersection over union of the parent's and the gate-ratio network's informative subsets."""
        f = self._features()
        return Measure(f.overlap, "informative-feature overlap (IoU) with the parent", f"at ratio {f.ratio:g}",
                       f"({f.images} images)", digits=3)

    def cross_confidence(self, network: str = "pruned") -> Measure:
        """The cross test: ``"pruned"``: the gate-ratio network's probability of the parent's class on the
        parent's informative subset; ``"parent"``: the parent's on the pruned network's subset."""
        f = self._features()
        if network not in ("pruned", "parent"):
            raise ValueError(f"cross_confidence(network=...) takes 'pruned' or 'parent', got {network!r}")
        if network == "pruned":
            value, what = f.pruned_on_parent, "confidence of the pruned network on the parent's informative subset"
        else:
            value, what = f.parent_on_pruned, "confidence of the parent on the pruned network's informative subset"
        return Measure(value, what, f"at ratio {f.ratio:g}", f"({f.images} images)", digits=3)

    def _mix_group(self, prefix: str, field: str) -> GroupCase:
        for label, entry in self.entries.items():
            if label.startswith(f"{prefix}@"):
                return GroupCase(self, entry)
        also = ", held_out=..." if field == "held_out" else ""
        raise LookupError(f"no {field} column: set Suite(train_shifts=...{also})")

    @property
    def train_distribution(self) -> GroupCase:
        """Robust training: the mix's shifts at the report severity (``train_shifts@3``), as a group."""
        return self._mix_group(TRAIN_LABEL, "train_shifts")

    @property
    def test_distribution(self) -> GroupCase:
        """Robust training: the held-out shifts at the report severity (``held_out@3``), as a group."""
        return self._mix_group(TEST_LABEL, "held_out")

    def group(self, label: str) -> GroupCase:
        if label not in self.entries:
            raise KeyError(f"{label!r} is not one of the suite's shifts: {', '.join(self.entries)}")
        return GroupCase(self, self.entries[label])

    def shift(self, label: str) -> ShiftCase:
        self._check_shift(label)
        return ShiftCase(self, label)


class ShiftCase:
    """One case under one concrete shift (``wt-small_cnn-digits-contrast@3``)."""

    def __init__(self, case: Case, shift: str):
        self.case, self.shift = case, shift

    @property
    def id(self) -> str:
        return self.case.key.id_under(self.shift)

    @property
    def prune_potential(self) -> Measure:
        return self.case.prune_potential(self.shift)

    @property
    def parent_accuracy(self) -> Measure:
        return self.case.parent_accuracy(self.shift)

    @property
    def accuracy(self) -> Measure:
        """Accuracy at the gate ratio."""
        return self.case.accuracy(self.shift)

    @property
    def accuracy_loss(self) -> Measure:
        """Accuracy loss against the parent at the gate ratio."""
        return self.case.accuracy_loss(self.shift)

    @property
    def excess_error(self) -> Measure:
        return self.case.excess_error(self.shift)

    @property
    def delta_excess_error(self) -> Measure:
        """Delta excess error at the gate ratio."""
        return self.case.delta_excess_error(self.shift)


class GroupCase:
    """One case over one entry of the suite's shifts (``wt-small_cnn-digits-corruptions@3``)."""

    def __init__(self, case: Case, entry: ShiftEntry):
        self.case, self.entry = case, entry

    @property
    def id(self) -> str:
        return self.case.key.id_under(self.entry.label)

    @property
    def label(self) -> str:
        return self.entry.label

    @property
    def members(self) -> list[str]:
        return [m.label for m in self.entry.members]

    def _members(self) -> list[PerRepeat]:
        return [self.case._prune_potential_statistic(m) for m in self.members]

    def summary(self) -> metrics.GroupSummary:
        """Mean and min of the members' prune potentials, and the worst member (by its mean over repeats).

        With repeats, ``min`` is the mean over repeats of each repeat's minimum: the worst shift of one
        trained network, as a deployment meets it.
        """
        points = {m: self.case.estimate(s).point for m, s in zip(self.members, self._members())}
        summary = metrics.summarize_group(points)
        low = self.case.estimate(self.case._combined(("P", self.label), self._members, "min")).point
        return metrics.GroupSummary(mean=summary.mean, min=low, worst=summary.worst, values=summary.values)

    @property
    def mean_prune_potential(self) -> Measure:
        estimate = self.case.estimate(self.case._combined(("P", self.label), self._members, "mean"))
        mean = self.summary().mean  # rounded, so that equal grid values meet their own gate
        return Measure(mean, "mean prune potential", f"over {self.label}", _delta_note(self.case.delta),
                       estimate=estimate)

    @property
    def min_prune_potential(self) -> Measure:
        s = self.summary()
        context = f"over {self.label} (worst: {s.worst})" if self.entry.is_group else f"under {self.label}"
        estimate = self.case.estimate(self.case._combined(("P", self.label), self._members, "min"))
        return Measure(s.min, "min prune potential", context, _delta_note(self.case.delta), estimate=estimate)

    @property
    def worst(self) -> str:
        """The member shift with the lowest prune potential (mean over repeats)."""
        return self.summary().worst

    def _delta_excess_errors(self, ratio: float | None = None) -> list[PerRepeat]:
        index = _ratio_index(self.case.ratios, self.case.gate_ratio if ratio is None else ratio)
        return [self.case._delta_excess_statistic(m, index) for m in self.members]

    @property
    def max_delta_excess_error(self) -> Measure:
        """The largest delta excess error over the members, at the gate ratio."""
        values = {m: self.case.estimate(s).point for m, s in zip(self.members, self._delta_excess_errors())}
        worst = max(values, key=lambda m: values[m])
        estimate = self.case.estimate(self.case._combined(("dee", self.label, None), self._delta_excess_errors, "max"))
        return Measure(estimate.point, "max delta excess error",
                       f"over {self.label} (worst: {worst}) at ratio {self.case.gate_ratio:g}", digits=3,
                       estimate=estimate)

    @property
    def mean_delta_excess_error(self) -> Measure:
        """The mean delta excess error over the members, at the gate ratio: steadier than the max."""
        estimate = self.case.estimate(self.case._combined(("dee", self.label, None), self._delta_excess_errors, "mean"))
        return Measure(estimate.point, "mean delta excess error",
                       f"over {self.label} at ratio {self.case.gate_ratio:g}", digits=3, estimate=estimate)

    def mean_delta_excess_error_at(self, ratio: float) -> Measure:
        """:attr:`mean_delta_excess_error` at another ratio of the grid."""
        estimate = self.case.estimate(self.case._combined(("dee", self.label, ratio),
                                                          lambda: self._delta_excess_errors(ratio), "mean"))
        return Measure(estimate.point, "mean delta excess error", f"over {self.label} at ratio {ratio:g}", digits=3,
                       estimate=estimate)

    def mean_excess_error(self, ratio: float | None = None) -> Measure:
        """The pruned network's excess error averaged over the members (the paper's aggregate over a group of
        test sets, e.g. CIFAR-10.1 and the corruptions), at ``ratio`` (default: the gate ratio)."""
        ratio = self.case.gate_ratio if ratio is None else ratio
        index = _ratio_index(self.case.ratios, ratio)
        parts = [self.case._column_statistic(("excess", m, index), [(m, index + 1), (NOMINAL, index + 1)],
                                            _excess_error) for m in self.members]
        estimate = self.case.estimate(self.case._combined(("excess", self.label, ratio), lambda: parts, "mean"))
        return Measure(estimate.point, "mean excess error", f"over {self.label} at ratio {ratio:g}", digits=3,
                       estimate=estimate)

    @property
    def delta_excess_error_slope(self) -> Measure:
        """How fast pruning adds error under the group's shifts (see :meth:`Case.delta_excess_error_slope`)."""
        return self.case.delta_excess_error_slope(self.members, f"over {self.label}")


def _itself(row: Any) -> Any:
    return row


def _excess_error(pruned: Any, pruned_nominal: Any) -> Any:
    """e = err(shift) - err(nominal), from accuracies (floats, or rows of them)."""
    return metrics.excess_error(1 - pruned, 1 - pruned_nominal)


def _delta_excess_error(pruned: Any, pruned_nominal: Any, parent: Any, parent_nominal: Any) -> Any:
    """Delta e from accuracies (floats, or rows of them): the pruned network's excess error minus the parent's."""
    return metrics.delta_excess_error(1 - pruned, 1 - pruned_nominal, 1 - parent, 1 - parent_nominal)


def _drawn(per_repeat: list[tuple[float, ...]]) -> tuple[tuple[float, ...], ...] | None:
    """Each repeat's per-draw values, kept only where something was drawn more than once."""
    return tuple(per_repeat) if any(len(row) > 1 for row in per_repeat) else None
