"""Scores on bootstrap resamples of the test images, from stored per-image statistics.

A resample of ``n`` test images is a vector of counts (how often each image
was drawn, summing to ``n``). Every set of ``n`` images shares the same
resamples, so a parent and its pruned networks are compared on the same
images (a *paired* bootstrap), and so are the nominal test set and every
shift generated from it. The top-1 accuracies of all networks on all
resamples are one matrix product, ``correct (networks x n) @ counts.T (n x
samples)``; any metric's scores are its per-image statistics summed the same
way, then scored (:meth:`ImageResamples.scores`). No inference runs: the statistics are in the store.

Counts are integers below 2**24; the product is taken in float32 when every
sum stays below 2**24 (top-1's rows always do), else in float64 (a confusion
matrix's pixel counts), so every sum is exact: the replicates are
bit-identical on every machine and thread count.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import numpy as np

__all__ = ["ImageResamples"]


class ImageResamples:
    """The seeded image resamples of a run: ``samples`` count vectors per test-set size, made once."""

    def __init__(self, seed: int, samples: int):
        self.seed, self.samples = seed, samples
        self._counts: dict[int, np.ndarray] = {}

    def counts(self, n: int) -> np.ndarray:
        """``(samples, n)`` float32 counts: row ``b`` says how often each of the ``n`` images is in resample ``b``."""
        if n not in self._counts:
            digest = hashlib.blake2b(f"image-resamples|{self.seed}|{n}".encode(), digest_size=8).digest()
            rng = np.random.default_rng(int.from_bytes(digest, "little"))
            counts = np.empty((self.samples, n), dtype=np.float32)
            # a row at a time: the same stream as one (samples, n) draw, without its int64 temporaries
            # (800 MB for 1000 resamples of ImageNet's 50,000 validation images)
            for row in range(self.samples):
                counts[row] = np.bincount(rng.integers(0, n, size=n), minlength=n)
            self._counts[n] = counts
        return self._counts[n]

    def scores(self, statistics: np.ndarray, score: Callable[[np.ndarray, int], np.ndarray]) -> np.ndarray:
        """``(networks, samples)`` float64: each network's score on each resample, from its per-sample
        ``statistics`` (``(networks, n, k)`` integer counts, a metric's rows) summed with the resample's counts.

        In float64: a confusion matrix's pixel counts pass 2**24, and sums of integers below 2**53 are exact in
        any order, so the replicates stay bit-identical on every machine."""
        networks, n, k = statistics.shape
        if n == 0:
            raise ValueError("cannot resample an empty test set")
        counts = self.counts(n)
        if int(np.abs(statistics).max(initial=0)) * n < 2**24:
            # every sum stays below 2**24 (top-1's 0/1 rows always do): float32 is exact, and half the memory
            flat = statistics.astype(np.float32).transpose(0, 2, 1).reshape(networks * k, n)
            totals = (flat @ counts.T).astype(np.float64).reshape(networks, k, self.samples).transpose(0, 2, 1)
        else:
            totals = np.einsum("bn,wnk->wbk", counts.astype(np.float64), statistics.astype(np.float64), optimize=True)
        return np.asarray(score(totals, n), dtype=np.float64).reshape(networks, self.samples)
