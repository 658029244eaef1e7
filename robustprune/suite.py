"""What a suite file declares: the grid to evaluate and the settings of the run.

A suite is a pytest module with a module-level ``suite = Suite(...)`` and plain
test functions that take the fixtures ``case``, ``shift_case`` or
``group_case``; the robustprune pytest plugin parametrizes them over the grid.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from .beyond import Features, ShiftMix, Similarity, as_shift_mix


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

    def __post_init__(self) -> None:
        for attr in ("models", "datasets", "methods", "shifts", "plugins"):
            value = getattr(self, attr)
            if isinstance(value, str):
                value = (value,)
            object.__setattr__(self, attr, tuple(value))
        for attr in ("models", "datasets", "methods"):
            if not getattr(self, attr):
                raise ValueError(f"Suite needs at least one entry in {attr}")
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
        self._check_beyond()
        for method in self.methods:
            self.gate_ratio_for(method)  # validates

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
        if self.train_shifts is not None:
            both = sorted(set(self.train_shifts.shifts) & set(held_out))
            if both:
                raise ValueError(f"{', '.join(both)} in both train_shifts and held_out: a held-out shift must never "
                                 f"be trained on")

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
