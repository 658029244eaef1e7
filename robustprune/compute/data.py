"""Datasets as tensors, and shifted test sets generated in worker processes.

Pixel shifts run on uint8 images, one seed per image, in a process pool:
the work is per image and CPU-bound in numpy, so processes (not threads) use
every core. Results are deterministic whatever the worker count, because each
image's seed comes from its index, not from the order work is done in.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..plugin.api import DataSplits
from ..plugin.errors import as_missing_dependency
from .processes import die_with_parent

ProgressFn = Callable[[str], None]
"""Where long work says what it is doing: one line per event."""

SHIFT_CHUNK = 64
"""Images per worker task: large enough to amortise pickling, small enough to balance load."""


@dataclass(frozen=True)
class ShiftJob:
    """One shifted set to make: its label (for messages), the function that shifts one image (picklable: it
    runs in worker processes), its parameter and one seed per image."""

    label: str
    apply: Callable[[np.ndarray, Any, int], np.ndarray]
    param: Any
    seeds: Sequence[int]


@dataclass
class PreparedData:
    """A dataset loaded once per session: normalized tensors plus what keys need."""

    name: str
    key: str
    splits: DataSplits
    train_inputs: torch.Tensor
    train_labels: torch.Tensor
    test_labels: torch.Tensor
    mean: torch.Tensor
    std: torch.Tensor

    @property
    def pad_value(self) -> torch.Tensor:
        """Black, in normalized units: what padding a raw image with zeros means after normalisation."""
        return (0.0 - self.mean) / self.std

    def normalize(self, images: np.ndarray) -> torch.Tensor:
        """uint8 (N, H, W, C) -> float (N, C, H, W), normalized with the dataset's mean and std."""
        x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float().div_(255.0)
        return x.sub_(self.mean.view(1, -1, 1, 1)).div_(self.std.view(1, -1, 1, 1))


def content_hash(splits: DataSplits) -> str:
    """A fingerprint of the data itself, so a changed file on disk never reuses stale results."""
    h = hashlib.blake2b(digest_size=16)
    for part in (splits.train, splits.test):
        h.update(np.ascontiguousarray(part.images).data)
        h.update(np.ascontiguousarray(part.labels).astype(np.int64).data)
    h.update(repr((splits.num_classes, splits.mean, splits.std)).encode())
    return h.hexdigest()


def label_tensor(labels: np.ndarray) -> torch.Tensor:
    """Classes as int64; masks as uint8 (VOC's 1,464 training masks at 513x513 are 3 GB as int64), widened per
    batch where a loss or a metric reads them."""
    return torch.from_numpy(np.asarray(labels, dtype=np.int64 if labels.ndim == 1 else np.uint8))


def prepare(name: str, key: str, splits: DataSplits) -> PreparedData:
    """A dataset's splits as normalized tensors (the training inputs are normalized once, here)."""
    mean = torch.tensor(splits.mean, dtype=torch.float32)
    std = torch.tensor(splits.std, dtype=torch.float32)
    data = PreparedData(
        name=name,
        key=key,
        splits=splits,
        train_inputs=torch.empty(0),
        train_labels=label_tensor(splits.train.labels),
        test_labels=label_tensor(splits.test.labels),
        mean=mean,
        std=std,
    )
    data.train_inputs = data.normalize(splits.train.images)
    return data


def _apply_chunk(apply: Callable[..., np.ndarray], images: np.ndarray, param: Any, seeds: Sequence[int]) -> np.ndarray:
    return np.stack([apply(image, param, seed) for image, seed in zip(images, seeds)])


def _apply_task(task: tuple[int, int, Callable[..., np.ndarray], np.ndarray, Any, list[int]]
                ) -> tuple[int, int, np.ndarray | str]:
    """One chunk of one job: the shifted images, or the error a shift's code raised (as text: one broken shift
    must not stop the pool that makes the others). A missing library (``ImportError``, such as
    :class:`MissingDependencyError`) is raised instead: it is the machine's problem, not the shift's, and must
    not be recorded as the shift's failure."""
    job_index, start, apply, images, param, seeds = task
    try:
        return job_index, start, _apply_chunk(apply, images, param, seeds)
    except ImportError as exc:
        raise as_missing_dependency(exc, "a shift") from exc
    except Exception as exc:  # noqa: BLE001 - plugin code: reported per shift by the caller
        return job_index, start, f"{type(exc).__name__}: {exc}"


def process_pool_context() -> multiprocessing.context.BaseContext:
    """The start method for shift workers: fork (fast, inherits JIT-compiled code such as
    imagecorruptions' numba functions) where available, else spawn."""
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("fork" if "fork" in methods else "spawn")


def generate_pixel_shifts(
    images: np.ndarray,
    jobs: Sequence[ShiftJob],
    workers: int,
    progress: ProgressFn | None = None,
    finished: Callable[[int, np.ndarray], None] | None = None,
    failed: Callable[[int, str], None] | None = None,
) -> list[np.ndarray]:
    """Apply each job (a shift's function, its parameter, per-image seeds) to ``images``; all jobs share one
    worker pool.

    ``finished(job_index, shifted)`` is called as soon as a job's last chunk is
    done (the caller stores it: a Ctrl-C keeps every finished set). A job whose
    shift raises or returns images of another shape or dtype calls
    ``failed(job_index, problem)`` once and is dropped, the others go on
    (without ``failed`` its problem raises ``ValueError``). On Ctrl-C or any
    other error the pool's workers are terminated at once, not waited for; and
    they die with this process if it is killed.
    """
    started = time.monotonic()
    tasks = []
    for job_index, job in enumerate(jobs):
        for start in range(0, len(images), SHIFT_CHUNK):
            tasks.append((job_index, start, job.apply, images[start : start + SHIFT_CHUNK], job.param,
                          list(job.seeds[start : start + SHIFT_CHUNK])))
    outputs = [np.empty_like(images) for _ in jobs]
    done_per_job = [0] * len(jobs)
    dropped: set[int] = set()

    def store(job_index: int, start: int, result: np.ndarray | str) -> None:
        if job_index in dropped:
            return
        problem = result if isinstance(result, str) else None
        if problem is None and isinstance(result, np.ndarray) and (
                result.shape != images[start : start + len(result)].shape or result.dtype != np.uint8):
            problem = (f"returned images of shape {result.shape[1:]} and dtype {result.dtype}; expected "
                       f"{images.shape[1:]} uint8")
        if problem is not None:
            if failed is None:
                raise ValueError(f"shift {jobs[job_index].label} {problem}")
            dropped.add(job_index)
            failed(job_index, problem)
            return
        assert isinstance(result, np.ndarray)
        outputs[job_index][start : start + len(result)] = result
        done_per_job[job_index] += len(result)
        if done_per_job[job_index] == len(images):
            if finished is not None:
                finished(job_index, outputs[job_index])
            if progress is not None:
                count = sum(1 for d in done_per_job if d == len(images))
                label, seconds = jobs[job_index].label, time.monotonic() - started
                progress(f"shifted sets {count}/{len(jobs)}: {label} ({seconds:.1f} s)")

    if workers <= 1 or len(tasks) <= 1:
        for task in tasks:
            store(*_apply_task(task))
        return outputs
    context = process_pool_context()
    pool = context.Pool(workers, initializer=die_with_parent, initargs=(os.getpid(),))
    try:
        for job_index, start, result in pool.imap_unordered(_apply_task, tasks):
            store(job_index, start, result)
    except BaseException:
        pool.terminate()  # Ctrl-C or an error: the finished sets are stored, the rest is not waited for
        pool.join()
        raise
    pool.close()
    pool.join()
    return outputs
