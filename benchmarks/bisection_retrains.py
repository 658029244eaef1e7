"""Prune-potential search: bisection against the full grid, counted in prune-retrain cycles.

Runs WT on the small CNN and digits over a 16-point geometric grid twice,
once retraining at every ratio (the paper's cascade) and once with
``search="bisect"``, and prints the retrain counts and the nominal prune
potentials. Usage: python benchmarks/bisection_retrains.py [--retrain-epochs N]
"""

from __future__ import annotations

import argparse
import tempfile
import time

from robustprune import Suite, geometric_ratios
from robustprune.compute.store import Store
from robustprune.core.cases import Case
from robustprune.core.results import CaseKey
from robustprune.engine.context import RunOptions
from robustprune.engine.engine import Engine
from robustprune.plugin.registry import Registry, load_registry


def run(search: str, store: Store, registry: Registry, epochs: int,
        delta: float) -> tuple[float, int, float, list[bool]]:
    suite = Suite(models=["small_cnn"], datasets=["digits"], methods=["wt"], ratios=geometric_ratios(16),
                  retrain_epochs=epochs, gate_ratio=0.2, search=search, delta=delta)
    engine = Engine(suite, registry, RunOptions(store=store))
    key = CaseKey("wt", "small_cnn", "digits")
    before = _retrains(store)
    started = time.perf_counter()
    result = engine.result(key)
    seconds = time.perf_counter() - started
    view = Case(lambda: result, suite, engine.shift_entries, key)
    threshold = result.parent_accuracy("nominal") - delta
    passes = [a >= threshold - 1e-12 for a in result.accuracies("nominal")]
    return float(view.prune_potential()), _retrains(store) - before, seconds, passes


def _retrains(store: Store) -> int:
    log = store.root / "work.log"
    return sum(1 for line in log.read_text().splitlines() if " ratio " in line) if log.exists() else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--retrain-epochs", type=int, default=3)
    parser.add_argument("--delta", type=float, default=0.01, help="tolerated accuracy loss (the quickstart's 1 %%)")
    args = parser.parse_args()
    registry = load_registry()
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(tmp)  # shared: the parent is trained once, outside both counts
        grid_p, grid_n, grid_s, passes = run("grid", store, registry, args.retrain_epochs, args.delta)
        bis_p, bis_n, bis_s, _ = run("bisect", store, registry, args.retrain_epochs, args.delta)
    # what bisection assumes: the ratios that pass the delta test come first, then only failures
    monotone = passes == sorted(passes, reverse=True)
    print(f"WT, small_cnn on digits, 16 ratios (keep 0.80 -> 0.03), delta {args.delta * 100:g} %")
    print(f"grid:   {grid_n:2d} retrains, {grid_s:5.1f} s, nominal prune potential {grid_p:.3f}")
    print(f"bisect: {bis_n:2d} retrains, {bis_s:5.1f} s, nominal prune potential {bis_p:.3f}")
    print(f"retrains bisect / grid: {bis_n / grid_n:.2f} (aim: at most 0.5); same answer: {grid_p == bis_p}; "
          f"grid's pass/fail pattern monotone: {monotone}")


if __name__ == "__main__":
    main()
