"""The project's own data: uint8 images (N, H, W, 3) and int labels (N,) in .npy files.

Used by the project's training script and, through robustness/robustprune_local.py,
by robustprune, so both normalise the images the same way.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

FILES = ("train_images.npy", "train_labels.npy", "test_images.npy", "test_labels.npy")


def missing(root: Path) -> list[str]:
    return [name for name in FILES if not (root / name).is_file()]


def load_arrays(root: Path) -> dict[str, np.ndarray]:
    """The four arrays, checked: uint8 (N, H, W, 3) images and one label per image."""
    absent = missing(root)
    if absent:
        raise FileNotFoundError(f"{root} lacks {', '.join(absent)}; run `python train.py` to make the example data")
    arrays = {name[: -len(".npy")]: np.load(root / name) for name in FILES}
    for split in ("train", "test"):
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3 or len(images) != len(labels):
            raise ValueError(f"{root}: {split} images must be uint8 (N, H, W, 3) with one label each, "
                             f"got {images.dtype} {images.shape} and {len(labels)} labels")
    return arrays


def mean_std(train_images: np.ndarray) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
    """Per-channel mean and std of the training images, in [0, 1] units."""
    x = train_images.reshape(-1, 3).astype(np.float64) / 255.0
    return tuple(float(v) for v in x.mean(0)), tuple(float(v) for v in x.std(0))  # type: ignore[return-value]
