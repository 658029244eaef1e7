"""Moved to :mod:`robustprune.compute.costs` (parameter, MAC and latency counts).

This old import path re-exports it, so third-party plugins written against it keep working.
"""

from .compute.costs import *  # noqa: F403
from .compute.costs import __all__  # noqa: F401
