"""The 0.1 path of channel analysis and allocation.

Moved to :mod:`robustprune.plugin.channels` and :mod:`robustprune.plugin.allocation`; this module
re-exports every public name it had, so plugins written against it keep working.
"""

from .plugin.allocation import allocate_counts, allocate_uniform
from .plugin.channels import ChannelGroup, Consumer, StructureError, channel_groups, channel_masks, explain_channels
from .plugin.masks import RATIO_TOLERANCE, Masks, PruneError, prunable_weights, within_tolerance

__all__ = [
    "ChannelGroup",
    "Consumer",
    "Masks",
    "PruneError",
    "RATIO_TOLERANCE",
    "StructureError",
    "allocate_counts",
    "allocate_uniform",
    "channel_groups",
    "channel_masks",
    "explain_channels",
    "prunable_weights",
    "within_tolerance",
]
