"""How sure a number is: per-repeat values, Student's t over repeats, a paired bootstrap over test images.

Every number robustprune reports is a statistic of one trained network's
curve on one test set: a prune potential, an accuracy loss, a delta excess
error. With ``Suite(repeats=R)`` there are R independently trained parents
and cascades, and the evaluations keep per-image statistics, so each number
has two independent sources of uncertainty, both measured:

- training: the spread over repeats (``values``: the statistic on each
  repeat's curve on the whole test set; ``std``). Every repeat is read on
  the same test set, so this spread is training's alone. Its share of the
  interval is Student's t interval of a mean of R values (the percentile
  bootstrap over 3 repeats has 10 distinct resamples and underestimates
  their variance by a third: measured too narrow, see docs/confidence.md);
- the finite test set: a paired bootstrap over test images, the same
  resampled images for the parent and every pruned network (and for every
  shift of the same images). Replicate ``b`` is the mean over repeats of the
  statistic read on image resample ``b``.

The interval adds the two half-widths in quadrature, side by side (the
image bootstrap may be skewed). The point estimate is the mean over repeats
(what the paper reports). Everything is seeded, so intervals are
reproducible.

A statistic is carried as a :class:`PerRepeat`: its value on each repeat
(whole test set) and on each image resample. Combining per-repeat
statistics element-wise (the min over a group's members, a difference)
combines them within each repeat and resample, as the definitions ask.

The engine does the heavy part (accuracies on every image resample, a
matrix product); what is left here is vectorized over the resamples with
numpy, imported on first use: pytest imports this package at start-up in
every session, also those that run no suite.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:  # pragma: no cover
    from numpy.typing import NDArray

__all__ = ["Estimate", "PerRepeat", "Reducer", "Resampling", "percentile", "student_t_quantile"]

Reducer = Literal["min", "max", "mean"]
"""How :meth:`PerRepeat.combine` reduces statistics: their minimum, maximum or mean."""


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-quantile (0..1) of ``values``, linearly interpolated between order statistics (numpy's default)."""
    if not values:
        raise ValueError("percentile of no values")
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def _normal_cdf(x: float) -> float:
    return 0.5 * (1 + math.erf(x / math.sqrt(2)))


