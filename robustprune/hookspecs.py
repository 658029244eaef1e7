"""The 0.1 path of the hook specifications: moved to :mod:`robustprune.plugin.hookspecs`.

Re-exports every public name this module had, so plugins written against it keep working.
"""

from .plugin.hookspecs import (
    PROJECT_NAME,
    hookspec,
    robustprune_register_datasets,
    robustprune_register_methods,
    robustprune_register_models,
    robustprune_register_shifts,
)

__all__ = [
    "PROJECT_NAME",
    "hookspec",
    "robustprune_register_datasets",
    "robustprune_register_methods",
    "robustprune_register_models",
    "robustprune_register_shifts",
]
