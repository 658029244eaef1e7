"""The 0.1 path of masks and ratio accounting: moved to :mod:`robustprune.plugin.masks`.

Re-exports every public name this module had, so plugins written against it keep working.
"""

from .plugin.masks import (
    RATIO_TOLERANCE,
    Masks,
    PruneError,
    apply_masks,
    count_nonzero_prunable,
    count_parameters,
    full_masks,
    global_top_masks,
    prunable_weights,
    ratio_of,
    validate_masks,
    within_tolerance,
)

__all__ = [
    "Masks",
    "PruneError",
    "RATIO_TOLERANCE",
    "apply_masks",
    "count_nonzero_prunable",
    "count_parameters",
    "full_masks",
    "global_top_masks",
    "prunable_weights",
    "ratio_of",
    "validate_masks",
    "within_tolerance",
]
