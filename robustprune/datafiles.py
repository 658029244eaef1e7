"""Moved to :mod:`robustprune.plugin.datafiles` (helpers for dataset plugins).

This old import path re-exports it, so third-party plugins written against it keep working.
"""

from .plugin.datafiles import *  # noqa: F403
from .plugin.datafiles import __all__  # noqa: F401
