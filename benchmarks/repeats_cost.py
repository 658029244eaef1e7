"""What confidence costs: the quickstart cold with 3 repeats on every core, against one repeat serially.

Runs, in this one process and alternating round by round, each on an empty
store:

- ``single, serial``: the quickstart as it was before repeats (repeats=1,
  noise_draws=1), computed in one process (``--executor local``): the
  baseline;
- ``single, parallel``: the same suite on the default worker processes;
- ``3 repeats, parallel``: the quickstart as shipped (repeats=3,
  noise_draws=3) on the default worker processes.

Prints every wall time with the cores it kept busy on average (CPU time of
the run and its workers over wall time), and each configuration's ratio to
the baseline of the same round (median and range over rounds). Ratios, not seconds, are the
result: the machines differ.

Usage: python benchmarks/repeats_cost.py [--rounds N] [--workers N]
"""

from __future__ import annotations

import argparse
import platform
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from robustprune.compute.costs import machine_fingerprint
from robustprune.core.machine import available_cores

QUICKSTART = Path(__file__).resolve().parents[1] / "robustprune" / "suites" / "quickstart.py"


def single_repeat_suite(folder: Path) -> Path:
    """The quickstart with ``repeats=1, noise_draws=1``: what it computed before repeats existed."""
    source = QUICKSTART.read_text()
    single, changed = re.subn(r"\brepeats=\d+", "repeats=1", source)
    single, changed_draws = re.subn(r"\bnoise_draws=\d+", "noise_draws=1", single)
    if changed != 1 or changed_draws != 1:
        raise SystemExit(f"{QUICKSTART} no longer sets repeats= and noise_draws= once each; update this benchmark")
    path = folder / "quickstart_single.py"
    path.write_text(single)
    return path


def cold_run(suite: Path | None, store: Path, extra: list[str]) -> tuple[float, float]:
    """Wall seconds of one cold run, and the CPU seconds it and its worker processes used."""
    command = [sys.executable, "-m", "robustprune.cli", "run", *([str(suite)] if suite else []),
               "--store", str(store), "-q", *extra]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if result.returncode not in (0, 1):
        sys.stderr.write(result.stdout[-3000:] + result.stderr[-3000:])
        raise SystemExit(f"{' '.join(command)} exited {result.returncode}")
    return seconds, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=1, help="alternating rounds of the three runs (default 1)")
    parser.add_argument("--workers", type=int, help="worker processes for the parallel runs (default: every core)")
    args = parser.parse_args()
    workers = ["--workers", str(args.workers)] if args.workers else []
    times: dict[str, list[float]] = {"single, serial": [], "single, parallel": [], "3 repeats, parallel": []}
    busy: dict[str, list[float]] = {name: [] for name in times}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        single = single_repeat_suite(folder)
        for round_ in range(args.rounds):
            runs = {
                "single, serial": (single, ["--executor", "local"]),
                "single, parallel": (single, workers),
                "3 repeats, parallel": (None, workers),
            }
            for index, (name, (suite, extra)) in enumerate(runs.items()):
                seconds, cpu = cold_run(suite, folder / f"store-{round_}-{index}", extra)  # each run cold
                times[name].append(seconds)
                busy[name].append(cpu / seconds)
                print(f"round {round_ + 1}: {name:20} {seconds:6.1f} s, {cpu / seconds:.2f} cores busy", flush=True)
    print(f"\nmachine: {machine_fingerprint()['cpu']}, {available_cores()} cores, Python {platform.python_version()}, "
          f"{args.rounds} round(s)")
    baseline = times["single, serial"]
    for name, seconds in times.items():
        ratios = [s / b for s, b in zip(seconds, baseline)]
        spread = f" (range {min(ratios):.2f}-{max(ratios):.2f})" if len(ratios) > 1 else ""
        print(f"{name:20} median {statistics.median(seconds):6.1f} s   "
              f"ratio to single, serial: {statistics.median(ratios):.2f}{spread}   "
              f"cores busy: {statistics.median(busy[name]):.2f}")


if __name__ == "__main__":
    main()
