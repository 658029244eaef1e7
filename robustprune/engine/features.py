"""Informative features: which input patches a network needs for its decision, and whether pruning changes them.

Backward selection (as in sufficient input subsets, Carter et al. 2019): start
from the whole image and repeatedly remove the patches whose removal lowers
the predicted class's probability least (a removed patch is set to the
dataset mean: 0 after normalisation). The order of removal ranks the patches;
the *informative subset* is the smallest set left along the way that still
gives the predicted class at least ``threshold`` x its full-image probability.

Each step evaluates every remaining patch's removal in one batch. With ``P``
patches, removing one per step costs P(P+1)/2 forward passes per image; under
a cost cap the steps remove a fixed fraction of what remains instead (chunks
shrink to one patch as the subset gets small, where resolution matters).

Comparisons: the overlap (intersection over union) of the parent's and the
pruned network's subsets per image, and the *cross test*: network B's
probability of network A's predicted class when shown only A's subset.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..compute.store import make_key
from ..core.beyond import Features
from ..core.results import FeaturesResult
from .context import CaseContext, NetworkRecord
from .similarity import select_images

_VERSION = 1  # bump when what a features entry holds or how it is computed changes
_FORWARD_BATCH = 512


# --------------------------------------------------------------------------- the removal schedule


def _chunks(num_features: int, fraction: float) -> list[int]:
    """Patches removed at each step when each step removes ``fraction`` of what remains (at least one)."""
    remaining, chunks = num_features, []
    while remaining > 0:
        k = min(remaining, max(1, math.ceil(fraction * remaining)))
        chunks.append(k)
        remaining -= k
    return chunks


def schedule_cost(num_features: int, chunks: Sequence[int]) -> int:
    """Forward passes per image: the full image, each step's candidates, and the set left after each step.

    A step that removes everything left needs no candidates (there is no choice to make).
    """
    cost, remaining = 1, num_features
    for k in chunks:
        cost += (remaining if k < remaining else 0) + 1
        remaining -= k
    return cost


def removal_schedule(num_features: int, max_forward: int) -> list[int]:
    """The finest schedule within ``max_forward`` passes per image: one patch per step if affordable."""
    exact = [1] * num_features
    if schedule_cost(num_features, exact) <= max_forward:
        return exact
    if schedule_cost(num_features, [num_features]) > max_forward:
        raise ValueError(f"Features.max_forward={max_forward} is below the minimum of 2 passes per image "
                         f"(the full image and the empty one)")
    low, high = 0.0, 1.0  # cost(high) fits; find the smallest fraction that fits
    for _ in range(40):
        middle = (low + high) / 2
        if schedule_cost(num_features, _chunks(num_features, middle)) <= max_forward:
            high = middle
        else:
            low = middle
    return _chunks(num_features, high)


# --------------------------------------------------------------------------- backward selection


@dataclass
class FeatureSubsets:
    """Backward selection's answer for a batch of images (patch grid ``grid``, ``patch`` pixels a side)."""

    keep: torch.Tensor  # (n, P) bool: the informative subset of each image
    predicted: torch.Tensor  # (n,) long: the class predicted on the full image
    full_prob: torch.Tensor  # (n,) its probability on the full image
    subset_prob: torch.Tensor  # (n,) its probability on the subset alone
    order: torch.Tensor  # (n, P) long: the step at which each patch was removed (higher = more informative)
    patch: int
    grid: tuple[int, int]

    @property
    def size(self) -> torch.Tensor:
        """Fraction of the patches in each image's subset."""
        return self.keep.float().mean(1)

    def to_store(self) -> dict[str, Any]:
        return {"keep": self.keep, "predicted": self.predicted, "full_prob": self.full_prob,
                "subset_prob": self.subset_prob, "order": self.order, "patch": self.patch, "grid": list(self.grid)}

    @classmethod
    def from_store(cls, value: dict[str, Any]) -> FeatureSubsets:
        return cls(value["keep"], value["predicted"], value["full_prob"], value["subset_prob"], value["order"],
                   int(value["patch"]), tuple(int(g) for g in value["grid"]))  # type: ignore[arg-type]


def patch_grid(height: int, width: int, patch: int) -> tuple[int, int]:
    return math.ceil(height / patch), math.ceil(width / patch)


def pixel_mask(keep: torch.Tensor, grid: tuple[int, int], patch: int, height: int, width: int) -> torch.Tensor:
    """(N, P) patch masks -> (N, 1, H, W) float pixel masks (edge patches cropped to the image)."""
    gh, gw = grid
    mask = keep.view(-1, gh, 1, gw, 1).expand(-1, gh, patch, gw, patch).reshape(-1, gh * patch, gw * patch)
    return mask[:, :height, :width].unsqueeze(1).float()


