"""Settings for the measures beyond accuracy: functional similarity, informative features, robust training.

A suite turns each on with one :class:`~robustprune.Suite` field::

    Suite(..., similarity=Similarity(eps=(0.1, 0.2, 0.4), images=200, draws=10, baseline=True),
               features=Features(images=32),
               train_shifts=PAPER_TRAIN_SHIFTS, held_out=PAPER_HELD_OUT)

This module imports no torch (suite files import it); the computations live
in :mod:`robustprune.engine.similarity`, :mod:`robustprune.engine.features` and
:mod:`robustprune.engine.robust_training`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

PAPER_EPS: tuple[float, ...] = tuple(round(0.05 * i, 6) for i in range(15))
"""The paper's noise levels, linspace(0, 0.7, 15), rounded so that ``0.2`` is ``0.2``."""

PAPER_TRAIN_SHIFTS: tuple[str, ...] = (
    "contrast", "elastic_transform", "gaussian_blur", "impulse_noise", "motion_blur",
    "pixelate", "shot_noise", "snow", "zoom_blur",
)
"""The paper's robust-training mix (each training image: one of these at severity 1-5, or clean)."""

PAPER_HELD_OUT: tuple[str, ...] = (
    "brightness", "defocus_blur", "fog", "frost", "gaussian_noise", "glass_blur",
    "jpeg_compression", "saturate", "spatter", "speckle_noise",
)
"""The paper's held-out test mix for robust training: never drawn at training time."""


TRAIN_LABEL = "train_shifts"
"""Report column (and ``group_case`` label prefix) of the training mix's members: ``train_shifts@3``."""
TEST_LABEL = "held_out"
"""Report column (and ``group_case`` label prefix) of the held-out shifts: ``held_out@3``."""


def _floats(values: Sequence[float], what: str) -> tuple[float, ...]:
    out = tuple(round(float(v), 6) for v in values)
    if not out:
        raise ValueError(f"{what} needs at least one value")
    if any(math.isnan(v) or v < 0 for v in out):
        raise ValueError(f"{what} must be numbers >= 0, got {values!r}")
    if len(set(out)) != len(out):
        raise ValueError(f"duplicate values in {what}: {values!r}")
    return tuple(sorted(out))


@dataclass(frozen=True)
class Similarity:
    """Functional similarity of each pruned network to its parent under uniform noise.

    For ``images`` test images and ``draws`` noise draws per image, both
    networks see the same x + U[-eps, eps] (normalized input, no clipping, as
    the paper's noise); reported per eps: the mean l2 distance of the two
    softmax outputs and the fraction of matching top-1 labels.

    Attributes:
        eps: noise levels (the paper: linspace(0, 0.7, 15), :data:`PAPER_EPS`).
        images: test images (a seeded subset; the paper: 1,000).
        draws: noise draws per image (the paper: 100; one at eps 0).
        ratios: ``"gate"`` (the gate ratio only) or ``"all"`` (every evaluated ratio).
        baseline: also compare a *separately trained parent* (same recipe, seed
            ``baseline_seed``) with the parent: what an unrelated network of
            the same accuracy agrees on. Costs one more parent training.
        baseline_seed: seed of that second parent (default: the suite's seed + 1).
    """

    eps: Sequence[float] = (0.0, 0.1, 0.2, 0.3, 0.4)
    images: int = 200
    draws: int = 10
    ratios: str = "gate"
    baseline: bool = False
    baseline_seed: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "eps", _floats(self.eps, "Similarity.eps"))
        if int(self.images) < 1 or int(self.draws) < 1:
            raise ValueError(f"Similarity needs images >= 1 and draws >= 1, got {self.images} and {self.draws}")
        if self.ratios not in ("gate", "all"):
            raise ValueError(f"Similarity.ratios must be 'gate' or 'all', got {self.ratios!r}")

    @classmethod
    def paper(cls, **changes: Any) -> Similarity:
        """The paper's setup: 1,000 images, 100 draws, eps in linspace(0, 0.7, 15)."""
        return cls(**{"eps": PAPER_EPS, "images": 1000, "draws": 100, **changes})

    def to_dict(self) -> dict[str, Any]:
        return {"eps": list(self.eps), "images": int(self.images), "draws": int(self.draws),
                "ratios": self.ratios, "baseline": bool(self.baseline), "baseline_seed": self.baseline_seed}


