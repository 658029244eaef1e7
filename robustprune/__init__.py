"""robustprune: gate pruned networks on robustness beyond test accuracy.

The names exported here are the public API for suites and plugins. Importing
this package does not import torch.

PYTEST_DONT_REWRITE: the CLI imports this package before it starts pytest,
and nothing here needs assertion rewriting.
"""

from .api import (
    SEVERITY,
    DatasetRequest,
    DatasetSpec,
    DataSplits,
    ImageSet,
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
    hookimpl,
)
from .beyond import PAPER_EPS, PAPER_HELD_OUT, PAPER_TRAIN_SHIFTS, Features, ShiftMix, Similarity
from .byo import PrunedCheckpoint
from .gate import DeployGate
from .datasource import skip_unless_data
from .suite import Suite, geometric_ratios

__version__ = "0.1.0"

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
    "ImageSet",
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
    "hookimpl",
    "skip_unless_data",
    "__version__",
]
