"""What every network of a curve costs: parameters and MACs, and for structured methods the measured latency.

Counts are cached by network key; latencies also by the machine
(:func:`robustprune.compute.costs.machine_fingerprint`), so warm runs reuse
them and print the same table. A structured method's networks are compacted
first (:func:`robustprune.compute.compaction.compact`), so their counts and
latencies are those of the physically smaller networks.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from ..compute.compaction import CompactionError
from ..compute.costs import machine_fingerprint, measure_latency, network_costs
from ..compute.store import Store, make_key
from .context import NetworkRecord, ProgressFn

__all__ = ["COSTS_VERSION", "LATENCY_BATCH", "curve_costs"]

COSTS_VERSION = 1  # bump when what costs.py counts or how it times changes
LATENCY_BATCH = 64


def curve_costs(records: Sequence[NetworkRecord], *, structured: bool, store: Store,
                load: Callable[[NetworkRecord], nn.Module], inputs: torch.Tensor, label: str,
                progress: ProgressFn) -> list[dict[str, Any]]:
    """``[parent, step 1, ...]``: params and MACs of each network; for a ``structured`` curve also the latency
    of the compacted networks and of the parent (a batch of ``LATENCY_BATCH`` training inputs), hence the speed-up.

    The method's ``structured`` flag decides, never its name. ``load`` builds a record's network;
    ``label`` names the case in the store's work log.
    """
    machine = machine_fingerprint()
    example = inputs[:2].clone()
    specs = []
    for i, record in enumerate(records):
        compacted = structured and i > 0
        count_spec = {"kind": "costs", "network": record.key, "compacted": compacted, "version": COSTS_VERSION}
        time_spec = ({**count_spec, "kind": "latency", "machine": machine, "batch": LATENCY_BATCH}
                     if structured else None)
        specs.append((record, compacted, count_spec, time_spec))
    pending = sum(1 for _, _, c, t in specs
                  if not store.contains("costs", make_key(c))
                  or (t is not None and not store.contains("costs", make_key(t))))
    if pending:
        what = "compaction, latency" if structured else "parameters, MACs"
        progress(f"costing {pending} networks ({what})")

    def costed(record: NetworkRecord, compacted: bool) -> tuple[dict[str, Any], nn.Module]:
        network = load(record)
        try:
            costs, runnable = network_costs(network, record.masks, example, structured=compacted)
            return {**costs.to_dict(), "note": ""}, runnable
        except CompactionError as exc:  # costs of the masked network instead; accuracy gating is unaffected
            progress(f"compaction failed, costing the masked network: {exc}")
            costs, runnable = network_costs(network, record.masks, example, structured=False)
            return {**costs.to_dict(), "note": f"not compacted: {exc}"}, runnable

    def counted(record: NetworkRecord, compacted: bool) -> dict[str, Any]:
        return costed(record, compacted)[0]

    def timed(record: NetworkRecord, compacted: bool) -> dict[str, Any]:
        _, network = costed(record, compacted)
        return {"seconds": measure_latency(network.to("cpu"), inputs[:LATENCY_BATCH].clone())}

    out: list[dict[str, Any]] = []
    for i, (record, compacted, count_spec, time_spec) in enumerate(specs):
        counts = store.load_or_compute("costs", make_key(count_spec), functools.partial(counted, record, compacted),
                                       count_spec, f"{label} costs of network {i}")
        entry: dict[str, Any] = {"params": int(counts["params"]), "macs": int(counts["macs"])}
        if counts.get("note"):
            entry["note"] = counts["note"]
        if time_spec is not None:
            seconds = store.load_or_compute("costs", make_key(time_spec), functools.partial(timed, record, compacted),
                                            time_spec, f"{label} latency of network {i}")
            entry["latency"] = float(seconds["seconds"])
        out.append(entry)
    if structured:
        for entry in out:
            entry["speedup"] = out[0]["latency"] / entry["latency"] if entry["latency"] > 0 else None
    return out
