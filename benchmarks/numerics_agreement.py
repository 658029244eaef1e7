"""Do two instruction sets agree within robustprune's intervals? The quickstart under two CPU capabilities.

Runs the quickstart twice into one store: with torch's default CPU capability
and with another (``ATEN_CPU_CAPABILITY=avx2``, or ``default`` where AVX2 is
the default). The capability is part of every store key, so the second run
recomputes everything. Then compares:

- the verdicts of all checks;
- the numbers the checks and the table rest on (nominal prune potential,
  each shift entry's mean and min prune potential and mean delta excess
  error at the gate ratio, each shift's delta excess error at the gate
  ratio): does each run's mean lie inside the other run's interval?

Usage: python benchmarks/numerics_agreement.py [--store DIR] [--other avx2|default|avx512]
(with --store, a store already filled by an earlier run is reused, and the
runs take seconds).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any


def capability(env: dict[str, str]) -> str:
    code = "import torch; print(torch.backends.cpu.get_cpu_capability())"
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          check=True).stdout.strip()


def run(store: Path, report: Path, env: dict[str, str]) -> dict[str, str]:
    """Run the quickstart; return each check's verdict."""
    command = [sys.executable, "-m", "robustprune.cli", "run", "--store", str(store), "--report", str(report),
               "-v", "-p", "no:cacheprovider"]
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    if result.returncode not in (0, 1):
        sys.stderr.write(result.stdout[-3000:] + result.stderr[-3000:])
        raise SystemExit(f"the quickstart exited {result.returncode}")
    return dict(re.findall(r"::(test_\w+\[[^\]]+\]) (PASSED|FAILED|SKIPPED|ERROR)", result.stdout))


def checked_numbers(report: Path) -> dict[tuple[str, ...], dict[str, Any]]:
    """Every number the quickstart's checks and table rest on, with its estimate, by (case, what, where)."""
    data = json.loads((report / "robustprune-report.json").read_text())
    out: dict[tuple[str, ...], dict[str, Any]] = {}
    for suite in data["suites"]:
        for case in suite["cases"]:
            estimates, gate = case["estimates"], case["ratios"].index(case["gate_ratio"])
            out[(case["id"], "prune potential", "nominal")] = estimates["prune_potential"]["nominal"]
            for entry, group in estimates["group_prune_potential"].items():
                out[(case["id"], "mean prune potential", entry)] = group["mean"]
                out[(case["id"], "min prune potential", entry)] = group["min"]
            for entry, per_ratio in estimates["group_delta_excess_error"].items():
                out[(case["id"], "mean delta excess error at the gate", entry)] = per_ratio[gate]
            for shift, per_ratio in estimates["delta_excess_error"].items():
                out[(case["id"], "delta excess error at the gate", shift)] = per_ratio[gate]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", type=Path, help="store to use (and keep); default: a temporary one")
    parser.add_argument("--other", help="the second ATEN_CPU_CAPABILITY (default: avx2, or default where AVX2 is "
                                        "the default)")
    args = parser.parse_args()
    base = {k: v for k, v in os.environ.items() if k != "ATEN_CPU_CAPABILITY"}
    first = capability(base)
    other = args.other or ("default" if first == "AVX2" else "avx2")
    second = capability({**base, "ATEN_CPU_CAPABILITY": other})
    if second == first:
        raise SystemExit(f"ATEN_CPU_CAPABILITY={other} gives {second}, the default: pick another with --other")
    with tempfile.TemporaryDirectory() as tmp:
        store = args.store or Path(tmp) / "store"
        verdicts_a = run(store, Path(tmp) / "a", base)
        verdicts_b = run(store, Path(tmp) / "b", {**base, "ATEN_CPU_CAPABILITY": other})
        numbers_a, numbers_b = checked_numbers(Path(tmp) / "a"), checked_numbers(Path(tmp) / "b")
    agree = sum(verdicts_a[k] == verdicts_b.get(k) for k in verdicts_a)
    print(f"CPU capabilities: {first} (default) and {second} (ATEN_CPU_CAPABILITY={other})")
    print(f"verdicts: {agree} of {len(verdicts_a)} checks agree "
          f"({', '.join(f'{v} {n}' for v, n in sorted(_count(verdicts_a).items()))} / "
          f"{', '.join(f'{v} {n}' for v, n in sorted(_count(verdicts_b).items()))})")
    by_kind: dict[str, list[int]] = {}
    misses = []
    for key, a in numbers_a.items():
        b = numbers_b[key]
        for mean, interval in ((a["mean"], b["interval"]), (b["mean"], a["interval"])):
            inside = interval[0] - 1e-9 <= mean <= interval[1] + 1e-9
            by_kind.setdefault(key[1], [0, 0])[0 if inside else 1] += 1
            if not inside:
                misses.append(f"  {' / '.join(key)}: mean {mean:.4f} outside [{interval[0]:.4f}, {interval[1]:.4f}]")
    level = next(iter(numbers_a.values()))["level"]
    print(f"each run's mean inside the other run's {level * 100:g} % interval:")
    for kind, (inside, outside) in by_kind.items():
        print(f"  {kind}: {inside} of {inside + outside}")
    print("\n".join(misses))


def _count(verdicts: dict[str, str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for verdict in verdicts.values():
        out[verdict] = out.get(verdict, 0) + 1
    return out


if __name__ == "__main__":
    main()
