"""Does compaction turn removed FLOPs into CPU speed? resnet20, 32x32 inputs, batch 64.

Prunes resnet20 with FT and PFP at ratios 0.3, 0.5 and 0.7, compacts each
result (robustprune.compute.compaction) and prints, against the parent measured in the
same run: the reduction in multiply-accumulates, the measured latency speed-up
and their quotient (the aim: a speed-up of at least 70 % of the MAC
reduction). Every network is timed in its inference form (batch norms folded
into the convs, channels-last layout; robustprune.compute.costs.inference_form), as
the engine does. Each forward pass of a network is timed right after one of
the parent, and the speed-up is the median of these paired ratios: a slow
spell on a shared machine hits both halves of a pair alike. Latencies are
medians too.

The network is freshly initialised (speed depends on the shapes, not on the
weights) and PFP's data are digits training images (the bundled dataset).

Usage: python benchmarks/compaction_speedup.py [--threads 1] [--runs 60]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import torch

from robustprune import DatasetRequest, PruneContext
from robustprune.compute.compaction import compact
from robustprune.compute.costs import count_macs, count_params, inference_form, machine_fingerprint
from robustprune.compute.data import prepare
from robustprune.plugin.masks import full_masks, validate_masks
from robustprune.plugin.registry import load_registry

RATIOS = (0.3, 0.5, 0.7)
METHODS = ("ft", "pfp")
BATCH = 64


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    parser.add_argument("--runs", type=int, default=60, help="timed (parent, network) pairs per network")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    registry = load_registry()
    splits = registry.dataset("digits").item.load(DatasetRequest(seed=0))
    data = prepare("digits", "benchmark", splits)
    torch.manual_seed(0)
    parent = registry.model("resnet20").item.build(splits.num_classes, splits.input_shape).eval()
    example = data.train_inputs[:2]
    inputs = data.train_inputs[:BATCH].clone()

    networks = {"parent": parent}
    macs = {"parent": count_macs(parent, example)}
    params = {"parent": count_params(parent)}
    for name in METHODS:
        method = registry.method(name).item
        size = method.data_size(parent, example) if method.data_informed else 0
        for ratio in RATIOS:
            context = PruneContext(masks=full_masks(parent), generator=torch.Generator().manual_seed(0),
                                   example_input=example, data=data.train_inputs[:size] if size else None,
                                   _network=parent)
            masks, achieved = validate_masks(method.prune(parent, ratio, context), full_masks(parent), ratio, name)
            small = compact(parent, masks, example)
            label = f"{name} {ratio:g}"
            networks[label] = small.network.eval()
            macs[label] = count_macs(small.network, example, small.masks)
            params[label] = count_params(small.network, small.masks)

    # time what a CPU deployment runs: batch norms folded, channels-last (the engine's latency does the same)
    timed = {label: inference_form(network) for label, network in networks.items()}
    inputs = inputs.contiguous(memory_format=torch.channels_last)

    def seconds(network: torch.nn.Module) -> float:
        started = time.perf_counter()
        network(inputs)
        return time.perf_counter() - started

    times: dict[str, list[float]] = {label: [] for label in networks}
    ratios: dict[str, list[float]] = {label: [] for label in networks}
    with torch.inference_mode():
        for network in timed.values():  # warm-up: allocator, oneDNN kernels
            for _ in range(3):
                network(inputs)
        for _ in range(args.runs):
            for label, network in timed.items():
                # the parent right before each network: a slow spell on a shared machine hits both
                parent_time, network_time = seconds(timed["parent"]), seconds(network)
                times[label].append(network_time)
                ratios[label].append(parent_time / network_time)
    latency = {label: statistics.median(values) for label, values in times.items()}
    speedups = {label: statistics.median(values) for label, values in ratios.items()}

    machine = machine_fingerprint()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"machine: {machine['cpu']}, {cores} cores, torch {machine['torch']}, {machine['threads']} thread(s), "
          f"Python {platform.python_version()}")
    print(f"resnet20, input 3x32x32, batch {BATCH}; {args.runs} paired runs per network, "
          f"batch norms folded, channels-last\n")
    print(f"{'network':<10} {'params':>8} {'MMACs/img':>10} {'median ms':>10} {'MAC red.':>9} {'speed-up':>9} "
          f"{'speed-up / MAC red.':>20}")
    for label in networks:
        reduction = macs["parent"] / macs[label]
        print(f"{label:<10} {params[label]:>8} {macs[label] / 1e6:>10.2f} {latency[label] * 1e3:>10.1f} "
              f"{reduction:>8.2f}x {speedups[label]:>8.2f}x {speedups[label] / reduction:>19.0%}")


if __name__ == "__main__":
    main()
