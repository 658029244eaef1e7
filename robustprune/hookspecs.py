"""Moved to :mod:`robustprune.plugin.hookspecs` (the hook specifications).

This old import path re-exports it, so third-party plugins written against it keep working.
"""

from .plugin.hookspecs import *  # noqa: F403
from .plugin.hookspecs import __all__  # noqa: F401
