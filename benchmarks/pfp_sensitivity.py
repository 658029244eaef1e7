"""PFP's channel sensitivities: the cache-sized max-times blocks against whole data points' blocks.

``input_channel_sensitivities`` (what ``pfp`` and ``pfp_grouped`` compute
before every prune step) takes, per conv layer, the max over patches of a
product of activations and inverse pre-activations, an exact max-times
product whose speed is memory traffic. This compares the current blocks
(:data:`robustprune.plugin.sensitivity._BLOCK_ELEMENTS` products, reduced
while in cache) with the previous implementation, reproduced below, which
formed each data point's whole ``(out, in, patches)`` product at once (600 MB
for a wrn16_8 layer). Both run on the same network and data, alternated
round by round; the results must be bit-identical. Prints the median time
of each and the ratio per network.

Networks are freshly initialised resnet20 and wrn16_8 (CIFAR-10 shapes,
32x32); the data are ``--inputs`` random images (default 32: PFP's own
sample size, 183 for resnet20, would make the previous implementation take
minutes per pass on wrn16_8).

Usage: python benchmarks/pfp_sensitivity.py [--rounds 3] [--threads 1] [--inputs 32]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch

import robustprune.plugin.sensitivity as sensitivity
from robustprune.plugin.registry import load_registry
from robustprune.plugin.sensitivity import input_channel_sensitivities, sample_size

CURRENT = sensitivity._max_product


def previous_max_product(a: torch.Tensor, inverse: torch.Tensor) -> torch.Tensor:
    """The implementation before the cache-sized blocks: blocks of whole data points (at least one)."""
    n, j, p = a.shape
    i = inverse.shape[1]
    out = torch.empty(n, i, j)
    step = max(1, (1 << 22) // max(1, i * j * p))
    for start in range(0, n, step):
        stop = min(n, start + step)
        out[start:stop] = (inverse[start:stop, :, None, :] * a[start:stop, None, :, :]).amax(dim=-1)
    return out


def timed(network: torch.nn.Module, data: torch.Tensor) -> tuple[float, dict[str, torch.Tensor]]:
    started = time.perf_counter()
    result = input_channel_sensitivities(network, data)
    return time.perf_counter() - started, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--inputs", type=int, default=32, help="random images (PFP's sample size: 0)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{args.threads} thread(s), median of {args.rounds} alternated rounds")
    registry = load_registry()
    for name in ("resnet20", "wrn16_8"):
        torch.manual_seed(0)
        network = registry.model(name).item.build(10, (3, 32, 32)).eval()
        size = args.inputs or sample_size(network, torch.zeros(1, 3, 32, 32))
        data = torch.randn(size, 3, 32, 32)
        times: dict[str, list[float]] = {"previous": [], "current": []}
        results = {}
        for _ in range(args.rounds):
            for label, implementation in (("previous", previous_max_product), ("current", CURRENT)):
                sensitivity._max_product = implementation
                seconds, results[label] = timed(network, data)
                times[label].append(seconds)
        sensitivity._max_product = CURRENT
        same = all(torch.equal(results["previous"][k], results["current"][k]) for k in results["current"])
        before, after = statistics.median(times["previous"]), statistics.median(times["current"])
        ratios = [b / a for b, a in zip(times["previous"], times["current"])]  # per round: alternated pairs
        print(f"{name} ({size} inputs): previous {before:.2f} s, current {after:.2f} s; "
              f"{statistics.median(ratios):.2f}x faster (per-round range {min(ratios):.2f}-{max(ratios):.2f}); "
              f"identical: {same}")
        if not same:
            raise SystemExit("the two implementations disagree")


if __name__ == "__main__":
    main()
