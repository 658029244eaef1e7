"""Moved to :mod:`robustprune.plugin.api` (the plugin API types).

This old import path re-exports it, so third-party plugins written against it keep working.
"""

from .plugin.api import *  # noqa: F403
from .plugin.api import __all__  # noqa: F401
