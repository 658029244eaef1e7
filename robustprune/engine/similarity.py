"""Functional similarity under noise: does the pruned network still compute its parent's function?

For a set of test images and noise draws, both networks see the same noisy
input x + U[-eps, eps] (on the normalized input, without clipping: the paper's
uniform noise). Two numbers per eps, averaged over images and draws:

- softmax distance: ||softmax(f_pruned(x + n)) - softmax(f_parent(x + n))||_2
- agreement: the fraction of inputs on which both predict the same top-1 class.

A separately trained parent (same recipe, another seed) gives the baseline
of two *unrelated* networks of the same accuracy (Liebenwein et al. 2021,
section 5). Every pair is cached in the store, keyed by both networks, eps,
the counts and the seed.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..compute.evaluation import EVAL_BATCH
from ..compute.store import make_key
from ..core.beyond import Similarity
from ..core.results import SimilarityBaseline, SimilarityCurve, SimilarityResult
from .context import CaseContext, NetworkRecord

_VERSION = 1  # bump when what a similarity entry holds or how it is computed changes


@dataclass(frozen=True)
class SimilarityStats:
    """One network against a reference at one noise level, averaged over images x draws."""

    eps: float
    distance: float
    agreement: float
    samples: int  # images x draws actually averaged over

    def to_dict(self) -> dict[str, float]:
        return {"eps": self.eps, "distance": self.distance, "agreement": self.agreement, "samples": self.samples}


def noise_seed(seed: int, draw: int) -> int:
    """The seed of one noise draw; the same for every network, image count and eps (common random numbers)."""
    return int(make_key(["similarity-noise", int(seed), int(draw)])[:15], 16)


def select_images(total: int, count: int, seed: int) -> torch.Tensor:
    """A seeded subset of ``count`` test-image indices (sorted), or all of them if there are fewer."""
    if count >= total:
        return torch.arange(total)
    generator = torch.Generator().manual_seed(int(make_key(["similarity-images", int(seed)])[:15], 16))
    return torch.randperm(total, generator=generator)[:count].sort().values


@torch.inference_mode()
def similarity_under_noise(
    reference: nn.Module,
    others: Sequence[nn.Module],
    inputs: torch.Tensor,
    eps: float,
    draws: int,
    seed: int,
    device: str = "cpu",
    batch_size: int = EVAL_BATCH,
) -> list[SimilarityStats]:
    """Softmax l2 distance and top-1 agreement of each of ``others`` against ``reference`` under U[-eps, eps].

    ``inputs`` are normalized images; each draw adds noise from its own seed to
    all of them, and every network sees the same noisy batch. At eps 0 one draw
    is enough (all draws would be the clean inputs).
    """
    draws = 1 if eps == 0 else int(draws)
    for network in (reference, *others):
        network.eval().to(device)
    distance = [torch.zeros((), dtype=torch.float64) for _ in others]
    agree = [torch.zeros((), dtype=torch.long) for _ in others]
    for draw in range(draws):
        noisy = inputs
        if eps > 0:
            generator = torch.Generator().manual_seed(noise_seed(seed, draw))
            noise = torch.rand(inputs.shape, generator=generator, dtype=inputs.dtype).mul_(2 * eps).sub_(eps)
            noisy = inputs + noise
        for start in range(0, len(noisy), batch_size):
            batch = noisy[start : start + batch_size].to(device)
            ref = F.softmax(reference(batch).double(), dim=1)
            ref_top = ref.argmax(1)
            for i, network in enumerate(others):
                out = F.softmax(network(batch).double(), dim=1)
                distance[i] += (out - ref).norm(dim=1).sum().cpu()
                agree[i] += (out.argmax(1) == ref_top).sum().cpu()
    samples = len(inputs) * draws
    return [SimilarityStats(float(eps), float(d) / samples, float(a) / samples, samples)
            for d, a in zip(distance, agree)]


# --------------------------------------------------------------------------- a case's similarity section


def baseline_seed(settings: Similarity, suite_seed: int) -> int:
    """The seed of the separately trained parent: ``Similarity.baseline_seed``, else the suite's seed + 1."""
    return suite_seed + 1 if settings.baseline_seed is None else int(settings.baseline_seed)


