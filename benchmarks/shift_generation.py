"""Shifted-set generation: the harness's worker processes against a one-process loop, then the store.

All 19 corruptions at severity 3 over the digits test images, with
ImageNet-C's parameters: first a plain single-process loop of
imagecorruptions, then the harness's parallel generation (all cores), then a
second harness run served from the store. Last, the same loop with
CIFAR-10-C's parameters (robustprune's own implementation, the default for
32x32 images), as a ratio to the ImageNet-C loop.
Usage: python benchmarks/shift_generation.py [--workers N]
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np

from robustprune import Suite
from robustprune.compute.store import Store
from robustprune.core.machine import available_cores
from robustprune.engine.context import RunOptions
from robustprune.engine.engine import Engine
from robustprune.plugin.registry import load_registry


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=available_cores())
    args = parser.parse_args()
    from imagecorruptions import corrupt, get_corruption_names

    registry = load_registry()
    from robustprune_plugins.shifts.cifar10c import corrupt_cifar

    suite = Suite(models=["small_cnn"], datasets=["digits"], methods=["wt"], shifts=["corruptions@3"],
                  shift_family="imagenet-c")
    with tempfile.TemporaryDirectory() as tmp:
        engine = Engine(suite, registry, RunOptions(store=Store(tmp), workers=args.workers))
        data = engine.data("digits")
        images = data.splits.test.images
        shifts = [s for s in engine.shifts if s.kind == "pixel"]
        # warm numba's glass_blur JIT in this process first, so neither side pays for compilation
        corrupt(images[0], 3, "glass_blur")

        started = time.perf_counter()
        for name in get_corruption_names("all"):
            np.stack([corrupt(img, severity=3, corruption_name=name) for img in images])
        plain = time.perf_counter() - started

        started = time.perf_counter()
        engine.shifted.ensure_pixel_sets(data, shifts)
        parallel = time.perf_counter() - started

        warm_engine = Engine(suite, registry, RunOptions(store=Store(tmp), workers=args.workers))
        started = time.perf_counter()
        warm_engine.shifted.ensure_pixel_sets(data, shifts)
        warm = time.perf_counter() - started

        started = time.perf_counter()
        for name in get_corruption_names("all"):
            np.stack([corrupt_cifar(name, img, 3, seed) for seed, img in enumerate(images)])
        cifar = time.perf_counter() - started
    print(f"19 corruptions x {len(images)} images of 32x32, severity 3")
    print(f"plain loop, 1 process:        {plain:6.2f} s")
    print(f"harness, {args.workers} worker processes:  {parallel:6.2f} s  "
          f"speed-up {plain / parallel:.2f}x (aim >= 1.7x on 2 cores)")
    print(f"harness, served from store:   {warm:6.3f} s  speed-up {plain / warm:.0f}x (aim >= 50x)")
    print(f"CIFAR-10-C family, 1 process: {cifar:6.2f} s  {cifar / plain:.2f}x the ImageNet-C loop's time")


if __name__ == "__main__":
    main()
