"""The paper's ratio grids, derived from their definition in the paper's configs (torchprune, paper/lost/param/).

A config lists *keep* ratios in segments (``geometric`` or ``linear``
spacing from a maximum down to a minimum, with a number of points each) and
``retrainIterations``: the list is split into that many consecutive chunks
(``numpy.array_split``'s rule: the first ``len % n`` chunks get one point
more), and the cascade retrains at the last point of every chunk; the
points before it are pruned to without retraining. ``-1`` retrains at every
point. The prune ratios a suite evaluates are the retrained points'
``1 - keep``.

robustprune prunes straight from one retrained ratio to the next: the
intermediate prune-only steps change nothing for a global threshold (WT)
and little for the data-informed methods (docs/confidence.md#the-papers-grids).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["PAPER_GRIDS", "PaperGrid", "Spacing", "paper_grid"]


@dataclass(frozen=True)
class Spacing:
    """One segment of keep ratios: ``points`` from ``maximum`` down to ``minimum``, geometric or linear."""

    kind: str  # "geometric" or "linear"
    points: int
    maximum: float
    minimum: float

    def keep_ratios(self) -> list[float]:
        if self.points < 1 or not 0 < self.minimum <= self.maximum < 1:
            raise ValueError(f"a spacing needs points >= 1 and 0 < minimum <= maximum < 1, got {self}")
        if self.points == 1:
            return [self.maximum]
        steps = range(self.points)
        if self.kind == "geometric":
            ratio = math.log(self.minimum / self.maximum) / (self.points - 1)
            values = [self.maximum * math.exp(ratio * i) for i in steps]
        elif self.kind == "linear":
            values = [self.maximum + (self.minimum - self.maximum) * i / (self.points - 1) for i in steps]
        else:
            raise ValueError(f"spacing kind must be 'geometric' or 'linear', got {self.kind!r}")
        values[-1] = self.minimum  # the end points exactly, as numpy's geomspace/linspace give them
        values[0] = self.maximum
        return values


@dataclass(frozen=True)
class PaperGrid:
    """A network's grid as the paper's config defines it."""

    network: str
    spacing: tuple[Spacing, ...]
    retrain_iterations: int  # -1: retrain at every point

    def keep_ratios(self) -> list[float]:
        """Every keep ratio of the spacing, from the largest down."""
        return [keep for segment in self.spacing for keep in segment.keep_ratios()]

    def chunks(self) -> list[list[float]]:
        """The keep ratios split into the cascade's chunks; each ends at a retrained point."""
        keeps = self.keep_ratios()
        count = len(keeps) if self.retrain_iterations < 1 else self.retrain_iterations
        if count > len(keeps):
            raise ValueError(f"{self.network}: {count} retrain iterations for {len(keeps)} keep ratios")
        size, extra = divmod(len(keeps), count)
        out, start = [], 0
        for i in range(count):
            end = start + size + (1 if i < extra else 0)
            out.append(keeps[start:end])
            start = end
        return out

    @property
    def ratios(self) -> tuple[float, ...]:
        """The prune ratios the cascade retrains at (ascending, rounded to 6 decimals)."""
        return tuple(sorted(round(1 - chunk[-1], 6) for chunk in self.chunks()))


def _grid(network: str, retrain: int, *segments: tuple[str, int, float, float]) -> PaperGrid:
    return PaperGrid(network, tuple(Spacing(*segment) for segment in segments), retrain)


# The definitions, as the paper's configs under torchprune's paper/lost/param/ state them.
PAPER_GRIDS: dict[str, PaperGrid] = {
    "resnet20": _grid("resnet20", 23, ("geometric", 2, 0.99, 0.855), ("geometric", 58, 0.85, 0.15),
                      ("linear", 9, 0.132, 0.02)),
    "resnet56": _grid("resnet56", 20, ("geometric", 2, 0.99, 0.855), ("geometric", 58, 0.85, 0.02)),
    "resnet110": _grid("resnet110", 20, ("geometric", 2, 0.99, 0.855), ("geometric", 58, 0.85, 0.02)),
    "vgg16_bn": _grid("vgg16_bn", 20, ("geometric", 2, 0.99, 0.855), ("geometric", 58, 0.85, 0.02)),
    "densenet22": _grid("densenet22", 22, ("geometric", 2, 0.99, 0.855), ("geometric", 58, 0.85, 0.10),
                        ("linear", 6, 0.0918, 0.0469)),
    "wrn16_8": _grid("wrn16_8", 23, ("geometric", 2, 0.99, 0.855), ("geometric", 58, 0.85, 0.10),
                     ("linear", 9, 0.09182, 0.02)),
    "resnet18": _grid("resnet18", -1, ("geometric", 12, 0.90, 0.35), ("linear", 6, 0.31, 0.10)),
    "resnet101": _grid("resnet101", -1, ("geometric", 12, 0.90, 0.35), ("linear", 4, 0.31, 0.184)),
    "deeplabv3_resnet50": _grid("deeplabv3_resnet50", -1, ("geometric", 10, 0.8, 0.1), ("geometric", 5, 0.08, 0.03)),
    # robust training on CIFAR-10-C mixes (paper/lost/param/cifar_c/): every network alike
    "cifar_c": _grid("cifar_c", -1, ("geometric", 16, 0.80, 0.03)),
}


def paper_grid(network: str) -> tuple[float, ...]:
    """The prune ratios the paper's cascade retrains at for ``network`` (``"resnet20"``: 23 ratios, 0.85 among
    them); ``"cifar_c"`` is the robust-training grid. Unknown names list the known ones."""
    if network not in PAPER_GRIDS:
        raise ValueError(f"no paper grid for {network!r}; grids: {', '.join(PAPER_GRIDS)}")
    return PAPER_GRIDS[network].ratios
