"""The 0.1 path of parameter, MAC and latency counts: moved to :mod:`robustprune.compute.costs`.

Re-exports every public name this module had, so plugins written against it keep working.
"""

from .compute.costs import (
    NetworkCosts,
    count_macs,
    count_params,
    inference_form,
    machine_fingerprint,
    measure_latency,
    network_costs,
)
from .plugin.masks import prunable_weights

__all__ = [
    "NetworkCosts",
    "count_macs",
    "count_params",
    "inference_form",
    "machine_fingerprint",
    "measure_latency",
    "network_costs",
    "prunable_weights",
]
