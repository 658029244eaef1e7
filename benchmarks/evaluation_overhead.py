"""Evaluation overhead: the harness's batched evaluation against a plain torch loop.

Both evaluate the same N networks on the same M shifted test sets (already
normalized tensors), with the same thread count, and keep what the engine
stores: which images each network classifies right (top-1's per-image
statistics). The ratio says what the harness's evaluation
(:func:`robustprune.compute.evaluation.evaluate` with the registered ``top1``
metric's statistics) costs beyond the forward passes themselves.
Usage: python benchmarks/evaluation_overhead.py [--networks N] [--sets M] [--images K]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from robustprune.compute.evaluation import evaluate
from robustprune.plugin.registry import load_registry
from robustprune_plugins.models.small_cnn import SmallCNN


def plain_loop(networks, sets, labels, batch_size):
    out = []
    with torch.inference_mode():
        for net in networks:
            net.eval()
            for x in sets:
                hits = [net(x[i : i + batch_size]).argmax(1) == labels[i : i + batch_size]
                        for i in range(0, len(x), batch_size)]
                out.append(torch.cat(hits).to(torch.int64).view(-1, 1))
    return out


TOP1 = load_registry().metric("top1").item.statistics  # the engine's statistics for classification


def harness(networks, sets, labels, batch_size):
    return [evaluate(net, x, labels, TOP1, 10, batch_size=batch_size) for net in networks for x in sets]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--networks", type=int, default=7)
    parser.add_argument("--sets", type=int, default=23)
    parser.add_argument("--images", type=int, default=360)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)  # the harness's default
    torch.manual_seed(0)
    networks = [SmallCNN(10) for _ in range(args.networks)]
    sets = [torch.randn(args.images, 3, 32, 32) for _ in range(args.sets)]
    labels = torch.randint(0, 10, (args.images,))
    batch = 500
    assert all(torch.equal(a, b) for a, b in zip(plain_loop(networks, sets, labels, batch),
                                                 harness(networks, sets, labels, batch)))
    times = {"plain": [], "harness": []}
    for _ in range(args.repeats):  # interleaved, so drift in machine load hits both alike
        for name, fn in (("plain", plain_loop), ("harness", harness)):
            started = time.perf_counter()
            fn(networks, sets, labels, batch)
            times[name].append(time.perf_counter() - started)
    plain, ours = statistics.median(times["plain"]), statistics.median(times["harness"])
    print(f"{args.networks} networks x {args.sets} sets x {args.images} images, 1 thread, median of {args.repeats}")
    print(f"plain torch loop: {plain:.3f} s")
    print(f"harness evaluate: {ours:.3f} s")
    print(f"harness / plain:  {ours / plain:.3f}x (aim: at most 1.05x)")


if __name__ == "__main__":
    main()
