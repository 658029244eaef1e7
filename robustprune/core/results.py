"""What a run produces, as plain typed data: case keys, accuracy curves, measures beyond accuracy.

The engine fills these; the case views, the report, the harness and the
export read them. Nothing here imports torch: a result is numbers and store
keys, never networks or tensors.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from .shifts import NOMINAL, Shift, ShiftEntry
from .suite import Suite
from .uncertainty import Resampling

__all__ = [
    "CaseError",
    "CaseKey",
    "CaseResult",
    "FeaturesResult",
    "RepeatCurves",
    "SimilarityBaseline",
    "SimilarityCurve",
    "SimilarityResult",
    "StoreError",
    "SuiteRun",
]


class CaseError(RuntimeError):
    """A case could not be computed (a plugin raised, a ratio was unreachable, ...); its checks fail with this."""


class StoreError(RuntimeError):
    """The store cannot be used (read-only, full, not a folder): the machine's problem, not a case's.

    It stops the run with one message naming the store and the fix, instead of
    failing every check with the same error (exit status 6, see
    :mod:`robustprune.harness.exitcodes`).
    """


@dataclass(frozen=True)
class CaseKey:
    """One method x model x dataset combination: the unit that checks are parametrized over."""

    method: str
    model: str
    dataset: str

    @property
    def id(self) -> str:
        """``wt-small_cnn-digits``: the case's name in test ids, the report, store logs and export folders."""
        return f"{self.method}-{self.model}-{self.dataset}"

    def id_under(self, shift: str | None) -> str:
        """The id of a check of this case under a shift or shift entry: ``wt-small_cnn-digits-contrast@3``."""
        return f"{self.id}-{shift}" if shift else self.id


TOP1 = {"name": "top1", "label": "acc", "task": "classification"}
"""The metric of a result that names none (classification's default)."""


def score_name(metric: Mapping[str, str]) -> str:
    """How sentences name a result's score: ``accuracy`` for top-1, else the metric's label (``mIoU``)."""
    if metric.get("name", TOP1["name"]) == TOP1["name"]:
        return "accuracy"
    return metric.get("label", metric.get("name", "score"))


# --------------------------------------------------------------------------- beyond accuracy


@dataclass(frozen=True)
class SimilarityCurve:
    """One network against the parent: top-1 agreement and softmax l2 distance per noise level."""

    ratio: float
    agreement: tuple[float, ...]
    distance: tuple[float, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"ratio": self.ratio, "agreement": list(self.agreement), "distance": list(self.distance)}


@dataclass(frozen=True)
class SimilarityBaseline:
    """A separately trained parent (another seed) against the parent: what an unrelated network agrees on."""

    seed: int
    key: str
    agreement: tuple[float, ...]
    distance: tuple[float, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"seed": self.seed, "key": self.key, "agreement": list(self.agreement), "distance": list(self.distance)}


@dataclass(frozen=True)
class SimilarityResult:
    """Functional similarity of a case's pruned networks (and the baseline) to their parent under uniform noise."""

    eps: tuple[float, ...]
    images: int
    draws: int
    pruned: tuple[SimilarityCurve, ...]
    baseline: SimilarityBaseline | None = None

    def curve_at(self, ratio: float) -> SimilarityCurve | None:
        """The pruned network's curve at ``ratio``, if similarity was computed there."""
        return next((c for c in self.pruned if abs(c.ratio - ratio) < 1e-9), None)

    def eps_index(self, eps: float) -> int:
        """Position of noise level ``eps``; ``KeyError`` naming the computed levels otherwise."""
        for i, e in enumerate(self.eps):
            if abs(e - eps) < 1e-9:
                return i
        raise KeyError(f"eps {eps:g} is not one of the suite's similarity noise levels "
                       f"{', '.join(f'{e:g}' for e in self.eps)}")

    def to_dict(self) -> dict[str, Any]:
        """The report's JSON form."""
        return {"eps": list(self.eps), "images": self.images, "draws": self.draws,
                "pruned": [c.to_dict() for c in self.pruned],
                "baseline": self.baseline.to_dict() if self.baseline is not None else None}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SimilarityResult:
        """The inverse of :meth:`to_dict` (a JSON report's ``similarity`` section)."""
        base = data.get("baseline")
        return cls(
            eps=tuple(data["eps"]), images=int(data["images"]), draws=int(data["draws"]),
            pruned=tuple(SimilarityCurve(float(p["ratio"]), tuple(p["agreement"]), tuple(p["distance"]))
                         for p in data["pruned"]),
            baseline=None if not base else SimilarityBaseline(int(base["seed"]), str(base["key"]),
                                                              tuple(base["agreement"]), tuple(base["distance"])),
        )