@dataclass(frozen=True)
class Features:
    """Informative features: the input patches each network needs for its decision.

    Per image, backward selection removes patches (replacing them with the
    dataset mean, 0 after normalisation) in the order that hurts the predicted
    class's probability least; the *informative subset* is the smallest
    remaining set that keeps at least ``threshold`` of the full image's
    probability of that class. Computed for the parent and the pruned network
    at the gate ratio; reported: subset sizes, their overlap (intersection over
    union), and the cross test (each network's confidence on the other's subset).

    Attributes:
        images: test images (a seeded subset).
        patch: side of the square patches that are kept or removed together
            (all channels); 1 = single pixels.
        threshold: fraction of the full-image probability a subset must keep.
        max_forward: cost cap, forward passes per image and network; backward
            selection removes larger chunks per step to stay within it (one
            patch per step when the cap allows).
    """

    images: int = 32
    patch: int = 2
    threshold: float = 0.9
    max_forward: int = 3000

    def __post_init__(self) -> None:
        if int(self.images) < 1 or int(self.patch) < 1:
            raise ValueError(f"Features needs images >= 1 and patch >= 1, got {self.images} and {self.patch}")
        if not 0 < self.threshold <= 1:
            raise ValueError(f"Features.threshold is a fraction in (0, 1], got {self.threshold}")
        if int(self.max_forward) < 1:
            raise ValueError(f"Features.max_forward must be >= 1, got {self.max_forward}")

    def to_dict(self) -> dict[str, Any]:
        return {"images": int(self.images), "patch": int(self.patch), "threshold": float(self.threshold),
                "max_forward": int(self.max_forward)}


@dataclass(frozen=True)
class ShiftMix:
    """Robust training: parents are trained, and pruned networks retrained, on a mix of shifted images.

    Each training image independently stays clean with probability ``clean``,
    else gets one of ``shifts`` (pixel shifts or groups of them) at a severity
    drawn from ``severities``. The paper: its nine training corruptions,
    severity 0-5 uniformly (clean 1/6). ``pool`` corrupted copies of the
    training set are generated once (seeded, cached in the store) and training
    cycles through them, one per epoch.

    ``report_severity`` is the severity at which the mix's members and the
    suite's ``held_out`` shifts are evaluated for the report's train- and
    test-distribution columns (``train_shifts@3``, ``held_out@3``).
    """

    shifts: Sequence[str] = PAPER_TRAIN_SHIFTS
    clean: float = 1 / 6
    severities: Sequence[int] = (1, 2, 3, 4, 5)
    pool: int = 4
    report_severity: int = 3

    def __post_init__(self) -> None:
        shifts = (self.shifts,) if isinstance(self.shifts, str) else tuple(self.shifts)
        if not shifts:
            raise ValueError("ShiftMix needs at least one shift")
        object.__setattr__(self, "shifts", shifts)
        object.__setattr__(self, "severities", tuple(int(s) for s in self.severities))
        if not 0 <= self.clean < 1:
            raise ValueError(f"ShiftMix.clean is a probability in [0, 1), got {self.clean}")
        if not self.severities:
            raise ValueError("ShiftMix needs at least one severity")
        if int(self.pool) < 1:
            raise ValueError(f"ShiftMix.pool must be >= 1, got {self.pool}")

    def to_dict(self) -> dict[str, Any]:
        """What changes the training data (``report_severity`` does not, so it is left out)."""
        return {"shifts": list(self.shifts), "clean": float(self.clean), "severities": list(self.severities),
                "pool": int(self.pool)}


def as_shift_mix(value: ShiftMix | Sequence[str] | str | None) -> ShiftMix | None:
    """``Suite.train_shifts`` accepts a :class:`ShiftMix` or just the shift names (paper defaults otherwise)."""
    if value is None or isinstance(value, ShiftMix):
        return value
    return ShiftMix(shifts=(value,) if isinstance(value, str) else tuple(value))


__all__ = [
    "PAPER_EPS",
    "PAPER_HELD_OUT",
    "PAPER_TRAIN_SHIFTS",
    "TEST_LABEL",
    "TRAIN_LABEL",
    "Features",
    "ShiftMix",
    "Similarity",
    "as_shift_mix",
]
