"""What suite checks receive: a case's numbers as values that explain themselves when an assert fails.

``case``, ``shift_case`` and ``group_case`` fixtures hand these views to plain
test functions. Every number is a :class:`Measure`, a ``float`` that knows
what it is, so ``assert shift_case.prune_potential >= 0.8`` fails with
``prune potential 0.50 under contrast@3 < required 0.80 (delta 0.5 %)``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from . import metrics
from .beyond import TEST_LABEL, TRAIN_LABEL
from .gate import DeployGate, GateResult, evaluate_gate, resolve_entries, shift_numbers
from .results import CaseKey, CaseResult, FeaturesResult, SimilarityResult
from .shifts import NOMINAL, ShiftEntry
from .suite import Suite

__all__ = ["Case", "GroupCase", "Measure", "NotApplicable", "ShiftCase"]

# The negation of each comparison: what is true when the assert fails.
_FAILED = {">=": "<", ">": "<=", "<=": ">", "<": ">="}


class Measure(float):
    """A float with a description, used to phrase failed comparisons."""

    what: str
    context: str
    note: str
    digits: int

    def __new__(cls, value: float, what: str, context: str = "", note: str = "", digits: int = 2) -> Measure:
        obj = super().__new__(cls, value)
        obj.what, obj.context, obj.note, obj.digits = what, context, note, digits
        return obj

    def explain(self, op: str, other: object) -> str | None:
        """The sentence for a failed ``self <op> other``; None for other operators."""
        if op not in _FAILED or not isinstance(other, (int, float)):
            return None
        bound = "required" if op in (">=", ">") else "limit"
        fmt = f".{self.digits}f"
        parts = [self.what, format(float(self), fmt)]
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
        ``deploy_gate[<case id>]`` by itself.
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
        return evaluate_gate(
            gate, name=self.method, ratio=ratio, achieved=self.result.achieved[index],
            numbers=shift_numbers(self.result.accuracy, index + 1), entries=entries, delta=self.delta,
            single_network=self.single_network, required_sparsity=required,
        )

    @property
    def delta(self) -> float:
        return self.suite.delta

    def _check_shift(self, shift: str) -> None:
        if shift not in self.result.accuracy:
            raise KeyError(
                f"shift {shift!r} is not evaluated by this suite; evaluated: {', '.join(self.result.accuracy)}"
            )

    def parent_accuracy(self, shift: str = NOMINAL) -> Measure:
        self._check_shift(shift)
        return Measure(self.result.parent_accuracy(shift), "parent accuracy", f"under {shift}", digits=3)

    def accuracy(self, shift: str = NOMINAL, ratio: float | None = None) -> Measure:
        """The pruned network's accuracy at ``ratio`` (default: the gate ratio)."""
        self._check_shift(shift)
        ratio = self.gate_ratio if ratio is None else ratio
        value = self.result.accuracies(shift)[_ratio_index(self.ratios, ratio)]
        return Measure(value, "accuracy", f"under {shift} at ratio {ratio:g}", digits=3)

    def prune_potential(self, shift: str = NOMINAL, delta: float | None = None) -> Measure:
        """P(delta, shift): the largest ratio whose accuracy is within delta of the parent's on that shift."""
        self._check_shift(shift)
        if self.single_network:
            raise NotApplicable(f"prune potential: n/a for {self.id} (single network: the pruned checkpoint "
                                f"{self.method!r} is one point, not a curve)")
        delta = self.delta if delta is None else delta
        value = metrics.prune_potential(
            self.ratios, self.result.accuracies(shift), self.result.parent_accuracy(shift), delta
        )
        return Measure(value, "prune potential", f"under {shift}", _delta_note(delta))

    def accuracy_loss(self, shift: str = NOMINAL, ratio: float | None = None) -> Measure:
        """Parent accuracy minus pruned accuracy on ``shift`` at ``ratio`` (default: the gate ratio)."""
        ratio = self.gate_ratio if ratio is None else ratio
        value = metrics.accuracy_loss(self.parent_accuracy(shift), self.accuracy(shift, ratio))
        return Measure(value, "accuracy loss", f"under {shift} at ratio {ratio:g}", digits=3)

    def excess_error(self, shift: str, ratio: float | None = None) -> Measure:
        """e(pruned_r, shift) = err(shift) - err(nominal) of the pruned network at ``ratio``."""
        ratio = self.gate_ratio if ratio is None else ratio
        value = metrics.excess_error(1 - self.accuracy(shift, ratio), 1 - self.accuracy(NOMINAL, ratio))
        return Measure(value, "excess error", f"under {shift} at ratio {ratio:g}", digits=3)

    def delta_excess_error(self, shift: str, ratio: float | None = None) -> Measure:
        """Delta e(r, shift): the error the shift adds to the pruned network beyond what it adds to the parent."""
        ratio = self.gate_ratio if ratio is None else ratio
        value = metrics.delta_excess_error(
            1 - self.accuracy(shift, ratio), 1 - self.accuracy(NOMINAL, ratio),
            1 - self.parent_accuracy(shift), 1 - self.parent_accuracy(NOMINAL),
        )
        return Measure(value, "delta excess error", f"under {shift} at ratio {ratio:g}", digits=3)

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

    def summary(self) -> metrics.GroupSummary:
        return metrics.summarize_group({m: float(self.case.prune_potential(m)) for m in self.members})

    @property
    def mean_prune_potential(self) -> Measure:
        s = self.summary()
        return Measure(s.mean, "mean prune potential", f"over {self.label}", _delta_note(self.case.delta))

    @property
    def min_prune_potential(self) -> Measure:
        s = self.summary()
        context = f"over {self.label} (worst: {s.worst})" if self.entry.is_group else f"under {self.label}"
        return Measure(s.min, "min prune potential", context, _delta_note(self.case.delta))

    @property
    def worst(self) -> str:
        """The member shift with the lowest prune potential."""
        return self.summary().worst

    @property
    def max_delta_excess_error(self) -> Measure:
        """The largest delta excess error over the members, at the gate ratio."""
        values = {m: float(self.case.delta_excess_error(m)) for m in self.members}
        worst = max(values, key=lambda m: values[m])
        return Measure(values[worst], "max delta excess error",
                       f"over {self.label} (worst: {worst}) at ratio {self.case.gate_ratio:g}", digits=3)

    @property
    def mean_delta_excess_error(self) -> Measure:
        """The mean delta excess error over the members, at the gate ratio: steadier than the max."""
        values = [float(self.case.delta_excess_error(m)) for m in self.members]
        return Measure(sum(values) / len(values), "mean delta excess error",
                       f"over {self.label} at ratio {self.case.gate_ratio:g}", digits=3)
