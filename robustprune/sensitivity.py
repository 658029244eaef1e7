"""Moved to :mod:`robustprune.plugin.sensitivity` (data-informed sensitivities).

This old import path re-exports it, so third-party plugins written against it keep working.
"""

from .plugin.sensitivity import *  # noqa: F403
from .plugin.sensitivity import __all__  # noqa: F401
