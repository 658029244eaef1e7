"""How much does the quickstart's speed-up column move between measurements? FT and PFP, batch 1 and 64.

Runs the quickstart once into a store (or uses ``--store``, already run),
then ``--rounds`` times: removes only the stored latency measurements and
runs the suite again, so every round re-times the same networks in a fresh
process, as a fresh store would (nothing else is recomputed). Prints each
structured method's gate speed-up per round (median and interquartile range)
and the spread of the medians across rounds (the largest deviation from
their mean).

Usage: python benchmarks/latency_repeatability.py [--store DIR] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from robustprune.compute.costs import machine_fingerprint
from robustprune.compute.store import Store


def run_quickstart(store: Path, report: Path) -> dict:
    result = subprocess.run([sys.executable, "-m", "robustprune.cli", "run", "--store", str(store), "--report",
                             str(report), "-q"], capture_output=True, text=True)
    if result.returncode not in (0, 1):
        sys.stderr.write(result.stdout[-3000:] + result.stderr[-3000:])
        raise SystemExit(f"quickstart exited {result.returncode}")
    return json.loads((report / "robustprune-report.json").read_text())


def forget_latencies(store: Path) -> int:
    """Delete the stored latency measurements (and nothing else); returns how many."""
    opened, removed = Store(store), 0
    for kind, key, path in list(opened.entries()):
        record = opened.load_record(kind, key) if kind == "costs" else None
        if record is not None and record.get("spec", {}).get("kind") == "latency":
            path.unlink()
            removed += 1
    return removed


def gate_speedups(report: dict) -> dict[tuple[str, int], dict]:
    out = {}
    for table in report["suites"][0]["tables"]:
        for row in table["rows"]:
            for entry in (row.get("gate_costs") or {}).get("speedups") or []:
                out[(row["method"], entry["batch"])] = entry
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", type=Path, help="a store the quickstart already ran in (else a temporary one)")
    parser.add_argument("--rounds", type=int, default=3, help="fresh latency measurements (default 3)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        store = args.store or Path(tmp) / "store"
        if args.store is None:
            run_quickstart(store, Path(tmp) / "report-cold")
        rounds = []
        for r in range(args.rounds):
            if not forget_latencies(store):
                raise SystemExit(f"no latency measurements in {store}: run the quickstart there first")
            rounds.append(gate_speedups(run_quickstart(store, Path(tmp) / f"report-{r}")))
    fingerprint = machine_fingerprint()
    print(f"machine: {fingerprint['cpu']}, {fingerprint['cores']} cores, Python {platform.python_version()}, "
          f"torch {fingerprint['torch']}; {args.rounds} fresh latency measurements of the same networks")
    for key in sorted(rounds[0]):
        medians = [r[key]["speedup"] for r in rounds]
        mean = statistics.fmean(medians)
        cells = "  ".join(f"{m[key]['speedup']:.2f}x ({m[key]['low']:.2f}-{m[key]['high']:.2f})"
                          for m in rounds)
        spread = 100 * max(abs(m - mean) for m in medians) / mean
        print(f"{key[0]:<6} batch {key[1]:<3} {cells}   spread ±{spread:.1f}%")


if __name__ == "__main__":
    main()
