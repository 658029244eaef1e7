"""Structured pruning of resnet20 and mobilenet_v2: parameters, MACs and measured speed-up, both allocations.

For each network, FT and PFP in the paper's per-layer allocation (``ft``,
``pfp``) and in the grouped one (``ft_grouped``, ``pfp_grouped``) prune the
parent at ratios 0.3, 0.5 and 0.7; each result is compacted
(robustprune.compute.compaction) and costed as the report costs it:
parameters and MACs counted from what the masks remove, and the speed-up
over the parent timed interleaved at batch 1 and 64
(robustprune.compute.costs.compare_latency: median and interquartile range
of per-round ratios).

The latency measurement runs ``--processes`` times (default 3), each in a
fresh Python process, as three fresh stores would; the last columns give
the spread of the median speed-up across them (the largest deviation from
their mean, in percent).

Networks are freshly initialised (speed depends on the shapes, not on the
weights; FT's filter norms then come from the initialisation), PFP's data
are random images. resnet20 runs on 32x32 inputs, mobilenet_v2 (width 1.0,
10 classes) on 64x64 to keep a batch of 64 within a second on one thread.

Usage: python benchmarks/structured_pruning.py [--threads 1] [--processes 3] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
import torchvision

from robustprune import PruneContext
from robustprune.compute.compaction import compact
from robustprune.compute.costs import compare_latency, count_macs, count_params, machine_fingerprint
from robustprune.plugin.channels import channel_groups
from robustprune.plugin.registry import load_registry

RATIOS = (0.3, 0.5, 0.7)
METHODS = ("ft", "pfp", "ft_grouped", "pfp_grouped")
MODELS = {"resnet20": 32, "mobilenet_v2": 64}


def build(model: str) -> torch.nn.Module:
    torch.manual_seed(0)
    if model == "resnet20":
        return load_registry().model("resnet20").item.build(10, (3, 32, 32)).eval()
    return torchvision.models.mobilenet_v2(weights=None, num_classes=10).eval()


def prune_all(model: str) -> tuple[list[dict], list[torch.nn.Module]]:
    """Every (method, ratio) of one model: its costs, and the compacted networks (the parent first)."""
    registry = load_registry()
    size = MODELS[model]
    parent = build(model)
    example = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(1))
    data = torch.randn(32, 3, size, size, generator=torch.Generator().manual_seed(2))
    groups = channel_groups(parent, example)
    parent_params, parent_macs = count_params(parent), count_macs(parent, example)
    rows, networks = [], [parent]
    for name in METHODS:
        method = registry.method(name).item
        for ratio in RATIOS:
            context = PruneContext.for_network(parent, example, data=data if method.data_informed else None)
            context.groups = groups
            masks = method.prune(parent, ratio, context)
            small = compact(parent, masks, example, groups)
            rows.append({"model": model, "method": name, "ratio": ratio,
                         "params": count_params(small.network, small.masks), "parent_params": parent_params,
                         "macs": count_macs(small.network, example, small.masks), "parent_macs": parent_macs})
            networks.append(small.network.eval())
    return rows, networks


def measure(networks_file: str, size: int) -> None:
    """In a fresh process: time the saved networks interleaved; print the timings as JSON."""
    networks = torch.load(networks_file, weights_only=False)
    inputs = torch.randn(64, 3, size, size, generator=torch.Generator().manual_seed(3))
    timings = compare_latency(networks, inputs)
    print(json.dumps([[t.to_dict() for t in per] for per in timings]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1, the harness's)")
    parser.add_argument("--processes", type=int, default=3, help="fresh processes measuring latency (default 3)")
    parser.add_argument("--json", type=Path, help="also write every number to this file")
    parser.add_argument("--measure", nargs=2, metavar=("NETWORKS", "SIZE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.measure:
        return measure(args.measure[0], int(args.measure[1]))

    fingerprint = machine_fingerprint()
    print(f"machine: {fingerprint['cpu']}, {fingerprint['cores']} cores, {platform.python_version()}, "
          f"torch {fingerprint['torch']}, {args.threads} thread(s); latency in {args.processes} fresh processes")
    results = []
    for model, size in MODELS.items():
        rows, networks = prune_all(model)
        with tempfile.TemporaryDirectory() as folder:
            path = os.path.join(folder, "networks.pt")
            torch.save(networks, path)
            runs = []
            for _ in range(args.processes):
                out = subprocess.run([sys.executable, __file__, "--threads", str(args.threads), "--measure", path,
                                      str(size)], check=True, capture_output=True, text=True).stdout
                runs.append(json.loads(out.strip().splitlines()[-1]))
        for i, row in enumerate(rows, start=1):
            for b, batch in enumerate((1, 64)):
                per_run = [run[i][b] for run in runs]
                medians = [t["speedup"] for t in per_run]
                mean = statistics.fmean(medians)
                row[f"batch{batch}"] = {"runs": per_run, "spread_percent": 100 * max(abs(m - mean) for m in medians)
                                        / mean}
        results += rows
        print(f"\n{model} ({size}x{size} inputs)")
        print(f"{'method':<12} {'ratio':>5} {'params k':>15} {'MACs':>6}   {'speed-up batch 1 (IQR)':<24} "
              f"{'spread':>6}   {'speed-up batch 64 (IQR)':<24} {'spread':>6}")
        for row in rows:
            cells = []
            for batch in (1, 64):
                first = row[f"batch{batch}"]["runs"][0]
                cells.append(f"{first['speedup']:.2f}x ({first['speedup_low']:.2f}-{first['speedup_high']:.2f})"
                             f"{'*' if first['within_noise'] else ' '}")
                cells.append(f"±{row[f'batch{batch}']['spread_percent']:.1f}%")
            params = f"{row['params'] / 1000:.1f} / {row['parent_params'] / 1000:.1f}"
            print(f"{row['method']:<12} {row['ratio']:>5} {params:>15} {row['parent_macs'] / row['macs']:>5.2f}x   "
                  f"{cells[0]:<24} {cells[1]:>6}   {cells[2]:<24} {cells[3]:>6}")
    worst = max(r[f"batch{b}"]["spread_percent"] for r in results for b in (1, 64))
    print(f"\nspeed-up: first process's median (interquartile range over rounds; * = within noise); spread = the "
          f"largest deviation of a process's median from the mean of the {args.processes} processes; worst: "
          f"±{worst:.1f}%")
    if args.json:
        args.json.write_text(json.dumps({"machine": fingerprint, "threads": args.threads, "rows": results}, indent=1))


if __name__ == "__main__":
    main()
