"""The 0.1 path of helpers for dataset plugins: moved to :mod:`robustprune.plugin.datafiles`.

Re-exports every public name this module had, so plugins written against it keep working.
"""

from .plugin.datafiles import DataFileError, stratified_subset, subset_size

__all__ = ["DataFileError", "stratified_subset", "subset_size"]
