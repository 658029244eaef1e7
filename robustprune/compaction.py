"""The 0.1 path of compaction of structured results: moved to :mod:`robustprune.compute.compaction`.

Re-exports every public name this module had, so plugins written against it keep working.
"""

from .compute.compaction import Compacted, CompactionError, compact, removable_channels
from .plugin.channels import ChannelGroup, channel_groups
from .plugin.masks import Masks, PruneError, apply_masks, prunable_weights

__all__ = [
    "ChannelGroup",
    "Compacted",
    "CompactionError",
    "Masks",
    "PruneError",
    "apply_masks",
    "channel_groups",
    "compact",
    "prunable_weights",
    "removable_channels",
]
