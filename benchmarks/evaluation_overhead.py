"""Evaluation overhead: the harness's batched inference against a plain torch loop.

Both evaluate the same N networks on the same M shifted test sets (already
normalized tensors), with the same thread count; the ratio says what the
harness's evaluation costs beyond the forward passes themselves.
Usage: python benchmarks/evaluation_overhead.py [--networks N] [--sets M] [--images K]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from robustprune.compute.evaluation import predict
from robustprune_plugins.models.small_cnn import SmallCNN


def plain_loop(networks, sets, batch_size):
    out = []
    with torch.inference_mode():
        for net in networks:
            net.eval()
            for x in sets:
                out.append(torch.cat([net(x[i : i + batch_size]).argmax(1) for i in range(0, len(x), batch_size)]))
    return out


def harness(networks, sets, batch_size):
    return [predict(net, x, batch_size=batch_size) for net in networks for x in sets]


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
    batch = 500
    assert all(torch.equal(a, b) for a, b in zip(plain_loop(networks, sets, batch), harness(networks, sets, batch)))
    times = {"plain": [], "harness": []}
    for _ in range(args.repeats):  # interleaved, so drift in machine load hits both alike
        for name, fn in (("plain", plain_loop), ("harness", harness)):
            started = time.perf_counter()
            fn(networks, sets, batch)
            times[name].append(time.perf_counter() - started)
    plain, ours = statistics.median(times["plain"]), statistics.median(times["harness"])
    print(f"{args.networks} networks x {args.sets} sets x {args.images} images, 1 thread, median of {args.repeats}")
    print(f"plain torch loop: {plain:.3f} s")
    print(f"harness predict:  {ours:.3f} s")
    print(f"harness / plain:  {ours / plain:.3f}x (aim: at most 1.05x)")


if __name__ == "__main__":
    main()
