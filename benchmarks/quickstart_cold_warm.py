"""Time the quickstart suite cold (empty store) and warm (everything from the store).

Prints both wall-clock times and their ratio, measured in the same run on this
machine. Usage: python benchmarks/quickstart_cold_warm.py [--keep STORE_DIR]
"""

from __future__ import annotations

import argparse
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from robustprune.compute.costs import machine_fingerprint
from robustprune.core.machine import available_cores


def run_quickstart(store: Path) -> tuple[float, int]:
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "robustprune.cli", "run", "--store", str(store), "-q"],
        capture_output=True, text=True,
    )
    seconds = time.perf_counter() - started
    if result.returncode not in (0, 1):
        sys.stderr.write(result.stdout[-3000:] + result.stderr[-3000:])
        raise SystemExit(f"quickstart exited {result.returncode}")
    return seconds, result.returncode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--keep", type=Path, help="use (and keep) this store folder instead of a temporary one")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        store = args.keep or Path(tmp) / "store"
        cold, rc_cold = run_quickstart(store)
        warm, rc_warm = run_quickstart(store)
    print(f"machine: {machine_fingerprint()['cpu']}, {available_cores()} cores, Python {platform.python_version()}")
    print(f"quickstart cold: {cold:6.1f} s (exit {rc_cold})")
    print(f"quickstart warm: {warm:6.1f} s (exit {rc_warm})")
    print(f"cold / warm:     {cold / warm:6.1f}x")


if __name__ == "__main__":
    main()