@torch.inference_mode()
def _class_prob(network: nn.Module, images: torch.Tensor, masks: torch.Tensor, classes: torch.Tensor,
                grid: tuple[int, int], patch: int, device: str,
                image_index: torch.Tensor | None = None) -> torch.Tensor:
    """Probability of ``classes[i]`` for image ``image_index[i]`` (default ``i``) shown only through patch
    mask ``masks[i]``; inputs are built one forward batch at a time, never all at once."""
    _, _, h, w = images.shape
    out = []
    for start in range(0, len(masks), _FORWARD_BATCH):
        sl = slice(start, start + _FORWARD_BATCH)
        source = images[sl] if image_index is None else images[image_index[sl]]
        x = (source * pixel_mask(masks[sl], grid, patch, h, w)).to(device)
        probs = F.softmax(network(x).double(), dim=1).cpu()
        out.append(probs.gather(1, classes[sl].view(-1, 1)).squeeze(1))
    return torch.cat(out) if out else torch.empty(0, dtype=torch.float64)


@torch.inference_mode()
def backward_selection(network: nn.Module, images: torch.Tensor, *, patch: int = 1, threshold: float = 0.9,
                       max_forward: int | None = None, device: str = "cpu") -> FeatureSubsets:
    """Informative subsets of ``images`` (normalized, (N, C, H, W)) for ``network``, all images in one batch.

    ``threshold`` is the fraction of the full image's probability of the
    predicted class the subset must keep; ``max_forward`` caps the forward
    passes per image (``None``: remove one patch per step).
    """
    network.eval().to(device)
    n, _, h, w = images.shape
    grid = patch_grid(h, w, patch)
    num = grid[0] * grid[1]
    chunks = removal_schedule(num, max_forward) if max_forward is not None else [1] * num
    keep = torch.ones(n, num, dtype=torch.bool)
    full = F.softmax(torch.cat([network(images[s : s + _FORWARD_BATCH].to(device)).double().cpu()
                                for s in range(0, n, _FORWARD_BATCH)]), dim=1)
    predicted = full.argmax(1)
    full_prob = full.gather(1, predicted.view(-1, 1)).squeeze(1)
    order = torch.zeros(n, num, dtype=torch.long)
    trajectory = [full_prob]  # probability of the predicted class on the set left after each step
    snapshots = [keep.clone()]
    rows = torch.arange(n)
    for step, k in enumerate(chunks, start=1):
        remaining = int(keep[0].sum())
        left = keep.nonzero()[:, 1].view(n, remaining)  # the same count for every image: one schedule
        if k < remaining:
            candidates = keep.unsqueeze(1).repeat(1, remaining, 1)  # (n, R, P): remove one patch each
            candidates.view(-1, num)[torch.arange(n * remaining), left.reshape(-1)] = False
            probs = _class_prob(network, images, candidates.view(-1, num), predicted.repeat_interleave(remaining),
                                grid, patch, device, rows.repeat_interleave(remaining)).view(n, remaining)
            # least harmful removals first; ties by patch index, so the result does not depend on batching
            chosen = left.gather(1, torch.argsort(-probs, dim=1, stable=True)[:, :k])
        else:
            chosen = left
        keep[rows.view(-1, 1), chosen] = False
        order[rows.view(-1, 1), chosen] = step
        trajectory.append(_class_prob(network, images, keep, predicted, grid, patch, device))
        snapshots.append(keep.clone())
    probs = torch.stack(trajectory, 1)  # (n, steps + 1)
    qualifies = probs >= threshold * full_prob.view(-1, 1) - 1e-12
    # the last qualifying step leaves the smallest qualifying set (step 0, the full image, always qualifies)
    last = (qualifies * torch.arange(probs.shape[1])).argmax(1)
    subset = torch.stack([snapshots[int(t)][i] for i, t in enumerate(last)]) if n else keep
    return FeatureSubsets(subset, predicted, full_prob.float(), probs[rows, last].float(), order, patch, grid)


