"""Writers of tiny datasets in the real on-disk formats, for testing the real loaders.

Nothing can be downloaded where the tests run, so each writer produces the
exact layout the published data has (python-pickle CIFAR batches,
CIFAR-10-C-style .npy arrays, the CIFAR-10.1 .npy pair, ImageFolder PNGs),
only with few images. Images are class-dependent (a per-class colour and
stripe pattern plus noise), so a network can learn them in an epoch or two.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

CORRUPTION_NAMES = ("contrast", "gaussian_noise", "brightness")


def class_images(labels: np.ndarray, rng: np.random.Generator, size: int = 32) -> np.ndarray:
    """uint8 (N, size, size, 3) images whose colour and stripe direction depend on the label."""
    n = len(labels)
    palette = np.array([[(37 * c) % 256, (91 * c + 40) % 256, (173 * c + 80) % 256] for c in range(100)])
    images = rng.integers(0, 60, size=(n, size, size, 3)).astype(np.int64)
    stripes = (np.arange(size) // 4) % 2
    for i, label in enumerate(labels):
        pattern = stripes[None, :] if label % 2 else stripes[:, None]
        images[i] += (palette[label] * 0.7).astype(np.int64)[None, None, :] * (1 + pattern[..., None]) // 2
    return np.clip(images, 0, 255).astype(np.uint8)


def _to_rows(images: np.ndarray) -> np.ndarray:
    """(N, 32, 32, 3) -> (N, 3072) with R, G, B planes one after another, as CIFAR stores them."""
    return np.ascontiguousarray(images.transpose(0, 3, 1, 2).reshape(len(images), -1))


def _dump(path: Path, obj: object) -> None:
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)


def write_cifar10(root: Path, per_batch: int = 40, n_test: int = 60, seed: int = 0) -> dict[str, np.ndarray]:
    """``root/cifar-10-batches-py``: five training batches, the test batch and batches.meta."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    train_images, train_labels = [], []
    for b in range(1, 6):
        labels = np.arange(per_batch) % 10
        rng.shuffle(labels)
        images = class_images(labels, rng)
        _dump(folder / f"data_batch_{b}", {"batch_label": f"training batch {b} of 5", "labels": labels.tolist(),
                                            "data": _to_rows(images),
                                            "filenames": [f"{b}_{i}.png" for i in range(per_batch)]})
        train_images.append(images)
        train_labels.append(labels)
    test_labels = np.arange(n_test) % 10
    rng.shuffle(test_labels)
    test_images = class_images(test_labels, rng)
    _dump(folder / "test_batch", {"batch_label": "testing batch 1 of 1", "labels": test_labels.tolist(),
                                  "data": _to_rows(test_images), "filenames": [f"t_{i}.png" for i in range(n_test)]})
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    _dump(folder / "batches.meta", {"num_cases_per_batch": per_batch, "label_names": names, "num_vis": 3072})
    return {"train_images": np.concatenate(train_images), "train_labels": np.concatenate(train_labels),
            "test_images": test_images, "test_labels": test_labels}


def write_cifar100(root: Path, n_train: int = 300, n_test: int = 200, seed: int = 0) -> dict[str, np.ndarray]:
    """``root/cifar-100-python``: train, test and meta with fine and coarse labels."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for split, n in (("train", n_train), ("test", n_test)):
        fine = np.arange(n) % 100
        images = class_images(fine, rng)
        _dump(folder / split, {"filenames": [f"{i}.png" for i in range(n)], "batch_label": split,
                               "fine_labels": fine.tolist(), "coarse_labels": (fine // 5).tolist(),
                               "data": _to_rows(images)})
        out[f"{split}_images"], out[f"{split}_labels"] = images, fine
    _dump(folder / "meta", {"fine_label_names": [f"class{i}" for i in range(100)],
                            "coarse_label_names": [f"super{i}" for i in range(20)]})
    return out


def write_corruption_arrays(folder: Path, test_images: np.ndarray, test_labels: np.ndarray,
                            names: tuple[str, ...] = CORRUPTION_NAMES) -> None:
    """One ``<name>.npy`` per corruption, severities 1-5 stacked in blocks of len(test set), plus labels.npy.

    Severity s darkens the images by 30 * s grey levels (any known, checkable transform will do).
    """
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        blocks = [np.clip(test_images.astype(np.int64) - 30 * s, 0, 255).astype(np.uint8) for s in range(1, 6)]
        np.save(folder / f"{name}.npy", np.concatenate(blocks))
    np.save(folder / "labels.npy", np.tile(test_labels.astype(np.uint8), 5))


def write_cifar10_1(folder: Path, n: int = 30, version: int = 6, seed: int = 1) -> dict[str, np.ndarray]:
    """``cifar10.1_v<version>_data.npy`` (uint8 (N, 32, 32, 3)) and ``_labels.npy``, as in the CIFAR-10.1 repo."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    labels = (np.arange(n) * 3) % 10
    images = class_images(labels, rng)
    np.save(folder / f"cifar10.1_v{version}_data.npy", images)
    np.save(folder / f"cifar10.1_v{version}_labels.npy", labels.astype(np.int64))
    return {"images": images, "labels": labels}


def write_image_folder(root: Path, classes=("ant", "bee", "cat"), per_class: dict[str, int] | None = None,
                       sizes=((40, 30), (30, 50)), seed: int = 0) -> None:
    """``root/train/<class>/*.png`` and ``root/val/<class>/*.png`` of differing sizes (so resizing matters)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    per_class = per_class or {"train": 6, "val": 3}
    for split, count in per_class.items():
        for c, name in enumerate(classes):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                w, h = sizes[i % len(sizes)]
                image = class_images(np.array([c]), rng, size=max(w, h))[0][:h, :w]
                Image.fromarray(image).save(folder / f"{name}_{i}.png")
