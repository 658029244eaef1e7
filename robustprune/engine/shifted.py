"""The test set under every shift of a run: published files, generated pixel shifts, tensor shifts.

Where a shifted test set comes from, in order:

1. the dataset's published set (:attr:`DataSplits.published_shift`: the
   CIFAR-10-C arrays, CIFAR-10.1) when it supplies one, with its own labels;
2. for a pixel shift, the store: every missing set of a dataset is generated
   in one worker pool (per-image seeds, so worker counts never change a set)
   and stored;
3. for a tensor shift, applied on the fly to the normalized test inputs.

Normalized sets are kept in memory up to a budget, so a case evaluating
many networks on one shift normalizes it once.

A shift whose code raises or returns something else than the test set's
shape and dtype (or whose name several plugins registered) is a *failed*
shift: :meth:`ShiftedSets.failure` says why, naming the plugin, and
:meth:`ShiftedSets.inputs` raises :class:`ShiftFailure`; the engine leaves it
out, so only the checks that need it fail.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..compute.data import PreparedData, ShiftJob, generate_pixel_shifts, label_tensor
from ..compute.store import Store, make_key
from ..core.results import CaseError, StoreError
from ..core.shifts import NOMINAL, Shift, generated_source, image_seeds
from ..plugin.api import AUTO_FAMILY, ImageSet, PixelShift, ShiftedSet, mask_problem
from ..plugin.errors import MissingDependencyError, as_missing_dependency
from .context import ProgressFn, tagged

__all__ = ["PublishedSet", "ShiftFailure", "ShiftedSets", "content_hash_of", "read_published"]

_MEMORY_BUDGET = 2 * 1024**3  # keep normalized shifted sets in memory up to this size (bytes)


class ShiftFailure(CaseError):
    """A shift could not make its test set (its plugin's code failed); the message names shift and plugin."""


@dataclass(frozen=True)
class PublishedSet:
    """What the run keeps of a published shifted set: its labels, where it came from, a content digest."""

    labels: torch.Tensor
    source: str
    digest: str  # enters the evaluation keys: a changed file on disk is evaluated again


def content_hash_of(images: ImageSet) -> str:
    """A fingerprint of one image set's images and labels."""
    h = hashlib.blake2b(digest_size=16)
    h.update(np.ascontiguousarray(images.images).data)
    h.update(np.ascontiguousarray(images.labels).astype(np.int64).data)
    return h.hexdigest()


def read_published(data: PreparedData, shift: Shift) -> ShiftedSet | None:
    """``data``'s published set for ``shift`` (CIFAR-10-C arrays, CIFAR-10.1), checked as a run uses it; ``None``
    when the dataset supplies none. Raises :class:`CaseError` naming the dataset, the shift and what is wrong."""
    lookup = data.splits.published_shift
    found = None
    if lookup is not None:
        try:
            found = lookup(shift.name, shift.param)
        except Exception as exc:  # noqa: BLE001 - the plugin's message names the file and the fix
            raise CaseError(f"dataset {data.name!r} could not read the published set for {shift.label}: "
                            f"{type(exc).__name__}: {exc}") from exc
    if found is None:
        if shift.kind == "published":
            raise CaseError(f"shift {shift.label} is a published test set, and dataset {data.name!r} does not "
                            "supply it (it is not on disk, or not a shift of this dataset)")
        return None
    nominal = data.splits.test.images.shape[1:]
    if not isinstance(found, ShiftedSet) or found.test.images.shape[1:] != nominal:
        shape = found.test.images.shape[1:] if isinstance(found, ShiftedSet) else type(found).__name__
        raise CaseError(f"dataset {data.name!r} supplied {shape} for {shift.label}; expected a ShiftedSet of "
                        f"images shaped like the test set's {nominal}")
    labels = np.asarray(found.test.labels)
    if labels.ndim == 3:
        problem = mask_problem(labels, data.splits.num_classes)
        if problem:
            raise CaseError(f"the published set for {shift.label} ({found.source}): {problem}")
    elif len(labels) and (labels.min() < 0 or labels.max() >= data.splits.num_classes):
        raise CaseError(f"the published set for {shift.label} ({found.source}) has labels outside "
                        f"0..{data.splits.num_classes - 1}")
    return found


class ShiftedSets:
    """Every shifted test set a run needs, read, generated or computed once and shared by all its cases."""

    def __init__(self, store: Store, seed: int, workers: int, progress: ProgressFn,
                 requested_family: Callable[[str], str] = lambda dataset: AUTO_FAMILY):
        self.store = store
        self.requested_family = requested_family  # dataset name -> the suite's shift_family for it
        self.seed = seed
        self.workers = workers
        self.progress = progress
        self._inputs: dict[tuple[str, str, int], torch.Tensor] = {}  # normalized, by (dataset, shift label, draw)
        self._pixel_images: dict[tuple[str, str], np.ndarray] = {}  # uint8 sets loaded but not yet normalized
        self._bytes = 0
        self._published: dict[tuple[str, str], PublishedSet | None] = {}
        self._failures: dict[tuple[str, str], str] = {}  # (dataset, shift label) -> why it failed
        self._looked_up: set[tuple[str, str]] = set()  # failures looked for in the store
        self._families: dict[tuple[str, str], str | None] = {}

    # ------------------------------------------------------------------ parameter families

    def family(self, data: PreparedData, shift: Shift) -> str | None:
        """The parameter family that makes ``shift`` on ``data`` (``"cifar10-c"``, ...; ``None``: the shift has
        none): the suite's ``shift_family`` for the dataset, else the shift's choice for its image size."""
        where = (data.name, shift.label)
        if where not in self._families:
            item = shift.registered.item if shift.registered is not None else None
            family = None
            if isinstance(item, PixelShift):
                height, width = data.splits.test.images.shape[1:3]
                family = item.family_for(self.requested_family(data.name), int(height), int(width))
            self._families[where] = family
        return self._families[where]

    def identity(self, data: PreparedData, shift: Shift) -> dict[str, Any]:
        """What identifies ``shift`` on ``data`` in store keys: the shift's identity and its family, if any."""
        family = self.family(data, shift)
        return shift.identity() if family is None else {**shift.identity(), "family": family}

    def check_ready(self, data: PreparedData, shifts: list[Shift]) -> None:
        """Ask each of ``shifts`` (those whose sets must be generated) whether this machine can make it under the
        family ``data`` uses (once per shift and family), before any work: raises
        :class:`MissingDependencyError` naming what is missing and the fix. A shift whose sets the dataset
        publishes (read from disk) needs nothing, and is not asked."""
        asked: set[tuple[str, str | None]] = set()
        for shift in shifts:
            item = shift.registered.item if shift.registered is not None else None
            if not isinstance(item, PixelShift) or item.check_ready is None or shift.unavailable is not None:
                continue
            family = self.family(data, shift)
            if (shift.name, family) in asked:
                continue
            asked.add((shift.name, family))
            try:
                item.check_ready(family)
            except MissingDependencyError:
                if self.published(data, shift) is None:
                    raise

    # ------------------------------------------------------------------ failed shifts

    def failure(self, data: PreparedData, shift: Shift) -> str | None:
        """Why ``shift`` cannot make ``data``'s test set (``None`` while it can, or has not been tried).

        A failure is stored (kind ``shiftfail``, keyed like the set it could not make, the plugin's source
        hash included): other processes and later runs skip the shift instead of trying it again, and know
        the case's work is done; editing the plugin gives a new key, so the shift is tried again."""
        if shift.unavailable is not None:
            return shift.unavailable
        where = (data.name, shift.label)
        if where not in self._failures and where not in self._looked_up and shift.kind in ("pixel", "tensor"):
            self._looked_up.add(where)
            stored = self.store.load("shiftfail", self._failure_key(data, shift))
            if isinstance(stored, str):
                self._failures[where] = stored
        return self._failures.get(where)

    def failure_keys(self, data: PreparedData, shifts: list[Shift]) -> list[str]:
        """The store keys of the recorded failures among ``shifts`` (what ``robustprune store gc`` keeps)."""
        return [self._failure_key(data, s) for s in shifts
                if s.unavailable is None and s.kind in ("pixel", "tensor") and self.failure(data, s) is not None]

    def _failure_key(self, data: PreparedData, shift: Shift) -> str:
        return make_key({"kind": "shift-failure", "data": data.key, "shift": self.identity(data, shift),
                         "seed": self.seed})

    def _fail(self, data: PreparedData, shift: Shift, problem: str) -> None:
        who = ""
        if shift.registered is not None:
            plugin = shift.registered.plugin
            who = f" (registered by plugin {plugin.name!r}, {plugin.distribution} {plugin.version})"
        message = f"shift {shift.label}{who} failed on {data.name}: {problem}"
        if (data.name, shift.label) not in self._failures:
            self._failures[(data.name, shift.label)] = message
            tagged(self.progress, data.name)(message)
            key = self._failure_key(data, shift)
            try:
                self.store.save("shiftfail", key, message, {"data": data.key, "shift": self.identity(data, shift)})
                self.store.log_work("shiftfail", key, f"{data.name} {shift.label}")
            except StoreError:  # a read-only store: this process knows, the next one tries again
                pass

    def _check_usable(self, data: PreparedData, shift: Shift) -> None:
        problem = self.failure(data, shift)
        if problem is not None:
            raise ShiftFailure(problem)

    # ------------------------------------------------------------------ published sets

    def published(self, data: PreparedData, shift: Shift) -> PublishedSet | None:
        """The dataset's published test set for ``shift`` (CIFAR-10-C arrays, CIFAR-10.1), if it supplies one."""
        if shift.kind not in ("pixel", "published"):
            return None
        key = (data.name, shift.label)
        if key not in self._published:
            found = read_published(data, shift)
            self._published[key] = None if found is None else PublishedSet(
                label_tensor(found.test.labels), found.source,
                content_hash_of(found.test))
        return self._published[key]

    def labels(self, data: PreparedData, shift: Shift) -> torch.Tensor:
        """The labels accuracy under ``shift`` is measured against: a published set's own, else the test set's."""
        published = self.published(data, shift)
        return published.labels if published is not None else data.test_labels

    def source(self, data: PreparedData, shift: Shift) -> str:
        """Where a shifted test set came from (the report shows it): ``"published: <path>"``, ``"generated"``, or
        ``"generated: <family>"`` for a shift made with a named parameter family."""
        published = self.published(data, shift)
        if published is not None:
            return f"published: {published.source}"
        return generated_source(self.family(data, shift))

    # ------------------------------------------------------------------ inputs

    def inputs(self, data: PreparedData, shift: Shift, draw: int = 0) -> torch.Tensor:
        """The normalized test inputs under ``shift`` (generated, read from disk or loaded as needed).

        ``draw`` > 0 is another independent draw of a tensor (noise) shift; other shifts have one draw.
        """
        if draw and shift.kind != "tensor":
            raise ValueError(f"{shift.label} is not a noise (tensor) shift: it has one draw, not {draw + 1}")
        self._check_usable(data, shift)
        cached = self._inputs.get((data.name, shift.label, draw))
        if cached is not None:
            return cached
        if self.published(data, shift) is not None:
            found = read_published(data, shift)  # re-read: published sets are not all kept in memory
            assert found is not None
            inputs = data.normalize(found.test.images)
        elif shift.kind == "pixel":
            self.ensure_pixel_sets(data, [shift])  # loads or generates the uint8 images
            self._check_usable(data, shift)
            images = self._pixel_images.pop((data.name, shift.label), None)
            if images is None:
                return self._pixel_inputs_uncached(data, shift)
            inputs = data.normalize(images)  # normalized only now: a warm run that evaluates nothing never pays
        elif shift.kind == NOMINAL:
            inputs = data.normalize(data.splits.test.images)
        else:
            seeds = np.array(image_seeds(self.seed, data.key, shift, len(data.test_labels), draw), dtype=np.int64)
            assert shift.registered is not None
            clean = data.normalize(data.splits.test.images)
            try:
                inputs = shift.registered.item.apply(clean, shift.param, seeds)
            except ImportError as exc:  # a library this machine lacks: not the shift's failure, never recorded
                raise as_missing_dependency(exc, shift.label) from exc
            except Exception as exc:  # noqa: BLE001 - plugin code: this shift fails, the others go on
                self._fail(data, shift, f"{type(exc).__name__}: {exc}")
                raise ShiftFailure(self._failures[(data.name, shift.label)]) from exc
            if not isinstance(inputs, torch.Tensor) or inputs.shape != clean.shape or inputs.dtype != clean.dtype:
                got = f"{tuple(inputs.shape)} {inputs.dtype}" if isinstance(inputs, torch.Tensor) else \
                    type(inputs).__name__
                self._fail(data, shift, f"returned {got}; expected a {tuple(clean.shape)} {clean.dtype} tensor")
                raise ShiftFailure(self._failures[(data.name, shift.label)])
        self._remember(data, shift, inputs, draw)
        return inputs

    def _remember(self, data: PreparedData, shift: Shift, inputs: torch.Tensor, draw: int = 0) -> None:
        size = inputs.numel() * inputs.element_size()
        if self._bytes + size <= _MEMORY_BUDGET:
            self._inputs[(data.name, shift.label, draw)] = inputs
            self._bytes += size

    # ------------------------------------------------------------------ generated pixel shifts

    def generated_keys(self, data: PreparedData, shifts: list[Shift]) -> list[str]:
        """The store keys of the generated pixel-shifted sets of ``shifts`` (published ones are not stored)."""
        return [self._key(data, s) for s in shifts if s.kind == "pixel" and self.published(data, s) is None]

    def to_generate(self, data: PreparedData, shifts: list[Shift]) -> list[Shift]:
        """The pixel shifts among ``shifts`` whose sets on ``data`` must still be generated (neither published nor
        stored)."""
        return [s for s in shifts if s.kind == "pixel" and self.published(data, s) is None
                and not self.store.contains("shifted", self._key(data, s))]

    def generated_key(self, data: PreparedData, shift: Shift) -> str:
        """The store key of ``shift``'s generated set on ``data``."""
        return self._key(data, shift)

    def _key(self, data: PreparedData, shift: Shift) -> str:
        return make_key({"kind": "shifted", "data": data.key, "shift": self.identity(data, shift), "seed": self.seed})

    def _pixel_inputs_uncached(self, data: PreparedData, shift: Shift) -> torch.Tensor:
        images = self.store.load("shifted", self._key(data, shift))
        if images is None:  # removed as damaged between generation and use: make it again
            self.ensure_pixel_sets(data, [shift])
            self._check_usable(data, shift)
            images = self.store.load("shifted", self._key(data, shift))
        if images is None:
            raise CaseError(f"the shifted set {shift.label} of {data.name} vanished from the store "
                            f"{self.store.root} as it was made; is another process deleting entries?")
        return data.normalize(images.numpy())

    def ensure_pixel_sets(self, data: PreparedData, shifts: list[Shift]) -> None:
        """Load pixel-shifted sets from the store; generate the missing ones in one worker pool."""
        wanted = [s for s in shifts if (data.name, s.label, 0) not in self._inputs and self.failure(data, s) is None
                  and (data.name, s.label) not in self._pixel_images and self.published(data, s) is None]
        if not self._load_pixel_sets(data, wanted):
            return
        with self.store.claim("shifted", data.key):
            # again: another process may have made them while we waited for the claim
            missing = self._load_pixel_sets(data, wanted)
            if missing:
                self._generate_pixel_sets(data, missing)

    def _load_pixel_sets(self, data: PreparedData, shifts: list[Shift]) -> list[Shift]:
        """Remember the stored sets among ``shifts``; return the ones not in the store."""
        missing = []
        for shift in shifts:
            images = self.store.load("shifted", self._key(data, shift))
            if images is None:
                missing.append(shift)
            else:
                self._pixel_images[(data.name, shift.label)] = images.numpy()
        return missing

    def _generate_pixel_sets(self, data: PreparedData, missing: list[Shift]) -> None:
        progress = tagged(self.progress, data.name)
        progress(f"generating {len(missing)} shifted test sets with {self.workers} workers")
        jobs = [ShiftJob(s.label, s.registered.item.implementation(self.family(data, s)),  # type: ignore[union-attr]
                         s.param, image_seeds(self.seed, data.key, s, len(data.test_labels))) for s in missing]

        def finished(index: int, images: np.ndarray) -> None:  # stored at once: a Ctrl-C keeps every finished set
            shift = missing[index]
            key = self._key(data, shift)
            self.store.save("shifted", key, torch.from_numpy(images),
                            {"data": data.key, "shift": self.identity(data, shift)})
            self.store.log_work("shifted", key, f"{data.name} {shift.label}")
            self._pixel_images[(data.name, shift.label)] = images

        def failed(index: int, problem: str) -> None:  # this shift fails its checks; the others are made
            self._fail(data, missing[index], problem)

        generate_pixel_shifts(data.splits.test.images, jobs, self.workers, progress, finished, failed)
