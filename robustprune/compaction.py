"""Moved to :mod:`robustprune.compute.compaction` (compaction of structured results).

This old import path re-exports it, so third-party plugins written against it keep working.
"""

from .compute.compaction import *  # noqa: F403
from .compute.compaction import __all__  # noqa: F401