def _student_t_cdf(t: float, df: int) -> float:
    """P(T <= t) for Student's t with an integer ``df`` >= 1 (Abramowitz and Stegun 26.7.3 and 26.7.4)."""
    theta = math.atan(abs(t) / math.sqrt(df))
    cos2 = math.cos(theta) ** 2
    if df % 2:  # odd: 2/pi (theta + sin cos (1 + 2/3 cos^2 + 2*4/(3*5) cos^4 + ...))
        term, total = 1.0, 1.0 if df > 1 else 0.0
        for k in range(1, (df - 1) // 2):
            term *= 2 * k / (2 * k + 1) * cos2
            total += term
        inside = 2 / math.pi * (theta + math.sin(theta) * math.cos(theta) * total)
    else:  # even: sin (1 + 1/2 cos^2 + 1*3/(2*4) cos^4 + ...)
        term, total = 1.0, 1.0
        for k in range(1, df // 2):
            term *= (2 * k - 1) / (2 * k) * cos2
            total += term
        inside = math.sin(theta) * total
    return 0.5 + math.copysign(0.5 * inside, t)


@functools.lru_cache(maxsize=256)
def student_t_quantile(q: float, df: int) -> float:
    """The ``q``-quantile of Student's t with ``df`` degrees of freedom (bisection on the exact CDF)."""
    if not 0 < q < 1 or df < 1:
        raise ValueError(f"need 0 < q < 1 and df >= 1, got q={q}, df={df}")
    if q < 0.5:
        return -student_t_quantile(1 - q, df)
    low, high = 0.0, 1.0
    while _student_t_cdf(high, df) < q:
        high *= 2
    for _ in range(200):
        middle = (low + high) / 2
        if _student_t_cdf(middle, df) < q:
            low = middle
        else:
            high = middle
    return (low + high) / 2


@dataclass(frozen=True)
class Resampling:
    """The uncertainty plan of a suite: ``repeats`` repeats, ``samples`` image resamples, intervals at ``level``.

    The image resamples themselves are the engine's
    (``robustprune.engine.bootstrap``, seeded by the suite's seed).
    ``samples=0`` turns the image bootstrap off: numbers then carry the
    spread over repeats only.
    """

    repeats: int
    samples: int
    level: float

    def __post_init__(self) -> None:
        if self.repeats < 1:
            raise ValueError(f"repeats must be >= 1, got {self.repeats}")
        if self.samples < 0:
            raise ValueError(f"bootstrap samples must be >= 0, got {self.samples}")
        if not 0 < self.level < 1:
            raise ValueError(f"confidence level must be in (0, 1), got {self.level}")

    def estimate(self, statistic: PerRepeat) -> Estimate:
        """The statistic's point estimate, per-repeat values and image-bootstrap replicates of their mean."""
        if len(statistic.values) != self.repeats:
            raise ValueError(f"{len(statistic.values)} per-repeat values for {self.repeats} repeats")
        replicates: tuple[float, ...] = ()
        if self.samples and statistic.replicates is not None:
            import numpy as np

            rows = np.stack([np.asarray(row, dtype=float) for row in statistic.replicates])  # (repeats, samples)
            replicates = tuple(rows.mean(axis=0).tolist())
        return Estimate(tuple(statistic.values), replicates, self.level, statistic.draws, statistic.limits)


@dataclass(frozen=True, eq=False)
class PerRepeat:
    """A statistic on each repeat: ``values[r]`` on the whole test set, ``replicates[r][b]`` on image resample ``b``.

    ``replicates`` is ``None`` without a bootstrap; each row is a numpy array
    (or any sequence of floats). Under a noise shift evaluated with several
    noise draws, ``values[r]`` is the mean over draws (the paper's estimator)
    and ``draws[r]`` holds the statistic on each draw; ``draws`` is ``None``
    when nothing was drawn more than once.
    """

    values: tuple[float, ...]
    replicates: tuple[Sequence[float] | NDArray[Any], ...] | None = None
    draws: tuple[tuple[float, ...], ...] | None = None
    limits: tuple[float, float] | None = None  # the values the statistic can take (an interval is clipped to it)

    @classmethod
    def combine(cls, parts: Sequence[PerRepeat], how: Reducer) -> PerRepeat:
        """The ``how`` (min, max or mean) of ``parts`` within each repeat and replicate (the min over a group's
        members, ...); within each draw too, when every part has the same number of draws."""
        if not parts:
            raise ValueError("nothing to combine")
        if how not in _REDUCERS:
            raise ValueError(f"unknown reducer {how!r}; use one of {', '.join(_REDUCERS)}")
        reduce = _REDUCERS[how]
        values = tuple(reduce([p.values[r] for p in parts]) for r in range(len(parts[0].values)))
        replicates = None
        if all(p.replicates is not None for p in parts):
            import numpy as np

            stacked = [np.stack([np.asarray(p.replicates[r], dtype=float) for p in parts])  # type: ignore[index]
                       for r in range(len(values))]
            replicates = tuple(getattr(np, how)(rows, axis=0) for rows in stacked)
        draws = None
        shapes = {None if p.draws is None else tuple(map(len, p.draws)) for p in parts}
        if len(shapes) == 1 and None not in shapes:
            draws = tuple(tuple(reduce([p.draws[r][d] for p in parts])  # type: ignore[index]
                                for d in range(len(parts[0].draws[r])))  # type: ignore[index]
                          for r in range(len(values)))
        limits = None  # a min, max or mean of values within limits stays within their union
        if all(p.limits is not None for p in parts):
            limits = (min(p.limits[0] for p in parts), max(p.limits[1] for p in parts))  # type: ignore[index]
        return cls(values, replicates, draws, limits)


def _mean(values: Sequence[float]) -> float:
    return math.fsum(values) / len(values)


_REDUCERS: dict[str, Callable[[Sequence[float]], float]] = {"min": min, "max": max, "mean": _mean}


@dataclass(frozen=True)
class Estimate:
    """A number with its spread: the per-repeat values and the image-bootstrap replicates of their mean."""

    values: tuple[float, ...]
    replicates: tuple[float, ...]
    level: float
    draws: tuple[tuple[float, ...], ...] | None = None  # per repeat, the value on each noise draw
    limits: tuple[float, float] | None = None  # the range the number can take: intervals end inside it

    @property
    def point(self) -> float:
        """The mean over repeats: the number reported and compared.

        Rounded to 12 decimals: the mean of three 0.35s is 0.3499999999999999 in binary, and a check
        ``>= 0.35`` on a grid value every repeat reached must pass."""
        return round(math.fsum(self.values) / len(self.values), 12)

    @property
    def repeats(self) -> int:
        return len(self.values)

    @property
    def std(self) -> float:
        """The sample standard deviation over repeats (0 with one repeat)."""
        if len(self.values) < 2:
            return 0.0
        mean = self.point
        return math.sqrt(math.fsum((v - mean) ** 2 for v in self.values) / (len(self.values) - 1))

    @property
    def draw_std(self) -> float | None:
        """How much the noise draws differ: the standard deviation over draws within a repeat, pooled over
        repeats; ``None`` when nothing was drawn more than once."""
        if self.draws is None or all(len(row) < 2 for row in self.draws):
            return None
        squares, freedom = 0.0, 0
        for row in self.draws:
            mean = math.fsum(row) / len(row)
            squares += math.fsum((v - mean) ** 2 for v in row)
            freedom += len(row) - 1
        return math.sqrt(squares / freedom)

    def interval(self, level: float | None = None) -> tuple[float, float]:
        """The two-sided interval at ``level`` (default: the suite's): Student's t over repeats and the image
        bootstrap's percentiles, added in quadrature on each side; the point itself when neither exists."""
        level = self.level if level is None else level
        if not 0 < level < 1:
            raise ValueError(f"level must be in (0, 1), got {level}")
        tail = (1 - level) / 2
        return self._side(tail, "lower"), self._side(tail, "upper")

    def lower(self, level: float | None = None) -> float:
        """The lower end of :meth:`interval`."""
        return self.interval(level)[0]

    def upper(self, level: float | None = None) -> float:
        """The upper end of :meth:`interval`."""
        return self.interval(level)[1]

    def bound(self, level: float, side: str) -> float:
        """A one-sided bound at ``level``: ``"upper"`` is exceeded by the statistic with probability
        ``1 - level``, ``"lower"`` likewise from below (what a gate with a confidence compares)."""
        if side not in ("upper", "lower"):
            raise ValueError(f"side must be 'upper' or 'lower', got {side!r}")
        if not 0 < level < 1:
            raise ValueError(f"level must be in (0, 1), got {level}")
        return self._side(1 - level, side)

    def _side(self, tail: float, side: str) -> float:
        """The end of an interval that leaves probability ``tail`` beyond it on ``side``."""
        point = self.point
        training = 0.0
        if self.repeats > 1:
            training = student_t_quantile(1 - tail, self.repeats - 1) * self.std / math.sqrt(self.repeats)
        images = 0.0
        if self.replicates:
            quantile = percentile(self.replicates, tail if side == "lower" else 1 - tail)
            images = max(0.0, point - quantile if side == "lower" else quantile - point)
        width = math.hypot(training, images)
        end = point - width if side == "lower" else point + width
        if self.limits is not None:  # a symmetric t interval can reach past what the number can be
            end = min(max(end, self.limits[0]), self.limits[1])
        return end

    def to_dict(self) -> dict[str, object]:
        """The report's JSON form: mean, std, per-repeat values and the interval at the suite's level."""
        low, high = self.interval()
        out: dict[str, object] = {"mean": self.point, "std": self.std, "values": list(self.values),
                                  "interval": [low, high], "level": self.level}
        if self.draws is not None:
            out["draws"] = [list(row) for row in self.draws]
            out["draw_std"] = self.draw_std
        return out
