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
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .evaluation import EVAL_BATCH
from .shifts import NOMINAL_SHIFT
from .store import make_key

if TYPE_CHECKING:  # pragma: no cover
    from .data import PreparedData
    from .engine import CaseKey, Engine, NetworkRecord

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


# --------------------------------------------------------------------------- engine glue


def _load(engine: "Engine", case: "CaseKey", data: "PreparedData", record: "NetworkRecord") -> nn.Module:
    network = engine.build(case.model, data)
    network.load_state_dict(engine._state(record, case, data))
    return network.eval()


def baseline_seed(engine: "Engine") -> int:
    settings = engine.suite.similarity
    assert settings is not None
    return engine.suite.seed + 1 if settings.baseline_seed is None else int(settings.baseline_seed)


def case_similarity(engine: "Engine", case: "CaseKey", data: "PreparedData", parent: "NetworkRecord",
                    steps: Sequence["NetworkRecord"]) -> dict[str, Any]:
    """The similarity section of a case: each selected pruned network (and the baseline) against the parent."""
    settings = engine.suite.similarity
    if settings is None:
        return {}
    gate = engine.suite.gate_ratio_for(case.method)
    chosen = list(steps) if settings.ratios == "all" else [s for s in steps if abs(s.ratio - gate) < 1e-9]
    pairs: list[tuple[str, "NetworkRecord"]] = [("pruned", s) for s in chosen]
    if settings.baseline:
        pairs.append(("baseline", engine.parent(case.model, case.dataset, seed=baseline_seed(engine))))
    index = select_images(len(data.test_labels), int(settings.images), engine.suite.seed)
    spec_base = {"kind": "similarity", "reference": parent.key, "data": data.key, "images": len(index),
                 "draws": int(settings.draws), "seed": engine.suite.seed, "version": _VERSION}
    keys = {(other.key, eps): make_key({**spec_base, "other": other.key, "eps": eps})
            for _, other in pairs for eps in settings.eps}
    store = engine.options.store
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
                _compute(engine, case, data, parent, pairs, index, missing, keys, spec_base, found)
    return {
        "eps": list(settings.eps),
        "images": len(index),
        "draws": int(settings.draws),
        "pruned": [{"ratio": other.ratio,
                    "agreement": [found[(other.key, e)]["agreement"] for e in settings.eps],
                    "distance": [found[(other.key, e)]["distance"] for e in settings.eps]}
                   for kind, other in pairs if kind == "pruned"],
        "baseline": next(({"seed": baseline_seed(engine), "key": other.key,
                           "agreement": [found[(other.key, e)]["agreement"] for e in settings.eps],
                           "distance": [found[(other.key, e)]["distance"] for e in settings.eps]}
                          for kind, other in pairs if kind == "baseline"), None),
    }


def _compute(engine: "Engine", case: "CaseKey", data: "PreparedData", parent: "NetworkRecord",
             pairs: list[tuple[str, "NetworkRecord"]], index: torch.Tensor, missing: list[tuple[str, float]],
             keys: dict[tuple[str, float], str], spec_base: dict[str, Any],
             found: dict[tuple[str, float], dict[str, float]]) -> None:
    settings = engine.suite.similarity
    assert settings is not None
    started = time.monotonic()
    others = {other.key: other for _, other in pairs if any(k == other.key for k, _ in missing)}
    engine._progress(case.id, f"functional similarity: {len(others)} network(s) x {len({e for _, e in missing})} "
                              f"noise level(s), {len(index)} images x {settings.draws} draws")
    inputs = engine.shifted_inputs(data, NOMINAL_SHIFT)[index]
    reference = _load(engine, case, data, parent)
    networks = {key: _load(engine, case, data, record) for key, record in others.items()}
    for eps in sorted({e for _, e in missing}):
        wanted = [key for key in networks if (key, eps) in missing]
        stats = similarity_under_noise(reference, [networks[k] for k in wanted], inputs, eps, int(settings.draws),
                                       engine.suite.seed, engine.options.device)
        for key, stat in zip(wanted, stats):
            store_key = keys[(key, eps)]
            engine.options.store.save("similarity", store_key, stat.to_dict(), {**spec_base, "other": key, "eps": eps})
            engine.options.store.log_work("similarity", store_key, f"{case.id} eps {eps:g}")
            found[(key, eps)] = stat.to_dict()
    for record in others.values():
        if record is not parent and record.ratio > 0:
            record.state = None  # pruned weights are not needed after this
    engine._progress(case.id, f"functional similarity done in {time.monotonic() - started:.1f} s")


__all__ = ["SimilarityStats", "case_similarity", "noise_seed", "select_images", "similarity_under_noise"]
