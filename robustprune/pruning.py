"""Moved to :mod:`robustprune.plugin.masks` (masks and ratio accounting).

This old import path re-exports it, so third-party plugins written against it keep working.
"""

from .plugin.masks import *  # noqa: F403
from .plugin.masks import __all__  # noqa: F401
