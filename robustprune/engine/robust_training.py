"""Robust training: train parents, and retrain pruned networks, on a seeded mix of corrupted training images.

Corruptions work on uint8 images, before normalisation, and cost milliseconds
per image, so they cannot run inside the training loop cheaply. Instead,
``pool`` corrupted copies of the training set are generated once per dataset,
mix and seed (in a worker pool, cached in the store) and training cycles
through them, one copy per epoch. In each copy every image independently
stays clean with probability ``clean``, else gets one of the mix's shifts at
one of its severities, each drawn from seeds that depend only on the image's
index, the copy and the suite's seed (so results never depend on worker
counts). Labels are unchanged.

The suite's ``held_out`` shifts are never drawn; the engine evaluates the
mix's members and the held-out shifts at ``report_severity`` as two extra
shift groups (``train_shifts@3`` and ``held_out@3``), the report's train- and
test-distribution columns.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..compute.data import SHIFT_CHUNK, PreparedData, process_pool_context
from ..compute.store import Store, make_key
from ..core.beyond import TEST_LABEL, TRAIN_LABEL, ShiftMix
from ..core.shifts import Shift, ShiftEntry
from ..core.suite import Suite
from ..plugin.api import AUTO_FAMILY, PixelShift
from ..plugin.registry import Registry
from .context import ProgressFn, tagged

_VERSION = 1  # bump when how a pool copy is drawn or generated changes


def _expand(names: Sequence[str], registry: Registry, field: str) -> tuple[Shift, ...]:
    """Names or group names -> distinct registered pixel shifts (parameter unset), in order."""
    out: dict[str, Shift] = {}
    for name in names:
        members = registry.get("group", name).item.members if name in registry.names("group") else (name,)
        for member in members:
            registered = registry.get("shift", member)  # unknown names raise with suggestions
            if not isinstance(registered.item, PixelShift):
                raise ValueError(
                    f"Suite.{field} names {member!r}, which is not a pixel shift (a corruption of uint8 images); "
                    f"only pixel shifts can be mixed into training data"
                )
            out.setdefault(member, Shift(member, None, registered))
    return tuple(out.values())


@dataclass(frozen=True)
class ResolvedMix:
    """A suite's training mix with its shifts looked up in the registry."""

    settings: ShiftMix
    members: tuple[Shift, ...]
    held_out: tuple[Shift, ...]

    def identity(self) -> dict[str, Any]:
        """What changes the training data: enters the parent's and every step's store key."""
        return {**self.settings.to_dict(), "members": [m.registered.identity() for m in self.members],  # type: ignore[union-attr]
                "version": _VERSION}

    def entries(self) -> list[ShiftEntry]:
        """The report's train- and test-distribution columns: each member at ``report_severity``."""
        severity = int(self.settings.report_severity)
        members = tuple(Shift(m.name, severity, m.registered) for m in self.members)
        out = [ShiftEntry(f"{TRAIN_LABEL}@{severity}", members)]
        if self.held_out:
            out.append(ShiftEntry(f"{TEST_LABEL}@{severity}",
                                  tuple(Shift(m.name, severity, m.registered) for m in self.held_out)))
        return out

    def summary(self) -> dict[str, Any]:
        """The mix as the report describes it: settings, member and held-out names, the two column labels."""
        entries = self.entries()
        return {
            **self.settings.to_dict(), "members": [m.name for m in self.members],
            "held_out": [m.name for m in self.held_out], "report_severity": int(self.settings.report_severity),
            "train_column": entries[0].label, "test_column": entries[1].label if len(entries) > 1 else None,
        }

    def draw(self, count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """Per image: the member index (-1 = clean) and the severity (0 = clean), from ``seed``."""
        rng = np.random.default_rng(seed)
        clean = rng.random(count) < self.settings.clean
        member = rng.integers(0, len(self.members), size=count)
        severity = rng.choice(np.asarray(self.settings.severities, dtype=np.int64), size=count)
        return np.where(clean, -1, member), np.where(clean, 0, severity)


def resolve_mix(suite: Suite, registry: Registry) -> ResolvedMix | None:
    """Validate ``Suite.train_shifts`` and ``Suite.held_out`` against the registry (None without a mix)."""
    mix = suite.mix
    if mix is None:
        return None
    members = _expand(mix.shifts, registry, "train_shifts")
    held_out = _expand(suite.held_out, registry, "held_out")
    both = sorted({m.name for m in members} & {h.name for h in held_out})
    if both:
        raise ValueError(f"shift(s) {', '.join(both)} are both in train_shifts and held_out: a held-out shift "
                         f"must never be trained on")
    for severity in (*mix.severities, mix.report_severity):
        for member in (*members, *held_out):
            try:
                member.registered.item.param.parse(str(severity))  # type: ignore[union-attr]
            except ValueError as exc:
                raise ValueError(f"ShiftMix severity for {member.name}: {exc}") from None
    return ResolvedMix(mix, members, held_out)


def image_seed(seed: int, data_key: str, copy: int, index: int) -> int:
    digest = hashlib.blake2b(f"{seed}|{data_key}|mix|{copy}|{index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def _mix_chunk(applies: Sequence[Callable[[np.ndarray, Any, int], np.ndarray]], images: np.ndarray,
               member: np.ndarray, severity: np.ndarray, seeds: Sequence[int]) -> np.ndarray:
    out = images.copy()
    for i, (m, s, seed) in enumerate(zip(member, severity, seeds)):
        if m >= 0:
            out[i] = applies[m](images[i], int(s), int(seed))
    return out


def corrupt_with_mix(images: np.ndarray, member: np.ndarray, severity: np.ndarray,
                     applies: Sequence[Callable[[np.ndarray, Any, int], np.ndarray]], seeds: Sequence[int],
                     workers: int) -> np.ndarray:
    """Apply ``applies[member[i]]`` at ``severity[i]`` to image ``i`` (member -1: unchanged), in worker processes."""
    starts = range(0, len(images), SHIFT_CHUNK)
    args = [(applies, images[s : s + SHIFT_CHUNK], member[s : s + SHIFT_CHUNK], severity[s : s + SHIFT_CHUNK],
             list(seeds[s : s + SHIFT_CHUNK])) for s in starts]
    if workers <= 1 or len(args) <= 1:
        parts = [_mix_chunk(*a) for a in args]
    else:
        with ProcessPoolExecutor(max_workers=workers, mp_context=process_pool_context()) as pool:
            parts = list(pool.map(_mix_chunk, *zip(*args)))
    out = np.concatenate(parts) if parts else images.copy()
    if out.shape != images.shape or out.dtype != np.uint8:
        raise ValueError(f"the training mix returned images of shape {out.shape} and dtype {out.dtype}; "
                         f"expected {images.shape} uint8")
    return out


class TrainingPool:
    """The corrupted copies of one dataset's training set; ``pool(epoch)`` is that epoch's normalized inputs."""

    def __init__(self, mix: ResolvedMix, data: PreparedData, store: Store, seed: int, workers: int,
                 progress: ProgressFn, family: str = AUTO_FAMILY):
        self.mix, self.data, self.store, self.seed, self.workers = mix, data, store, seed, workers
        height, width = data.splits.train.images.shape[1:3]
        self.items: list[PixelShift] = [m.registered.item for m in mix.members]  # type: ignore[union-attr]
        # each member's parameter family on this dataset (the suite's shift_family, else chosen by image size)
        self.families = [item.family_for(family, int(height), int(width)) for item in self.items]
        self.progress = tagged(progress, f"{data.name} training mix")
        self.copies: list[np.ndarray] | None = None

    def key(self, copy: int) -> str:
        spec = {"kind": "train_pool", "data": self.data.key, "mix": self.mix.identity(), "seed": self.seed,
                "copy": copy}
        if any(self.families):
            spec["families"] = self.families
        return make_key(spec)

    def _ensure(self) -> list[np.ndarray]:
        if self.copies is not None:
            return self.copies
        count = int(self.mix.settings.pool)
        copies: list[np.ndarray | None] = [None] * count

        def load() -> list[int]:
            for i in range(count):
                if copies[i] is None:
                    value = self.store.load("train_pool", self.key(i))
                    copies[i] = None if value is None else value["images"].numpy()
            return [i for i in range(count) if copies[i] is None]

        if load():
            with self.store.claim("train_pool", self.key(0)):
                missing = load()
                if missing:
                    self._generate(missing, copies)
        self.copies = [c for c in copies if c is not None]
        return self.copies

    def _generate(self, missing: list[int], copies: list[np.ndarray | None]) -> None:
        images = self.data.splits.train.images
        started = time.monotonic()
        self.progress(f"generating {len(missing)} corrupted cop{'y' if len(missing) == 1 else 'ies'} of "
                      f"{len(images)} training images with {self.workers} workers")
        for item, family in zip(self.items, self.families):
            if item.check_ready is not None:
                item.check_ready(family)  # a missing library says so before any image is made
        applies = [item.implementation(family) for item, family in zip(self.items, self.families)]
        for i in missing:
            member, severity = self.mix.draw(len(images), image_seed(self.seed, self.data.key, i, -1))
            seeds = [image_seed(self.seed, self.data.key, i, j) for j in range(len(images))]
            out = corrupt_with_mix(images, member, severity, applies, seeds, self.workers)
            value = {"images": torch.from_numpy(out), "member": torch.from_numpy(member),
                     "severity": torch.from_numpy(severity)}
            self.store.save("train_pool", self.key(i), value,
                            {"data": self.data.key, "mix": self.mix.identity(), "copy": i})
            self.store.log_work("train_pool", self.key(i), f"{self.data.name} training mix copy {i}")
            copies[i] = out
            self.progress(f"copy {i + 1}/{len(missing)} done ({time.monotonic() - started:.0f} s)")

    def __call__(self, epoch: int) -> torch.Tensor:
        copies = self._ensure()
        return self.data.normalize(copies[epoch % len(copies)])


class RobustTraining:
    """A suite's training mix at work in a run: the store-key part of every trained network, one pool per dataset."""

    def __init__(self, mix: ResolvedMix, store: Store, seed: int, workers: int, progress: ProgressFn,
                 requested_family: Callable[[str], str] = lambda dataset: AUTO_FAMILY):
        self.mix, self.store, self.seed, self.workers, self.progress = mix, store, seed, workers, progress
        self.requested_family = requested_family  # dataset name -> the suite's shift_family for it
        self._pools: dict[str, TrainingPool] = {}

    def key_part(self, data: PreparedData) -> dict[str, Any]:
        """What the mix adds to the store keys of parents and cascade steps trained on ``data``: the mix, and
        the parameter family of each member there when any has one."""
        part: dict[str, Any] = {"train_shifts": self.mix.identity()}
        families = self.pool(data).families
        if any(families):
            part["families"] = families
        return part

    def pool(self, data: PreparedData) -> TrainingPool:
        """The per-epoch training inputs of ``data`` under the mix (made once per dataset)."""
        if data.name not in self._pools:
            self._pools[data.name] = TrainingPool(self.mix, data, self.store, self.seed, self.workers, self.progress,
                                                  self.requested_family(data.name))
        return self._pools[data.name]


__all__ = ["ResolvedMix", "RobustTraining", "TrainingPool", "corrupt_with_mix", "image_seed", "resolve_mix"]
