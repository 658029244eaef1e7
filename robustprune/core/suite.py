"""What a suite file declares: the grid to evaluate and the settings of the run.

A suite is a pytest module with a module-level ``suite = Suite(...)`` and plain
test functions that take the fixtures ``case``, ``shift_case`` or
``group_case``; the robustprune pytest plugin parametrizes them over the grid.
"""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from ..plugin.api import AUTO_FAMILY, check_name
from .beyond import Features, ShiftMix, Similarity, as_shift_mix
from .gate import DeployGate

__all__ = ["PrunedCheckpoint", "Suite", "as_pruned_checkpoint", "geometric_ratios"]


def geometric_ratios(n: int = 16, keep_max: float = 0.8, keep_min: float = 0.03) -> tuple[float, ...]:
    """Prune ratios whose *keep* ratios form a geometric grid from ``keep_max`` down to ``keep_min``.

    The paper's robust-training configs use 16 points from keep 0.80 to 0.03.
    """
    if n < 1 or not 0 < keep_min <= keep_max < 1:
        raise ValueError(f"need n >= 1 and 0 < keep_min <= keep_max < 1, got n={n}, {keep_min}, {keep_max}")
    if n == 1:
        return (round(1 - keep_max, 6),)
    step = (keep_min / keep_max) ** (1 / (n - 1))
    return tuple(round(1 - keep_max * step**i, 6) for i in range(n))


def _is_number(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _is_whole(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_sequence(value: object) -> bool:
    """A list, a tuple, any other sequence but a string, or a one-dimensional array (numpy's)."""
    if isinstance(value, (str, bytes)):
        return False
    return isinstance(value, Sequence) or (hasattr(value, "tolist") and getattr(value, "ndim", None) == 1)


_MIN_BOOTSTRAP = 100  # fewer resamples put a 2.5 % percentile between their two smallest values


@dataclass(frozen=True)
class PrunedCheckpoint:
    """A network pruned elsewhere: its model's name, the file, and optionally the one dataset it belongs to.

    ``path`` is relative to the suite file. The parent it was pruned from must
    be the suite's ``parent_checkpoints[model]``: comparing it with a parent
    robustprune trained itself would measure nothing.
    """

    model: str
    path: str | os.PathLike[str]
    dataset: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.model, str) or not self.model:
            raise ValueError(f"PrunedCheckpoint needs the model's name, got {self.model!r}")
        object.__setattr__(self, "path", str(self.path))

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "path": str(self.path), "dataset": self.dataset}


def as_pruned_checkpoint(name: str, value: Any) -> PrunedCheckpoint:
    """A :class:`PrunedCheckpoint` from itself or a ``{"model": ..., "path": ..., "dataset": ...}`` mapping."""
    if isinstance(value, PrunedCheckpoint):
        return value
    if isinstance(value, Mapping):
        unknown = sorted(set(value) - {"model", "path", "dataset"})
        missing = [k for k in ("model", "path") if k not in value]
        if unknown or missing:
            problem = f"unknown key(s) {', '.join(unknown)}" if unknown else f"missing {', '.join(missing)}"
            raise ValueError(f"pruned_checkpoints[{name!r}]: {problem}; write "
                             "{'model': MODEL, 'path': FILE} (optionally 'dataset': DATASET)")
        return PrunedCheckpoint(**value)
    raise ValueError(f"pruned_checkpoints[{name!r}] must be a PrunedCheckpoint or a mapping with 'model' and 'path', "
                     f"got {type(value).__name__}")


