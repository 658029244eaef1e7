"""robustprune: gate pruned networks on robustness beyond test accuracy.

The names exported here are the public API for suites and plugins. Importing
this package does not import torch.
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
    Recipe,
    ShiftGroup,
    ShiftParam,
    TensorShift,
    hookimpl,
)
from .suite import Suite, geometric_ratios

__version__ = "0.1.0"

__all__ = [
    "SEVERITY",
    "DatasetRequest",
    "DatasetSpec",
    "DataSplits",
    "ImageSet",
    "ModelSpec",
    "PixelShift",
    "PruneContext",
    "PruneMethod",
    "Recipe",
    "ShiftGroup",
    "ShiftParam",
    "Suite",
    "TensorShift",
    "geometric_ratios",
    "hookimpl",
    "__version__",
]