def case_similarity(context: CaseContext, settings: Similarity, parent: NetworkRecord,
                    steps: Sequence[NetworkRecord]) -> SimilarityResult:
    """Each selected pruned network (and the baseline) against the parent, every pair cached in the store."""
    chosen = list(steps) if settings.ratios == "all" else [s for s in steps if abs(s.ratio - context.gate_ratio) < 1e-9]
    pairs: list[tuple[str, NetworkRecord]] = [("pruned", s) for s in chosen]
    seed = baseline_seed(settings, context.seed)
    if settings.baseline:
        pairs.append(("baseline", context.parent_of_seed(seed)))
    index = select_images(len(context.data.test_labels), int(settings.images), context.seed)
    spec_base = {"kind": "similarity", "reference": parent.key, "data": context.data.key, "images": len(index),
                 "draws": int(settings.draws), "seed": context.seed, "numerics": dict(context.numerics),
                 "version": _VERSION}
    keys = {(other.key, eps): make_key({**spec_base, "other": other.key, "eps": eps})
            for _, other in pairs for eps in settings.eps}
    store = context.store
    found: dict[tuple[str, float], dict[str, float]] = {}

    def load_all() -> list[tuple[str, float]]:
        for pair, key in keys.items():
            if pair not in found:
                value = store.load("similarity", key)
                if value is not None:
                    found[pair] = value
        return [pair for pair in keys if pair not in found]

    if load_all():
        # one claim per parent: cases sharing it (and the baseline pair) compute each pair once
        with store.claim("similarity", parent.key):
            missing = load_all()
            if missing:
                _compute(context, settings, parent, pairs, index, missing, keys, spec_base, found)

    def values(record: NetworkRecord, kind: str) -> tuple[float, ...]:
        return tuple(found[(record.key, e)][kind] for e in settings.eps)

    baseline = next((SimilarityBaseline(seed, other.key, values(other, "agreement"), values(other, "distance"))
                     for kind, other in pairs if kind == "baseline"), None)
    return SimilarityResult(
        eps=tuple(settings.eps), images=len(index), draws=int(settings.draws),
        pruned=tuple(SimilarityCurve(other.ratio, values(other, "agreement"), values(other, "distance"))
                     for kind, other in pairs if kind == "pruned"),
        baseline=baseline,
    )


def _compute(context: CaseContext, settings: Similarity, parent: NetworkRecord,
             pairs: list[tuple[str, NetworkRecord]], index: torch.Tensor, missing: list[tuple[str, float]],
             keys: dict[tuple[str, float], str], spec_base: dict[str, Any],
             found: dict[tuple[str, float], dict[str, float]]) -> None:
    started = time.monotonic()
    others = {other.key: other for _, other in pairs if any(k == other.key for k, _ in missing)}
    context.progress(f"functional similarity: {len(others)} network(s) x {len({e for _, e in missing})} "
                     f"noise level(s), {len(index)} images x {settings.draws} draws")
    inputs = context.test_inputs()[index]
    reference = context.load(parent)
    networks = {key: context.load(record) for key, record in others.items()}
    for eps in sorted({e for _, e in missing}):
        wanted = [key for key in networks if (key, eps) in missing]
        stats = similarity_under_noise(reference, [networks[k] for k in wanted], inputs, eps, int(settings.draws),
                                       context.seed, context.device)
        for key, stat in zip(wanted, stats):
            store_key = keys[(key, eps)]
            context.store.save("similarity", store_key, stat.to_dict(), {**spec_base, "other": key, "eps": eps})
            context.store.log_work("similarity", store_key, f"{context.case.id} eps {eps:g}")
            found[(key, eps)] = stat.to_dict()
    context.progress(f"functional similarity done in {time.monotonic() - started:.1f} s")


__all__ = ["SimilarityStats", "baseline_seed", "case_similarity", "noise_seed", "select_images",
           "similarity_under_noise"]