@dataclass(frozen=True)
class Suite:
    """The grid of a suite and its settings.

    Attributes:
        models, datasets, methods: names as registered by plugins.
        shifts: shift specs, each a column group in the report: a single shift
            (``contrast@3``), a group (``corruptions@3``), or several parameters
            (``uniform_noise@0.1,0.2,0.3``). ``nominal`` is always evaluated.
        ratios: prune ratios in (0, 1), run as a cascade in increasing order.
        delta: tolerated accuracy loss for prune potential (0.005 = 0.5 %).
        gate_ratio: the ratio a deploy decision is made at: a number or a
            ``{method: ratio}`` mapping. Must be one of ``ratios``; defaults to
            the largest ratio not above 0.5.
        recipe: training-recipe overrides for every model (``{"epochs": 5}``).
        recipes: per-model overrides (``{"resnet20": {"lr": 0.05}}``).
        retrain_epochs: epochs of each retrain (the recipe's schedule compressed
            to them); ``None`` replays the full recipe as the paper does.
        seed: seeds data splits, initialisation, pruning and shifts.
        dataset_params: per-dataset parameters passed to the dataset plugin;
            ``root`` (a folder, relative to the suite file) overrides the data
            root for that dataset.
        parent_checkpoints: ``{model: path}``: start from the trained parent in
            that file (relative to the suite file) instead of training one.
        plugins: local plugin modules to load (importable names, looked up
            next to the suite file first).
        search: ``"grid"`` retrains at every ratio (a cascade, as the paper);
            ``"bisect"`` retrains only the ratios a bisection for the nominal
            prune potential probes (plus the gate ratio): fewer retrains, the
            same answer on a monotone curve, curves only at probed ratios.
        similarity: a :class:`Similarity`: functional similarity of the pruned
            networks to their parent under uniform noise (agreement, softmax
            distance), optionally against a separately trained parent.
        features: a :class:`Features`: informative features (backward
            selection) of the parent and the gate-ratio network, compared.
        train_shifts: robust training: a :class:`ShiftMix` or shift names;
            parents are trained and networks retrained on that mix.
        held_out: shifts never trained on, evaluated as the test distribution
            (needs ``train_shifts``). See docs/beyond-accuracy.md.
        gate: a :class:`DeployGate`: the deploy ratio and the limits a network
            must meet there to ship. Run as one check per case
            (``deploy_gate[<case id>]``), shown in the verdict column, and what
            ``--rp-export`` exports by. See docs/ci-recipe.md.
        pruned_checkpoints: ``{name: PrunedCheckpoint(model, path)}`` (or a
            ``{"model": ..., "path": ...}`` mapping): networks pruned elsewhere,
            each evaluated as one more case against its parent, which must be
            the suite's ``parent_checkpoints[model]``. ``methods`` may then be empty.
        repeats: independent parents (seeds ``seed``, ``seed + 1``, ...), each
            with its own cascade: every number is the mean over them, with their
            spread. Test and shifted sets are shared. The paper uses 3.
        bootstrap: resamples of the test images (paired: the same images for
            the parent and every pruned network), the test set's part of every
            interval (Student's t over the repeats is the training's part);
            0, or at least 100; 0 leaves the t interval over repeats only.
        confidence: the level of the reported intervals (0.95).
        noise_draws: independent draws of every noise shift (a tensor shift
            such as ``uniform_noise``); prune potential under noise is the mean
            of the per-draw prune potentials, as the paper estimates it.
        shift_family: the parameter family of shifts that have several, such
            as the corruptions (``"cifar10-c"``: calibrated for 32x32 images;
            ``"imagenet-c"``: for 224x224). ``"auto"`` (the default) lets each
            shift choose by the dataset's image size; a ``{dataset: family}``
            mapping sets it per dataset (the others stay ``"auto"``). Shifts
            are still written ``name@param``; docs/data-and-models.md.
        metric: the registered score every dataset of the suite is measured
            with (``"top5"``, say); ``None`` (the default) takes each dataset's
            own (``top1`` for classification, ``miou`` for segmentation).
            Prune potential, Δe and gates read it as "a score, higher is
            better"; docs/beyond-classification.md.
        latency: time the speed-up of structured methods' compacted networks
            over their parent (interleaved, batch 1 and 64; the speed-up
            cells). ``False`` skips the timing, which takes minutes for large
            networks on a CPU: parameters and MACs are still counted, and the
            speed-up cells read "not timed". ``--rp-no-latency`` (``robustprune
            run --no-latency``) sets it for one run.
    """

    models: Sequence[str]
    datasets: Sequence[str]
    methods: Sequence[str]
    shifts: Sequence[str] = ()
    ratios: Sequence[float] = field(default_factory=geometric_ratios)
    delta: float = 0.005
    gate_ratio: float | Mapping[str, float] | None = None
    recipe: Mapping[str, Any] = field(default_factory=dict)
    recipes: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    retrain_epochs: int | None = None
    seed: int = 0
    dataset_params: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    plugins: Sequence[str] = ()
    search: str = "grid"
    parent_checkpoints: Mapping[str, str | os.PathLike[str]] = field(default_factory=dict)
    similarity: Similarity | None = None
    features: Features | None = None
    train_shifts: ShiftMix | Sequence[str] | None = None
    held_out: Sequence[str] = ()
    gate: DeployGate | None = None
    pruned_checkpoints: Mapping[str, PrunedCheckpoint | Mapping[str, Any]] = field(default_factory=dict)
    repeats: int = 1
    bootstrap: int = 1000
    confidence: float = 0.95
    noise_draws: int = 1
    shift_family: str | Mapping[str, str] = AUTO_FAMILY
    metric: str | None = None
    latency: bool = True

    def __post_init__(self) -> None:
        self._check_types()
        for attr in ("models", "datasets", "methods", "shifts", "plugins"):
            value = getattr(self, attr)
            if isinstance(value, str):
                value = (value,)
            object.__setattr__(self, attr, tuple(value))
        object.__setattr__(self, "pruned_checkpoints", {
            str(name): as_pruned_checkpoint(str(name), value) for name, value in dict(self.pruned_checkpoints).items()})
        for attr in ("models", "datasets", "methods"):
            if not getattr(self, attr) and not (attr == "methods" and self.pruned_checkpoints):
                raise ValueError(f"Suite needs at least one entry in {attr}"
                                 + (" (or a network in pruned_checkpoints)" if attr == "methods" else ""))
        ratios = tuple(sorted(float(r) for r in self.ratios))
        bad = [r for r in ratios if not 0 < r < 1 or math.isnan(r)]
        if bad:
            raise ValueError(f"ratio {bad[0]} is outside (0, 1): a prune ratio is the removed fraction of weights")
        if not ratios:
            raise ValueError("Suite needs at least one ratio")
        if len(set(ratios)) != len(ratios):
            raise ValueError(f"duplicate ratios in {ratios}")
        object.__setattr__(self, "ratios", ratios)
        if not 0 <= self.delta < 1:
            raise ValueError(f"delta {self.delta} must be in [0, 1): it is an accuracy loss, 0.005 = 0.5 %")
        if self.retrain_epochs is not None and self.retrain_epochs < 0:
            raise ValueError(f"retrain_epochs must be >= 0, got {self.retrain_epochs}")
        if self.search not in ("grid", "bisect"):
            raise ValueError(f"search must be 'grid' or 'bisect', got {self.search!r}")
        self._check_uncertainty()
        self._check_shift_family()
        self._check_beyond()
        self._check_deploy()
        if isinstance(self.gate_ratio, Mapping):
            unknown = sorted(set(self.gate_ratio) - set(self.methods) - set(self.pruned_checkpoints))
            if unknown:
                names = ", ".join([*self.methods, *self.pruned_checkpoints])
                raise ValueError(f"Suite.gate_ratio names {', '.join(map(repr, unknown))}, not a method or pruned "
                                 f"checkpoint of the suite ({names}); a typo would fall back to the default ratio")
        for method in self.methods:
            self.gate_ratio_for(method)  # validates

    def _check_types(self) -> None:
        """Every field's type, named in the message: a wrong type must not fail later, somewhere else."""
        for name in ("models", "datasets", "methods", "shifts", "plugins", "held_out"):
            value = getattr(self, name)
            if not isinstance(value, str) and not (_is_sequence(value) and all(isinstance(v, str) for v in value)):
                raise TypeError(f"Suite.{name} must be a name or a list of names (strings), got {value!r}")
        if isinstance(self.ratios, str) or not _is_sequence(self.ratios) \
                or not all(_is_number(r) for r in self.ratios):
            raise TypeError(f"Suite.ratios must be a list of numbers, e.g. [0.3, 0.5, 0.7], got {self.ratios!r}")
        if not _is_number(self.delta):
            raise TypeError(f"Suite.delta must be a number (0.005 = 0.5 %), got {self.delta!r}")
        gate = self.gate_ratio
        if gate is not None and not _is_number(gate) and not (
                isinstance(gate, Mapping) and all(isinstance(k, str) and _is_number(v) for k, v in gate.items())):
            raise TypeError(f"Suite.gate_ratio must be a number or a {{method: ratio}} mapping, got {gate!r}")
        if self.retrain_epochs is not None and not _is_whole(self.retrain_epochs):
            raise TypeError(f"Suite.retrain_epochs must be a whole number of epochs (or None for the recipe's), "
                            f"got {self.retrain_epochs!r}")
        if not _is_whole(self.seed):
            raise TypeError(f"Suite.seed must be a whole number, got {self.seed!r}")
        if not isinstance(self.search, str):
            raise TypeError(f"Suite.search must be 'grid' or 'bisect', got {self.search!r}")
        if not isinstance(self.recipe, Mapping):
            raise TypeError(f"Suite.recipe must be a mapping of recipe fields, e.g. {{'epochs': 5}}, got "
                            f"{self.recipe!r}")
        for name in ("recipes", "dataset_params"):
            value = getattr(self, name)
            if not isinstance(value, Mapping) or not all(isinstance(k, str) and isinstance(v, Mapping)
                                                         for k, v in value.items()):
                raise TypeError(f"Suite.{name} must map names to mappings, e.g. {{'cifar10': {{'root': 'data'}}}}, "
                                f"got {value!r}")
        if not isinstance(self.parent_checkpoints, Mapping) or not all(
                isinstance(k, str) and isinstance(v, (str, os.PathLike)) for k, v in self.parent_checkpoints.items()):
            raise TypeError(f"Suite.parent_checkpoints must map model names to file paths, got "
                            f"{self.parent_checkpoints!r}")
        if self.metric is not None and (not isinstance(self.metric, str) or not self.metric):
            raise TypeError(f"Suite.metric must be the name of a registered metric (e.g. 'top5') or None, got "
                            f"{self.metric!r}")
        if not isinstance(self.latency, bool):
            raise TypeError(f"Suite.latency must be True (time structured networks' speed-up) or False, got "
                            f"{self.latency!r}")
        if not isinstance(self.pruned_checkpoints, Mapping):
            raise TypeError(f"Suite.pruned_checkpoints must map names to PrunedCheckpoint(...) entries, got "
                            f"{self.pruned_checkpoints!r}")

    def _check_shift_family(self) -> None:
        family = self.shift_family
        if isinstance(family, str):
            if not family:
                raise ValueError('Suite.shift_family must name a family ("cifar10-c", "imagenet-c") or be "auto"')
            return
        if not isinstance(family, Mapping) or not all(isinstance(k, str) and isinstance(v, str) and v
                                                      for k, v in family.items()):
            raise TypeError(f"Suite.shift_family must be a family name or a {{dataset: family}} mapping, "
                            f"got {family!r}")
        unknown = sorted(set(family) - set(self.datasets))
        if unknown:
            raise ValueError(f"Suite.shift_family names dataset(s) {', '.join(map(repr, unknown))}, not in the "
                             f"suite's datasets ({', '.join(self.datasets)})")
        object.__setattr__(self, "shift_family", dict(family))

    def shift_family_for(self, dataset: str) -> str:
        """The parameter family the suite asks for on ``dataset`` (``"auto"``: each shift chooses)."""
        family = self.shift_family
        return family if isinstance(family, str) else family.get(dataset, AUTO_FAMILY)

    def _check_uncertainty(self) -> None:
        """Repeats, bootstrap, confidence and noise draws: whole numbers and a level that make sense."""
        for name, low in (("repeats", 1), ("bootstrap", 0), ("noise_draws", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"Suite.{name} must be a whole number >= {low}, got {value!r}")
        if 0 < self.bootstrap < _MIN_BOOTSTRAP:
            raise ValueError(f"Suite.bootstrap={self.bootstrap} resamples cannot place a 95 % interval's ends; use 0 "
                             f"(no bootstrap) or at least {_MIN_BOOTSTRAP} (default 1000)")
        if isinstance(self.confidence, bool) or not isinstance(self.confidence, (int, float)) \
                or not 0 < self.confidence < 1:
            raise ValueError(f"Suite.confidence is the level of the intervals, a number in (0, 1) (0.95 = 95 %), "
                             f"got {self.confidence!r}")
        if self.search == "bisect" and self.repeats > 1:
            raise ValueError("search='bisect' probes different ratios on each repeat, so their curves would not "
                             "line up: use the grid with repeats > 1, or one repeat with bisection")

    def _check_beyond(self) -> None:
        """Normalise and check the beyond-accuracy settings (names are checked against the registry later)."""
        for name, cls in (("similarity", Similarity), ("features", Features)):
            value = getattr(self, name)
            if value is not None and not isinstance(value, cls):
                raise ValueError(f"Suite.{name} must be a robustprune.{cls.__name__}(...) or None, got {value!r}")
        object.__setattr__(self, "train_shifts", as_shift_mix(self.train_shifts))
        held_out = (self.held_out,) if isinstance(self.held_out, str) else tuple(self.held_out)
        object.__setattr__(self, "held_out", held_out)
        if held_out and self.train_shifts is None:
            raise ValueError("Suite.held_out names shifts held out of a training mix: set train_shifts too")
        if self.mix is not None:
            both = sorted(set(self.mix.shifts) & set(held_out))
            if both:
                raise ValueError(f"{', '.join(both)} in both train_shifts and held_out: a held-out shift must never "
                                 f"be trained on")

    def _check_deploy(self) -> None:
        """Check the deploy gate and the pruned checkpoints; the gate's ratio becomes the suite's gate ratio."""
        if self.gate is not None and not isinstance(self.gate, DeployGate):
            raise ValueError(f"Suite.gate must be a robustprune.DeployGate(...) or None, got {self.gate!r}")
        for name, entry in self.pruned_entries.items():
            check_name("pruned checkpoint", name)
            where = f"pruned_checkpoints[{name!r}]"
            if name in self.methods:
                raise ValueError(f"{where}: {name!r} is also a method of the suite; give the checkpoint another name")
            if entry.model not in self.models:
                raise ValueError(f"{where} names model {entry.model!r}, which the suite does not use; suite models: "
                                 f"{', '.join(self.models)}")
            if entry.dataset is not None and entry.dataset not in self.datasets:
                raise ValueError(f"{where} names dataset {entry.dataset!r}, which the suite does not use; suite "
                                 f"datasets: {', '.join(self.datasets)}")
            if entry.model not in self.parent_checkpoints:
                raise ValueError(f"{where}: a pruned checkpoint is compared with the parent it was pruned from; set "
                                 f"parent_checkpoints={{{entry.model!r}: 'path/to/parent.pt'}}")
        if self.gate is not None and self.gate.confidence is not None and self.repeats == 1 and not self.bootstrap:
            raise ValueError("DeployGate(confidence=...) judges upper bounds, and with repeats=1 and bootstrap=0 "
                             "there is nothing to bound: set repeats >= 2 (the paper uses 3) or bootstrap > 0")
        if self.gate is None or self.gate.ratio is None:
            return
        ratio = self.gate.ratio
        if isinstance(ratio, Mapping):
            unknown = sorted(set(ratio) - set(self.methods) - set(self.pruned_checkpoints))
            if unknown:
                names = ", ".join([*self.methods, *self.pruned_checkpoints])
                raise ValueError(f"DeployGate ratio names {', '.join(map(repr, unknown))}, neither a method nor a "
                                 f"pruned checkpoint of the suite: {names}")
        if self.gate_ratio is None:
            object.__setattr__(self, "gate_ratio", ratio)
        elif _normal_ratio(self.gate_ratio) != _normal_ratio(ratio):
            raise ValueError(f"Suite.gate_ratio {self.gate_ratio!r} and DeployGate(ratio={ratio!r}) disagree; "
                             "set the deploy ratio in one place")

    @property
    def mix(self) -> ShiftMix | None:
        """``train_shifts`` as the :class:`ShiftMix` it was normalised to (``None`` without robust training)."""
        return cast("ShiftMix | None", self.train_shifts)

    @property
    def pruned_entries(self) -> Mapping[str, PrunedCheckpoint]:
        """``pruned_checkpoints`` with every entry normalised to a :class:`PrunedCheckpoint`."""
        return cast("Mapping[str, PrunedCheckpoint]", self.pruned_checkpoints)

    def deploy_ratio_for(self, name: str) -> float | None:
        """The deploy ratio of a method (its gate ratio) or the minimum sparsity of a pruned checkpoint
        (``None`` unless the suite's gate ratio or deploy gate names one)."""
        if name not in self.pruned_checkpoints:
            return self.gate_ratio_for(name)
        ratio = self.gate_ratio.get(name) if isinstance(self.gate_ratio, Mapping) else self.gate_ratio
        return None if ratio is None else float(ratio)

    def gate_ratio_for(self, method: str) -> float:
        """The ratio at which ``method``'s deploy gate and delta excess error are read."""
        gate = self.gate_ratio
        if isinstance(gate, Mapping):
            gate = gate.get(method)
        if gate is None:
            below = [r for r in self.ratios if r <= 0.5]
            return below[-1] if below else self.ratios[0]
        gate = float(gate)
        matches = [r for r in self.ratios if math.isclose(r, gate, abs_tol=1e-9)]
        if not matches:
            raise ValueError(
                f"gate_ratio {gate} for method {method!r} is not one of the suite's ratios "
                f"{', '.join(f'{r:g}' for r in self.ratios)}; add it to ratios"
            )
        return matches[0]


def _normal_ratio(ratio: float | Mapping[str, float]) -> Any:
    return {k: float(v) for k, v in ratio.items()} if isinstance(ratio, Mapping) else float(ratio)
