"""The 0.1 path of data-informed sensitivities: moved to :mod:`robustprune.plugin.sensitivity`.

Re-exports every public name this module had, so plugins written against it keep working.
"""

from .plugin.api import PruneMethod
from .plugin.masks import PruneError, prunable_weights
from .plugin.sensitivity import (
    LayerInfo,
    SampledSensitivityMethod,
    input_channel_sensitivities,
    layer_info,
    sample_size,
    weight_sensitivities,
)

__all__ = [
    "LayerInfo",
    "PruneError",
    "PruneMethod",
    "SampledSensitivityMethod",
    "input_channel_sensitivities",
    "layer_info",
    "prunable_weights",
    "sample_size",
    "weight_sensitivities",
]