@torch.inference_mode()
def confidence_on(network: nn.Module, images: torch.Tensor, subsets: FeatureSubsets,
                  device: str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """The cross test: ``network``'s probability of the subsets' classes, and whether it predicts them,
    when shown only the subsets."""
    network.eval().to(device)
    _, _, h, w = images.shape
    probs_all = []
    for start in range(0, len(images), _FORWARD_BATCH):
        sl = slice(start, start + _FORWARD_BATCH)
        x = (images[sl] * pixel_mask(subsets.keep[sl], subsets.grid, subsets.patch, h, w)).to(device)
        probs_all.append(F.softmax(network(x).double(), dim=1).cpu())
    probs = torch.cat(probs_all)
    classes = subsets.predicted.view(-1, 1)
    return probs.gather(1, classes).squeeze(1).float(), probs.argmax(1) == subsets.predicted


def overlap(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Intersection over union of two (n, P) subset masks, per image (two empty subsets overlap fully)."""
    union = (a | b).sum(1)
    inter = (a & b).sum(1)
    return torch.where(union > 0, inter.float() / union.clamp(min=1).float(), torch.ones(len(a)))


def compare(parent: FeatureSubsets, pruned: FeatureSubsets, parent_net: nn.Module, pruned_net: nn.Module,
            images: torch.Tensor, device: str = "cpu") -> dict[str, float]:
    """Means over images: subset sizes, overlap, and the cross test in both directions."""
    pruned_conf, pruned_agree = confidence_on(pruned_net, images, parent, device)
    parent_conf, parent_agree = confidence_on(parent_net, images, pruned, device)
    return {
        "parent_size": float(parent.size.mean()),
        "pruned_size": float(pruned.size.mean()),
        "overlap": float(overlap(parent.keep, pruned.keep).mean()),
        "pruned_on_parent": float(pruned_conf.mean()),
        "pruned_on_parent_agreement": float(pruned_agree.float().mean()),
        "parent_on_pruned": float(parent_conf.mean()),
        "parent_on_pruned_agreement": float(parent_agree.float().mean()),
        "parent_on_own": float(parent.subset_prob.mean()),
        "pruned_on_own": float(pruned.subset_prob.mean()),
        "same_prediction": float((parent.predicted == pruned.predicted).float().mean()),
    }


# --------------------------------------------------------------------------- a case's features section


def _subsets(context: CaseContext, record: NetworkRecord, images: torch.Tensor, settings: Features,
             what: str) -> FeatureSubsets:
    spec = {"kind": "features", "network": record.key, "data": context.data.key, "settings": settings.to_dict(),
            "images": len(images), "seed": context.seed, "numerics": dict(context.numerics), "version": _VERSION}

    def compute() -> dict[str, Any]:
        started = time.monotonic()
        context.progress(f"informative features of the {what}: {len(images)} images")
        found = backward_selection(context.load(record), images, patch=int(settings.patch),
                                   threshold=float(settings.threshold), max_forward=int(settings.max_forward),
                                   device=context.device)
        context.progress(f"informative features of the {what} in {time.monotonic() - started:.1f} s")
        return found.to_store()

    return FeatureSubsets.from_store(
        context.store.load_or_compute("features", make_key(spec), compute, spec, f"{context.case.id} features {what}"))


def case_features(context: CaseContext, settings: Features, parent: NetworkRecord,
                  steps: Sequence[NetworkRecord]) -> FeaturesResult:
    """The parent and the gate-ratio network compared on their informative subsets (cached in the store)."""
    gate = context.gate_ratio
    step = next(s for s in steps if abs(s.ratio - gate) < 1e-9)
    index = select_images(len(context.data.test_labels), int(settings.images), context.seed + 7919)
    images = context.test_inputs()[index]
    spec = {"kind": "features-compare", "parent": parent.key, "pruned": step.key, "data": context.data.key,
            "settings": settings.to_dict(), "images": len(images), "seed": context.seed,
            "numerics": dict(context.numerics), "version": _VERSION}

    def compute() -> dict[str, float]:
        parent_subsets = _subsets(context, parent, images, settings, "parent")
        pruned_subsets = _subsets(context, step, images, settings, f"network at ratio {gate:g}")
        return compare(parent_subsets, pruned_subsets, context.load(parent), context.load(step), images,
                       context.device)

    summary = context.store.load_or_compute("features", make_key(spec), compute, spec,
                                            f"{context.case.id} features comparison")
    grid = patch_grid(images.shape[2], images.shape[3], int(settings.patch))
    return FeaturesResult(ratio=gate, images=len(images), patch=int(settings.patch), patches=grid[0] * grid[1],
                          threshold=float(settings.threshold), **{k: float(v) for k, v in summary.items()})


__all__ = [
    "FeatureSubsets",
    "backward_selection",
    "case_features",
    "compare",
    "confidence_on",
    "overlap",
    "removal_schedule",
    "schedule_cost",
]
