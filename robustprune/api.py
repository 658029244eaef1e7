"""The 0.1 path of the plugin API types: moved to :mod:`robustprune.plugin.api`.

Re-exports every public name this module had, so plugins written against it keep working.
"""

from .plugin.api import (
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
    check_name,
    describe_sequence,
)
from .plugin.hookspecs import PROJECT_NAME, hookimpl

__all__ = [
    "DataSplits",
    "DatasetRequest",
    "DatasetSpec",
    "ImageSet",
    "ModelSpec",
    "PROJECT_NAME",
    "PixelShift",
    "PruneContext",
    "PruneMethod",
    "PublishedShift",
    "Recipe",
    "SEVERITY",
    "ShiftGroup",
    "ShiftParam",
    "ShiftedSet",
    "TensorShift",
    "check_name",
    "describe_sequence",
    "hookimpl",
]
