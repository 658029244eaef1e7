"""Collecting a folder of suites: `robustprune run DIR` (the suite files named) against the old way (pytest's
`python_files` widened to every module, which rewrites the assertions of everything the suites import).

Both collect this repository's `suites/` with `--collect-only`, alternated over the rounds in fresh processes,
and the script prints pytest's own collection time of each, and their ratio per round (median and range).
Usage: python benchmarks/collection_time.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import platform
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

SUITES = Path(__file__).resolve().parents[1] / "suites"


def collect(args: list[str], store: str) -> float:
    """pytest's "collected in S s" for one run."""
    out = subprocess.run([sys.executable, "-m", *args, "--collect-only", "-q", "-p", "no:cacheprovider",
                          *(["--store", store] if args[0] == "robustprune" else [f"--rp-store={store}"])],
                         capture_output=True, text=True, check=True).stdout
    found = re.search(r"collected in ([\d.]+)s", out)
    assert found, out[-500:]
    return float(found.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    rounds = parser.parse_args().rounds
    named, widened = [], []
    with tempfile.TemporaryDirectory() as store:
        for _ in range(rounds):
            named.append(collect(["robustprune", "run", str(SUITES)], store))
            widened.append(collect(["pytest", str(SUITES), "-o", "python_files=*.py"], store))
    ratios = [w / n for n, w in zip(named, widened)]
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.machine()) if Path("/proc/cpuinfo").exists() \
        else platform.machine()
    print(f"machine: {cpu}, Python {platform.python_version()}")
    print(f"robustprune run suites/ (suite files named): {statistics.median(named):.1f} s "
          f"(range {min(named):.1f}-{max(named):.1f})")
    print(f"python_files widened to *.py:                {statistics.median(widened):.1f} s "
          f"(range {min(widened):.1f}-{max(widened):.1f})")
    print(f"widened / named: {statistics.median(ratios):.1f}x (range {min(ratios):.1f}-{max(ratios):.1f}, "
          f"{rounds} rounds)")


if __name__ == "__main__":
    main()
