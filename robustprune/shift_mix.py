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
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np
import torch

from .api import PixelShift
from .beyond import TEST_LABEL, TRAIN_LABEL, ShiftMix, as_shift_mix
from .data import _CHUNK, _pool_context
from .registry import Registry
from .shifts import Shift, ShiftEntry
from .store import make_key

if TYPE_CHECKING:  # pragma: no cover
    from .data import PreparedData
    from .engine import Engine
    from .suite import Suite

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
        out = [ShiftEntry(f"{TRAIN_LABEL}@{severity}", tuple(Shift(m.name, severity, m.registered) for m in self.members))]
        if self.held_out:
            out.append(ShiftEntry(f"{TEST_LABEL}@{severity}",
                                  tuple(Shift(m.name, severity, m.registered) for m in self.held_out)))
        return out

    def draw(self, count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """Per image: the member index (-1 = clean) and the severity (0 = clean), from ``seed``."""
        rng = np.random.default_rng(seed)
        clean = rng.random(count) < self.settings.clean
        member = rng.integers(0, len(self.members), size=count)
        severity = rng.choice(np.asarray(self.settings.severities, dtype=np.int64), size=count)
        return np.where(clean, -1, member), np.where(clean, 0, severity)


def resolve_mix(suite: "Suite", registry: Registry) -> ResolvedMix | None:
    """Validate ``Suite.train_shifts`` and ``Suite.held_out`` against the registry (None without a mix)."""
    mix = as_shift_mix(suite.train_shifts)
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
    starts = range(0, len(images), _CHUNK)
    args = [(applies, images[s : s + _CHUNK], member[s : s + _CHUNK], severity[s : s + _CHUNK],
             list(seeds[s : s + _CHUNK])) for s in starts]
    if workers <= 1 or len(args) <= 1:
        parts = [_mix_chunk(*a) for a in args]
    else:
        with ProcessPoolExecutor(max_workers=workers, mp_context=_pool_context()) as pool:
            parts = list(pool.map(_mix_chunk, *zip(*args)))
    out = np.concatenate(parts) if parts else images.copy()
    if out.shape != images.shape or out.dtype != np.uint8:
        raise ValueError(f"the training mix returned images of shape {out.shape} and dtype {out.dtype}; "
                         f"expected {images.shape} uint8")
    return out


class TrainingPool:
    """The corrupted copies of one dataset's training set; ``pool(epoch)`` is that epoch's normalized inputs."""

    def __init__(self, engine: "Engine", data: "PreparedData", mix: ResolvedMix):
        self.engine, self.data, self.mix = engine, data, mix
        self.copies: list[np.ndarray] | None = None

    def key(self, copy: int) -> str:
        return make_key({"kind": "train_pool", "data": self.data.key, "mix": self.mix.identity(),
                         "seed": self.engine.suite.seed, "copy": copy})

    def _ensure(self) -> list[np.ndarray]:
        if self.copies is not None:
            return self.copies
        store = self.engine.options.store
        count = int(self.mix.settings.pool)
        copies: list[np.ndarray | None] = [None] * count

        def load() -> list[int]:
            for i in range(count):
                if copies[i] is None:
                    value = store.load("train_pool", self.key(i))
                    copies[i] = None if value is None else value["images"].numpy()
            return [i for i in range(count) if copies[i] is None]

        if load():
            with store.claim("train_pool", self.key(0)):
                missing = load()
                if missing:
                    self._generate(missing, copies)
        self.copies = [c for c in copies if c is not None]
        return self.copies

    def _generate(self, missing: list[int], copies: list[np.ndarray | None]) -> None:
        images = self.data.splits.train.images
        engine, label = self.engine, f"{self.data.name} training mix"
        started = time.monotonic()
        engine._progress(label, f"generating {len(missing)} corrupted cop{'y' if len(missing) == 1 else 'ies'} of "
                                f"{len(images)} training images with {engine.options.workers} workers")
        applies = [m.registered.item.apply for m in self.mix.members]  # type: ignore[union-attr]
        for i in missing:
            member, severity = self.mix.draw(len(images), image_seed(engine.suite.seed, self.data.key, i, -1))
            seeds = [image_seed(engine.suite.seed, self.data.key, i, j) for j in range(len(images))]
            out = corrupt_with_mix(images, member, severity, applies, seeds, engine.options.workers)
            value = {"images": torch.from_numpy(out), "member": torch.from_numpy(member),
                     "severity": torch.from_numpy(severity)}
            engine.options.store.save("train_pool", self.key(i), value,
                                      {"data": self.data.key, "mix": self.mix.identity(), "copy": i})
            engine.options.store.log_work("train_pool", self.key(i), f"{label} copy {i}")
            copies[i] = out
            engine._progress(label, f"copy {i + 1}/{len(missing)} done ({time.monotonic() - started:.0f} s)")

    def __call__(self, epoch: int) -> torch.Tensor:
        copies = self._ensure()
        return self.data.normalize(copies[epoch % len(copies)])


def training_inputs(engine: "Engine", data: "PreparedData") -> TrainingPool | None:
    """The per-epoch training inputs of the suite's mix for ``data`` (None without a mix); one pool per dataset."""
    mix = getattr(engine, "mix", None)
    if mix is None:
        return None
    pools: dict[str, TrainingPool] = engine._train_pools
    if data.name not in pools:
        pools[data.name] = TrainingPool(engine, data, mix)
    return pools[data.name]


def mix_spec(engine: "Engine") -> dict[str, Any]:
    """The store-key part of the training data: empty without a mix, so existing keys stay valid."""
    mix = getattr(engine, "mix", None)
    return {} if mix is None else {"train_shifts": mix.identity()}


__all__ = ["ResolvedMix", "TrainingPool", "corrupt_with_mix", "mix_spec", "resolve_mix", "training_inputs"]
