"""What every network of a curve costs: parameters and MACs, and for structured methods the measured speed-up.

Counts are cached by network key. The latencies of a structured curve (the
parent and every compacted network) are measured together, interleaved
(:func:`robustprune.compute.costs.compare_latency`), and cached as one entry
by the curve's network keys and the machine
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
from ..compute.costs import LATENCY_BATCHES, compare_latency, machine_fingerprint, network_costs
from ..compute.store import Store, make_key
from .context import NetworkRecord, ProgressFn

__all__ = ["COSTS_VERSION", "LATENCY_BATCHES", "LATENCY_VERSION", "THROUGHPUT_BATCH", "curve_costs"]

COSTS_VERSION = 2  # bump when what costs.py counts or compaction.py cuts changes (2: depthwise, concatenations)
LATENCY_VERSION = 2  # bump when how latency is timed changes (2: interleaved, per-round ratios, batch 1 and 64)
THROUGHPUT_BATCH = max(LATENCY_BATCHES)
"""The batch whose speed-up is the row's ``speedup`` (the report shows every batch's)."""


def curve_costs(records: Sequence[NetworkRecord], *, structured: bool, store: Store,
                load: Callable[[NetworkRecord], nn.Module], inputs: torch.Tensor, label: str,
                progress: ProgressFn, time_latency: bool = True) -> list[dict[str, Any]]:
    """``[parent, step 1, ...]``: params and MACs of each network; for a ``structured`` curve also the latency of
    the parent and of the compacted networks, timed interleaved at batch 1 and 64 (training inputs), and each
    network's speed-up over the parent with its interquartile range (``timing``: one entry per batch;
    ``latency`` and ``speedup``: the throughput batch's).

    The method's ``structured`` flag decides, never its name. ``load`` builds a record's network;
    ``label`` names the case in the store's work log. ``time_latency=False`` (``Suite(latency=False)``) skips
    the timing: a structured curve's networks are still compacted and counted, and carry ``timed: False``.
    """
    specs = []
    for i, record in enumerate(records):
        compacted = structured and i > 0
        specs.append((record, compacted, {"kind": "costs", "network": record.key, "compacted": compacted,
                                          "version": COSTS_VERSION}))
    timed = structured and time_latency
    time_spec = ({"kind": "latency", "networks": [[r.key, c] for r, c, _ in specs], "machine": machine_fingerprint(),
                  "batches": list(LATENCY_BATCHES), "version": LATENCY_VERSION} if timed else None)
    time_key = make_key(time_spec) if time_spec is not None else None
    timing_pending = time_key is not None and not store.contains("costs", time_key)
    pending = sum(1 for _, _, c in specs if not store.contains("costs", make_key(c)))
    if pending or timing_pending:
        what = ("parameters, MACs" if not structured else "compaction, latency not timed" if not timed
                else f"compaction, {len(records)} networks timed interleaved")
        progress(f"costing {pending or len(records)} networks ({what})")

    def costed(record: NetworkRecord, compacted: bool) -> tuple[dict[str, Any], nn.Module]:
        network = load(record)
        try:
            costs, runnable = network_costs(network, record.masks, example, structured=compacted)
            return {**costs.to_dict(), "note": ""}, runnable
        except CompactionError as exc:  # costs of the masked network instead; accuracy gating is unaffected
            progress(f"compaction failed, costing the masked network: {exc}")
            costs, runnable = network_costs(network, record.masks, example, structured=False)
            return {**costs.to_dict(), "note": f"not compacted: {exc}"}, runnable

    # a cold curve's networks, as counting loaded (and compacted) them: timing reuses them instead of
    # loading and compacting each network again (kept only while the timing is still to be measured)
    runnables: dict[int, nn.Module] = {}

    def counted(index: int, record: NetworkRecord, compacted: bool) -> dict[str, Any]:
        costs, runnable = costed(record, compacted)
        if timing_pending:
            runnables[index] = runnable
        return costs

    def measure_latency() -> dict[str, Any]:
        networks = [runnables[i] if i in runnables else costed(record, compacted)[1]
                    for i, (record, compacted, _) in enumerate(specs)]
        timings = compare_latency(networks, inputs[:THROUGHPUT_BATCH].clone())
        return {"timing": [[t.to_dict() for t in per_network] for per_network in timings]}

    example = inputs[:2].clone()
    out: list[dict[str, Any]] = []
    for i, (record, compacted, count_spec) in enumerate(specs):
        counts = store.load_or_compute("costs", make_key(count_spec),
                                       functools.partial(counted, i, record, compacted), count_spec,
                                       f"{label} costs of network {i}")
        entry: dict[str, Any] = {"params": int(counts["params"]), "macs": int(counts["macs"])}
        if counts.get("note"):
            entry["note"] = counts["note"]
        if structured and not timed:
            entry["timed"] = False
        out.append(entry)
    if time_spec is not None and time_key is not None:
        measured = store.load_or_compute("costs", time_key, measure_latency, time_spec, f"{label} latency")
        runnables.clear()
        for entry, timing in zip(out, measured["timing"]):
            throughput = next(t for t in timing if t["batch"] == THROUGHPUT_BATCH)
            entry.update(timing=timing, latency=float(throughput["seconds"]), speedup=float(throughput["speedup"]))
    return out
