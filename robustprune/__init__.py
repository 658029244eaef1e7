"""robustprune: gate pruned networks on robustness beyond test accuracy.

The names exported here are the public API for suites and plugins. Importing
this package imports neither torch nor pytest.

PYTEST_DONT_REWRITE: the CLI imports this package before it starts pytest,
and nothing here needs assertion rewriting.
"""

from __future__ import annotations

from typing import Any

from .core.beyond import PAPER_EPS, PAPER_HELD_OUT, PAPER_TRAIN_SHIFTS, Features, ShiftMix, Similarity
from .core.gate import DeployGate
from .core.grids import paper_grid
from .core.suite import PrunedCheckpoint, Suite, geometric_ratios
from .plugin.api import (
    IGNORE_INDEX,
    SEVERITY,
    DatasetRequest,
    DatasetSpec,
    DataSplits,
    ImageSet,
    Metric,
    ModelSpec,
    PixelShift,
    PruneContext,
    PruneMethod,
    PublishedShift,
    Recipe,
    ShiftedSet,
    ShiftGroup,
    ShiftParam,
    TensorShift,
)
from .plugin.errors import MissingDependencyError
from .plugin.hookspecs import hookimpl
from .version import __version__


def __getattr__(name: str) -> Any:
    # skip_unless_data lives in the pytest harness; loaded on first use, so that `import robustprune`
    # (suites, plugins, the CLI) does not import pytest
    if name == "skip_unless_data":
        from .harness.data_skips import skip_unless_data

        return skip_unless_data
    raise AttributeError(f"module 'robustprune' has no attribute {name!r}")


__all__ = [
    "SEVERITY",
    "PAPER_EPS",
    "PAPER_HELD_OUT",
    "PAPER_TRAIN_SHIFTS",
    "DatasetRequest",
    "DatasetSpec",
    "DataSplits",
    "DeployGate",
    "Features",
    "IGNORE_INDEX",
    "ImageSet",
    "Metric",
    "MissingDependencyError",
    "ModelSpec",
    "PixelShift",
    "PrunedCheckpoint",
    "PruneContext",
    "PruneMethod",
    "PublishedShift",
    "Recipe",
    "ShiftedSet",
    "ShiftGroup",
    "ShiftMix",
    "ShiftParam",
    "Similarity",
    "Suite",
    "TensorShift",
    "geometric_ratios",
    "paper_grid",
    "hookimpl",
    "skip_unless_data",
    "__version__",
]