@dataclass(frozen=True)
class FeaturesResult:
    """Informative features of the parent and the gate-ratio network, compared (means over the images)."""

    ratio: float
    images: int
    patch: int
    patches: int
    threshold: float
    parent_size: float  # fraction of the patches in the parent's informative subset
    pruned_size: float
    overlap: float  # intersection over union of the two subsets
    pruned_on_parent: float  # the pruned network's confidence in the parent's class on the parent's subset
    pruned_on_parent_agreement: float
    parent_on_pruned: float
    parent_on_pruned_agreement: float
    parent_on_own: float
    pruned_on_own: float
    same_prediction: float

    def to_dict(self) -> dict[str, Any]:
        """The report's JSON form."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FeaturesResult:
        """The inverse of :meth:`to_dict` (a JSON report's ``features`` section)."""
        return cls(**{f.name: data[f.name] for f in fields(cls)})


# --------------------------------------------------------------------------- cases


@dataclass(frozen=True)
class RepeatCurves:
    """One repeat of a case: its parent and cascade, evaluated on every shift.

    ``accuracy[shift][draw]`` is ``[parent, step 1, ...]`` on the whole test set
    (a noise shift has several independent draws, every other shift one);
    ``replicates[shift][draw][network][b]`` is the same network's accuracy on
    bootstrap image resample ``b`` (``None`` without a bootstrap).
    """

    seed: int
    achieved: tuple[float, ...]
    parent_key: str
    step_keys: tuple[str, ...]
    accuracy: Mapping[str, tuple[tuple[float, ...], ...]]
    replicates: Mapping[str, tuple[tuple[Sequence[float], ...], ...]] | None = None

    def draws(self, shift: str) -> int:
        return len(self.accuracy[shift])

    def curve(self, shift: str, draw: int = 0, sample: int | None = None) -> list[float]:
        """``[parent, step 1, ...]`` on ``shift`` (draw ``draw``), on the whole set or on bootstrap ``sample``."""
        if sample is None:
            return list(self.accuracy[shift][draw])
        assert self.replicates is not None
        return [network[sample] for network in self.replicates[shift][draw]]

    def mean_curve(self, shift: str) -> list[float]:
        """The curve averaged over the shift's draws."""
        draws = self.accuracy[shift]
        return [math.fsum(d[i] for d in draws) / len(draws) for i in range(len(draws[0]))]


@dataclass
class CaseResult:
    """One case: the curves of each repeat on nominal and every shift, with what else the suite asked for.

    ``repeats`` holds one entry per independently trained parent and cascade
    (a pruned checkpoint has one); the numbers checks read are means over them,
    with the spread ``resampling`` describes (:mod:`robustprune.core.uncertainty`).
    """

    case: CaseKey
    method: dict[str, Any]  # the method's identity, "structured", "data_informed" (report and export read it)
    ratios: tuple[float, ...]
    repeats: tuple[RepeatCurves, ...]
    resampling: Resampling
    seconds: float = 0.0
    # the first repeat's [parent, step 1, ...]: params, macs, and for structured methods latency (s) and speedup
    costs: list[dict[str, Any]] = field(default_factory=list)
    # shift label -> "generated" or "published: <path>" (CIFAR-10-C arrays, CIFAR-10.1 on disk)
    shift_sources: dict[str, str] = field(default_factory=dict)
    # shift label -> why it could not be evaluated (its plugin failed, or its name clashes): not in the curves
    shift_errors: dict[str, str] = field(default_factory=dict)
    similarity: SimilarityResult | None = None  # the first repeat's
    features: FeaturesResult | None = None  # the first repeat's
    # the score the curves hold ("accuracy" in field names is historical): its name, header label and task
    metric: dict[str, str] = field(default_factory=lambda: dict(TOP1))

    @classmethod
    def from_curves(cls, case: CaseKey, method: dict[str, Any], ratios: Sequence[float], achieved: Sequence[float],
                    accuracy: Mapping[str, Sequence[float]], *, parent_key: str = "", step_keys: Sequence[str] = (),
                    seed: int = 0, **fields: Any) -> CaseResult:
        """A one-repeat result without a bootstrap, from plain curves (``shift -> [parent, step 1, ...]``):
        numbers computed from it have no spread. For tests and hand-made examples."""
        curves = RepeatCurves(seed, tuple(achieved), parent_key, tuple(step_keys),
                              {label: (tuple(values),) for label, values in accuracy.items()})
        return cls(case=case, method=method, ratios=tuple(ratios), repeats=(curves,),
                   resampling=Resampling(repeats=1, samples=0, level=0.95), **fields)

    @property
    def achieved(self) -> tuple[float, ...]:
        """The ratio each step reached, averaged over repeats."""
        return tuple(math.fsum(r.achieved[i] for r in self.repeats) / len(self.repeats)
                     for i in range(len(self.ratios)))

    @property
    def parent_key(self) -> str:
        """The first repeat's parent (the store key of the network deployed and exported)."""
        return self.repeats[0].parent_key

    @property
    def step_keys(self) -> tuple[str, ...]:
        """The first repeat's cascade steps."""
        return self.repeats[0].step_keys

    @property
    def accuracy(self) -> dict[str, list[float]]:
        """shift label -> ``[parent, step 1, ...]``, averaged over repeats and draws."""
        out = {}
        for shift in self.repeats[0].accuracy:
            curves = [r.mean_curve(shift) for r in self.repeats]
            out[shift] = [math.fsum(c[i] for c in curves) / len(curves) for i in range(len(curves[0]))]
        return out

    def parent_accuracy(self, shift: str = NOMINAL) -> float:
        return self.accuracy[shift][0]

    def accuracies(self, shift: str = NOMINAL) -> list[float]:
        """The pruned networks' accuracies on ``shift``, one per ratio (means over repeats and draws)."""
        return self.accuracy[shift][1:]


@dataclass(frozen=True)
class SuiteRun:
    """One suite's computed cases with what the report needs to read them (no engine, no torch)."""

    suite: Suite
    entries: tuple[ShiftEntry, ...]  # the suite's shift columns (robust training's two included)
    shifts: tuple[Shift, ...]  # every concrete shift evaluated, nominal first
    results: Mapping[CaseKey, CaseResult | CaseError]
    num_classes: Mapping[str, int]  # per dataset that was loaded
    robust_training: Mapping[str, Any] | None = None  # the training mix as the report describes it
    numerics: Mapping[str, Any] | None = None  # what the numbers depend on (robustprune.compute.numerics)
    store: Mapping[str, Any] | None = None  # root, authenticated, entries rejected by authentication
