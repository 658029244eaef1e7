"""``imagefolder``: class folders on disk (``train/<class>/*.jpg``, ``val/<class>/*.jpg``), e.g. ImageNet.

The layout is torchvision's ``ImageFolder`` (classes are the sorted folder
names of the training split). Every image is decoded once with the standard
evaluation transform, resize the shorter side to 256 and center-crop 224, and
held in memory as uint8; training augments those crops with the recipe's
augmentation (``resized_crop_flip`` for the ImageNet networks). Held in
memory, so full ImageNet (about 190 GB at 224x224) does not fit: use
``train_subset`` / ``test_subset`` (seeded, stratified, chosen before any image
is decoded), or a smaller folder dataset.

ImageNet's validation images ship as one flat folder; sort them into class
folders first (the usual ``valprep.sh``), as for torchvision's ``ImageFolder``.

Parameters: ``train_dir`` ("train"), ``test_dir`` ("val"), ``image_size``
(224), ``resize`` (256), ``train_subset``, ``test_subset``, ``mean`` / ``std``
(ImageNet's by default), ``workers`` (decoding threads). The folder is the
dataset's root: ``Suite(dataset_params={"imagefolder": {"root": "/data/imagenet"}})``
or the data root (``--rp-data``) itself.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from robustprune import DatasetRequest, DatasetSpec, DataSplits, ImageSet, hookimpl
from robustprune.plugin.datafiles import DataFileError, stratified_subset, subset_size

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
# torchvision's ImageFolder extensions
EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")

_DEFAULTS: dict[str, Any] = {
    "train_dir": "train", "test_dir": "val", "image_size": 224, "resize": 256,
    "train_subset": None, "test_subset": None, "mean": IMAGENET_MEAN, "std": IMAGENET_STD, "workers": None,
}
_LAYOUT = ("<root>/{train}/<class>/<image> and <root>/{test}/<class>/<image> "
           "(class folders as torchvision's ImageFolder reads them; extensions " + ", ".join(EXTENSIONS) + ")")
_FIX = ("point robustprune at the folder holding {train}/ and {test}/ with "
        "Suite(dataset_params={{'imagefolder': {{'root': DIR}}}}), --rp-data DIR or ROBUSTPRUNE_DATA=DIR; "
        "ImageNet's flat validation folder must be sorted into class folders first")


def _three(values: Sequence[float], name: str) -> tuple[float, float, float]:
    """A per-channel (R, G, B) normalisation parameter, checked."""
    floats = tuple(float(v) for v in values)
    if len(floats) != 3:
        raise ValueError(f"imagefolder's {name} needs one value per RGB channel, got {list(values)!r}")
    return floats[0], floats[1], floats[2]


def scan(folder: Path, classes: Sequence[str] | None = None) -> tuple[list[str], list[Path], np.ndarray]:
    """Class names, image paths and labels of one split (``classes`` fixes the label order)."""
    if not folder.is_dir():
        raise FileNotFoundError(folder)
    found = sorted(entry.name for entry in os.scandir(folder) if entry.is_dir())
    names = list(classes) if classes is not None else found
    index = {name: i for i, name in enumerate(names)}
    paths: list[Path] = []
    labels: list[int] = []
    empty = []
    for name in found:
        files = sorted(p for p in (folder / name).iterdir() if p.suffix.lower() in EXTENSIONS)
        if name not in index:
            raise ValueError(f"class folder {folder / name} is not a class of the training split")
        if not files:
            empty.append(name)
        paths += files
        labels += [index[name]] * len(files)
    if not found or empty:
        raise ValueError(f"no images in {', '.join(str(folder / e) for e in empty) if empty else folder}")
    return names, paths, np.asarray(labels, dtype=np.int64)


def decode(path: Path, resize: int, size: int) -> np.ndarray:
    """Resize the shorter side to ``resize`` (bilinear, antialiased) and center-crop ``size`` x ``size``."""
    from PIL import Image

    with Image.open(path) as image:
        image = image.convert("RGB")
        w, h = image.size
        scale = resize / min(w, h)
        new_w, new_h = max(size, round(w * scale)), max(size, round(h * scale))
        image = image.resize((new_w, new_h), Image.Resampling.BILINEAR)
        left, top = (new_w - size) // 2, (new_h - size) // 2
        return np.asarray(image.crop((left, top, left + size, top + size)), dtype=np.uint8)


def _decode_all(paths: Sequence[Path], resize: int, size: int, workers: int, layout: str, fix: str) -> np.ndarray:
    out = np.empty((len(paths), size, size, 3), dtype=np.uint8)

    def one(i: int) -> None:
        try:
            out[i] = decode(paths[i], resize, size)
        except Exception as exc:  # noqa: BLE001 - name the broken file
            raise DataFileError(f"image unreadable ({type(exc).__name__}: {exc})", paths[i], layout,
                                "replace or remove the file") from None

    # PIL releases the GIL while decoding and resizing, so threads use every core
    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(one, range(len(paths))))
    return out


def load_image_folder(request: DatasetRequest) -> DataSplits:
    """Load ``<root>/<train_dir>`` and ``<root>/<test_dir>``; usable by other plugins under other names."""
    unknown = sorted(set(request.params) - set(_DEFAULTS))
    if unknown:
        raise ValueError(f"unknown imagefolder parameter(s) {', '.join(unknown)}; valid: {', '.join(_DEFAULTS)}")
    p = {**_DEFAULTS, **request.params}
    size, resize = int(p["image_size"]), int(p["resize"])
    if not 0 < size <= resize:
        raise ValueError(f"imagefolder needs 0 < image_size <= resize, got image_size={size}, resize={resize}")
    layout = _LAYOUT.format(train=p["train_dir"], test=p["test_dir"])
    fix = _FIX.format(train=p["train_dir"], test=p["test_dir"])
    if request.root is None:
        raise DataFileError("image folder not found: no data root is set", Path("<root>"), layout, fix)
    workers = int(p["workers"] or min(8, os.cpu_count() or 1))
    splits = {}
    classes = None
    for split, sub, subset in (("train", p["train_dir"], p["train_subset"]), ("test", p["test_dir"], p["test_subset"])):
        folder = request.root / sub
        try:
            classes, paths, labels = scan(folder, classes)
        except FileNotFoundError:
            raise DataFileError(f"{split} folder not found", folder, layout, fix) from None
        except ValueError as exc:
            raise DataFileError(str(exc), folder, layout, fix) from None
        index = stratified_subset(labels, subset_size(subset, len(labels), f"{split}_subset"), request.seed,
                                  salt=f"{split}_subset")
        images = _decode_all([paths[i] for i in index], resize, size, workers, layout, fix)
        splits[split] = ImageSet(images, labels[index])
    assert classes is not None
    return DataSplits(
        train=splits["train"], test=splits["test"], num_classes=len(classes),
        mean=_three(p["mean"], "mean"), std=_three(p["std"], "std"), class_names=tuple(classes),
    )


def check_image_folder(request: DatasetRequest) -> str | None:
    p = {**_DEFAULTS, **request.params}
    if request.root is None:
        return "the image folder is not on disk here: no data root is set. Fix: " + _FIX.format(
            train=p["train_dir"], test=p["test_dir"])
    missing = [str(request.root / d) for d in (p["train_dir"], p["test_dir"]) if not (request.root / d).is_dir()]
    if missing:
        return (f"the image folder is not on disk here: looked for {' and '.join(missing)}. Fix: "
                + _FIX.format(train=p["train_dir"], test=p["test_dir"]))
    return None


@hookimpl
def robustprune_register_datasets(register):
    register(
        DatasetSpec(
            name="imagefolder",
            load=load_image_folder,
            check=check_image_folder,
            description="class folders (train/, val/) such as ImageNet, resized to 256 and center-cropped to 224",
        )
    )
