"""Moved: channel analysis to :mod:`robustprune.plugin.channels`, allocation to :mod:`robustprune.plugin.allocation`.

This old import path re-exports both, so third-party plugins written against it keep working.
"""

from .plugin.allocation import *  # noqa: F403
from .plugin.allocation import __all__ as _allocation_names
from .plugin.channels import *  # noqa: F403
from .plugin.channels import __all__ as _channel_names

__all__ = [*_channel_names, *_allocation_names]
