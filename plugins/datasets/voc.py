"""``voc``: Pascal VOC 2011 / 2012 semantic segmentation (21 classes, scored by mean IoU).

Reads the VOC development kit as it is extracted from the official archives
(``VOCtrainval_11-May-2012.tar``, ``VOCtrainval_25-May-2011.tar``)::

    <root>/VOCdevkit/VOC2012/JPEGImages/<id>.jpg
    <root>/VOCdevkit/VOC2012/SegmentationClass/<id>.png     palette ("P") PNGs: value = class 0..20, 255 = ignore
    <root>/VOCdevkit/VOC2012/ImageSets/Segmentation/train.txt, val.txt

``<root>`` may also be the ``VOCdevkit`` folder or the ``VOC20xx`` folder
itself, and the 2011 archive's own layout (``<root>/TrainVal/VOCdevkit/VOC2011``,
where torchvision extracts it) is found too. Train = the ids of ``train.txt``,
test = the ids of ``val.txt`` (the usual evaluation split: the test set's
annotations were never released), both in file order.

Preprocessing (one fixed size for every image, since robustprune holds each
split as ``(N, H, W, 3)`` uint8 images and ``(N, H, W)`` masks): the *test*
transform of the paper's DeepLabV3 recipe, applied to both splits.

1. Resize so that the shorter side is ``resize`` pixels (513) and the longer
   side ``int(resize * long / short)`` (torchvision's rounding): images with
   Pillow's BILINEAR filter (antialiased, as ``torchvision.transforms.functional.resize``
   does on a PIL image), masks with NEAREST so that only labels of the original
   mask, 255 included, survive.
2. Center-crop ``size`` x ``size`` (513), offsets ``round((h - size) / 2)`` as
   ``torchvision.transforms.functional.center_crop`` computes them.
3. Normalise (done by the host) with the ImageNet mean and std that
   torchvision's DeepLabV3 uses: (0.485, 0.456, 0.406) / (0.229, 0.224, 0.225).

Masks are kept as uint8 (as the host keeps them: int64 masks of VOC 2012 train would take 3 GB).

Source in the paper's code (lucaslie/torchprune):
``paper/lost/param/voc/deeplabv3_resnet50.yaml`` (network ``deeplabv3_resnet50``,
dataset ``VOCSegmentation2011``, ``outputSize: 21``, training file
``training/voc/deeplab.yaml``), which is
``src/experiment/experiment/param/training/voc/deeplab.yaml``: ``transformsTest``
= ``SegRandomResize(min_size=513, max_size=513)`` + ``SegCenterCrop(513)``;
``transformsTrain`` = ``SegRandomResize(256, 1024)`` + ``SegRandomHorizontalFlip(0.5)``
+ ``SegRandomCrop(513)``; ``transformsFinal`` = ``SegToTensor`` +
``SegNormalize`` with the ImageNet mean/std; the transforms are in
``src/torchprune/torchprune/util/transforms.py`` (image resized bilinear,
target NEAREST; crops of images smaller than the crop padded with 0, masks
with 255) and the datasets in ``src/torchprune/torchprune/util/datasets/voc.py``.

How this differs from torchprune:

* Training images here are the fixed test-time crop (shorter side 513, central
  513 x 513). torchprune draws a new random shorter side in [256, 1024], a
  random horizontal flip and a random 513 crop (padding small images) each
  epoch, so it sees the whole image at many scales; here the borders of the
  longer side beyond the central crop are never seen, in training or testing.
  A recipe's own augmentation (``crop``, ``crop_flip``, ``resized_crop_flip``)
  is applied by the host on top of these fixed crops.
* Testing on the central crop is what torchprune does too (the same two
  transforms), so nominal mIoU on ``val`` is comparable; pixels outside the
  crop are not scored in either.
* torchprune's ``VOCSegmentation2011`` is ``torchvision.datasets.SBDataset``
  (the Semantic Boundaries Dataset of Hariharan et al., images of VOC 2011:
  8498 train / 2857 val images, ``.mat`` masks without 255 borders), and its
  ``VOCSegmentation2012`` trains on the augmented ``train_aug`` list (10582
  images, ``SegmentationClassAug`` masks). This plugin reads the official VOC
  segmentation split instead (2011: 1112 train / 1111 val; 2012: 1464 train /
  1449 val) with its 255 object borders; neither SBD nor the augmented masks
  are read.
* Corrupted test sets: torchprune generates VOC-C with the ``imagecorruptions``
  package on the *un-resized* images and saves them as JPEG; robustprune
  applies its shifts to the 513 x 513 crops held in memory.

Parameters (``Suite(dataset_params={"voc": {...}})``): ``year`` ("2011", the
paper's, or "2012"), ``size`` (513: the crop), ``resize`` (the shorter side
before cropping; default ``size``), ``train_subset`` / ``test_subset`` (a count
or a fraction, a seeded random subset chosen before any file is decoded),
``train_split`` / ``test_split`` (the lists in ``ImageSets/Segmentation``,
"train" and "val"), ``workers`` (decoding threads). ``root`` is the data root,
as for every dataset. With ``download`` (``--rp-download``) torchvision
fetches the year's trainval archive into the data root.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from robustprune import IGNORE_INDEX, DatasetRequest, DatasetSpec, DataSplits, ImageSet, hookimpl
from robustprune.plugin.datafiles import DataFileError, stratified_subset, subset_size

# torchvision's DeepLabV3 (and torchprune's deeplab.yaml) normalise with ImageNet's statistics
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)

CLASS_NAMES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)
NUM_CLASSES = len(CLASS_NAMES)

# the official archives (host.robots.ox.ac.uk); torchvision downloads the same files from its mirror
ARCHIVES = {
    "2011": "http://host.robots.ox.ac.uk/pascal/VOC/voc2011/VOCtrainval_25-May-2011.tar",
    "2012": "http://host.robots.ox.ac.uk/pascal/VOC/voc2012/VOCtrainval_11-May-2012.tar",
}
YEARS = tuple(ARCHIVES)
DEFAULT_YEAR = "2011"  # the paper's (torchprune's VOCSegmentation2011)
CROP = 513  # torchprune's training/voc/deeplab.yaml: SegRandomResize(513, 513) + SegCenterCrop(513) at test time

_DEFAULTS: dict[str, Any] = {
    "year": DEFAULT_YEAR, "size": CROP, "resize": None, "train_subset": None, "test_subset": None,
    "train_split": "train", "test_split": "val", "workers": None,
}

_POINT_AT_DATA = ("point robustprune at that data root with --rp-data DIR (robustprune run --data DIR), "
                  "ROBUSTPRUNE_DATA=DIR, or Suite(dataset_params={'voc': {'root': DIR}})")


@dataclass(frozen=True)
class _Options:
    year: str
    size: int
    resize: int
    train_subset: Any
    test_subset: Any
    train_split: str
    test_split: str
    workers: int


def _options(params: Mapping[str, Any]) -> _Options:
    unknown = sorted(set(params) - set(_DEFAULTS))
    if unknown:
        raise ValueError(f"unknown voc parameter(s) {', '.join(unknown)}; valid: {', '.join(_DEFAULTS)}")
    p = {**_DEFAULTS, **params}
    year = str(p["year"])
    if year not in YEARS:
        raise ValueError(f"voc's year must be one of {', '.join(YEARS)} (segmentation splits of the Pascal VOC "
                         f"challenge), got {p['year']!r}")
    size = _positive_int(p["size"], "size")
    resize = size if p["resize"] is None else _positive_int(p["resize"], "resize")
    if resize < size:
        raise ValueError(f"voc needs resize >= size (the crop is cut from the resized image), got resize={resize}, "
                         f"size={size}")
    for name in ("train_split", "test_split"):
        if not isinstance(p[name], str) or not p[name] or "/" in p[name]:
            raise ValueError(f"voc's {name} names a list in ImageSets/Segmentation (such as 'train'), "
                             f"got {p[name]!r}")
    workers = _positive_int(p["workers"], "workers") if p["workers"] is not None else min(8, os.cpu_count() or 1)
    return _Options(year, size, resize, p["train_subset"], p["test_subset"], p["train_split"], p["test_split"],
                    workers)


def _positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"voc's {name} must be a positive integer, got {value!r}")
    return int(value)


# --------------------------------------------------------------------------- finding the data


def _layout(year: str, splits: Sequence[str] = ("train", "val")) -> str:
    return (f"<root>/VOCdevkit/VOC{year}/ with JPEGImages/<id>.jpg, SegmentationClass/<id>.png (palette PNGs: "
            f"class 0..20, 255 = ignore) and ImageSets/Segmentation/{{{','.join(splits)}}}.txt, as extracted "
            f"from {ARCHIVES[year]}")


def _fix(year: str) -> str:
    return (f"download {ARCHIVES[year]} and extract it into a data root DIR (it creates DIR/VOCdevkit/VOC{year}/; "
            f"the 2011 archive DIR/TrainVal/VOCdevkit/VOC2011/, also accepted), then {_POINT_AT_DATA}; or add "
            "--rp-download (robustprune run --download) on a machine with a network")


def find_folder(root: Path | None, year: str) -> Path | None:
    """The ``VOC<year>`` folder under ``root`` (or ``root`` itself), ``None`` if there is none."""
    if root is None:
        return None
    name = f"VOC{year}"
    candidates = (root / "VOCdevkit" / name, root / name, root / "TrainVal" / "VOCdevkit" / name, root)
    for candidate in candidates:
        if not candidate.is_dir():
            continue
        # a folder named for another year is that year's data, whatever it holds
        other_year = re.fullmatch(r"VOC20\d\d", candidate.name) is not None and candidate.name != name
        if candidate.name == name or ((candidate / "JPEGImages").is_dir() and not other_year):
            return candidate
    return None


def _expected_folder(root: Path | None, year: str) -> Path:
    """The folder named in messages when none is found."""
    if root is None:
        return Path("<data root>") / "VOCdevkit" / f"VOC{year}"
    return root / "VOCdevkit" / f"VOC{year}"


def _missing(folder: Path, splits: Sequence[str]) -> list[str]:
    """The parts of the layout missing in ``folder``."""
    wanted = ["JPEGImages/", "SegmentationClass/", *(f"ImageSets/Segmentation/{s}.txt" for s in splits)]
    return [w for w in wanted if not ((folder / w).is_dir() if w.endswith("/") else (folder / w).is_file())]


def _year_hint(root: Path | None, year: str) -> str:
    """A hint when ``root`` is another year's folder."""
    if root is None:
        return ""
    other = [p.name for p in (root, *_children(root), *_children(root / "VOCdevkit"))
             if re.fullmatch(r"VOC20\d\d", p.name) and p.name != f"VOC{year}"]
    if other:
        return f" (found {', '.join(sorted(set(other)))}: set the voc parameter year to read it)"
    return ""


def _children(folder: Path) -> list[Path]:
    try:
        return [p for p in folder.iterdir() if p.is_dir()]
    except OSError:
        return []


def _problem(request: DatasetRequest, options: _Options) -> tuple[str, Path] | None:
    """What keeps the data from loading (a sentence and the folder looked at), or ``None``."""
    splits = (options.train_split, options.test_split)
    if request.root is None:
        return "no data root is set", _expected_folder(None, options.year)
    folder = find_folder(request.root, options.year)
    if folder is None:
        return (f"no VOC{options.year} folder{_year_hint(request.root, options.year)}",
                _expected_folder(request.root, options.year))
    missing = _missing(folder, splits)
    if missing:
        return f"{', '.join(missing)} missing", folder
    return None


def check_voc(request: DatasetRequest) -> str | None:
    """``None`` if :func:`load_voc` will find its data (no file is decoded), else what is missing and the fix."""
    try:
        options = _options(request.params)
    except ValueError:
        return None  # not a data problem: load raises the parameter error, which must not turn into a skip
    if request.download and request.root is not None:
        return None
    problem = _problem(request, options)
    if problem is None:
        return None
    what, folder = problem
    looked = what if request.root is None else f"looked for {folder} ({what})"
    return f"Pascal VOC {options.year} is not on disk here: {looked}. Fix: {_fix(options.year)}."


def _download(root: Path, year: str) -> None:
    """Fetch and extract the year's trainval archive with torchvision (which checks its MD5)."""
    import torchvision.datasets

    root.mkdir(parents=True, exist_ok=True)
    torchvision.datasets.VOCSegmentation(root=str(root), year=year, image_set="train", download=True)


# --------------------------------------------------------------------------- reading


def read_ids(path: Path, layout: str, fix: str) -> list[str]:
    """The image ids listed in one ``ImageSets/Segmentation/<split>.txt``."""
    try:
        ids = [line.strip() for line in path.read_text().splitlines()]
    except (OSError, UnicodeDecodeError) as exc:
        raise DataFileError(f"split list unreadable ({type(exc).__name__}: {exc})", path, layout, fix) from None
    ids = [i for i in ids if i]
    if not ids:
        raise DataFileError("split list is empty", path, layout, fix)
    return ids


def resized_size(width: int, height: int, resize: int) -> tuple[int, int]:
    """``(width, height)`` with the shorter side ``resize``, the longer as torchvision's ``resize`` rounds it."""
    if width <= height:
        return resize, int(resize * height / width)
    return int(resize * width / height), resize


def center_box(width: int, height: int, size: int) -> tuple[int, int, int, int]:
    """The central ``size`` x ``size`` box, offsets rounded as torchvision's ``center_crop`` rounds them."""
    left, top = int(round((width - size) / 2.0)), int(round((height - size) / 2.0))
    return left, top, left + size, top + size


def decode_pair(image_path: Path, mask_path: Path, resize: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """One image and its mask, resized (bilinear / nearest) and center-cropped to ``size`` x ``size``.

    Raises :class:`DataFileError` naming the file that is missing, unreadable or of the wrong size or kind.
    """
    from PIL import Image

    expected = "a JPEG image and a palette PNG of the same width and height, mask values 0..20 or 255"
    fix = "extract the archive again, or remove the id from the split list"

    def open_file(path: Path, what: str) -> Image.Image:
        try:
            image = Image.open(path)
            image.load()
            return image
        except FileNotFoundError:
            raise DataFileError(f"{what} listed in the split but not found", path, expected, fix) from None
        except Exception as exc:  # noqa: BLE001 - a truncated or foreign file
            raise DataFileError(f"{what} unreadable ({type(exc).__name__}: {exc})", path, expected, fix) from None

    with open_file(image_path, "image") as raw_image, open_file(mask_path, "mask") as raw_mask:
        if raw_mask.mode not in ("P", "L"):
            raise DataFileError(f"mask is a {raw_mask.mode} image, not a palette (P) PNG of class indices",
                                mask_path, expected, "use the SegmentationClass PNGs as released (not recoloured)")
        if raw_mask.size != raw_image.size:
            raise DataFileError(f"mask is {raw_mask.size[0]}x{raw_mask.size[1]} but its image {image_path.name} "
                                f"is {raw_image.size[0]}x{raw_image.size[1]} (width x height)",
                                mask_path, expected, fix)
        width, height = raw_image.size
        new_size = resized_size(width, height, resize)
        box = center_box(*new_size, size)
        image = raw_image.convert("RGB").resize(new_size, Image.Resampling.BILINEAR).crop(box)
        mask = raw_mask.resize(new_size, Image.Resampling.NEAREST).crop(box)
        labels = np.asarray(mask, dtype=np.uint8)
    bad = (labels >= NUM_CLASSES) & (labels != IGNORE_INDEX)
    if bad.any():
        raise DataFileError(f"mask holds value {int(labels[bad][0])}, not a class (0..{NUM_CLASSES - 1}) or "
                            f"{IGNORE_INDEX}", mask_path, expected, fix)
    return np.asarray(image, dtype=np.uint8), labels


def _read_split(folder: Path, ids: Sequence[str], options: _Options) -> ImageSet:
    size = options.size
    images = np.empty((len(ids), size, size, 3), dtype=np.uint8)
    masks = np.empty((len(ids), size, size), dtype=np.uint8)

    def one(i: int) -> None:
        images[i], masks[i] = decode_pair(folder / "JPEGImages" / f"{ids[i]}.jpg",
                                          folder / "SegmentationClass" / f"{ids[i]}.png", options.resize, size)

    # Pillow releases the GIL while decoding and resizing, so threads use the cores
    with ThreadPoolExecutor(max_workers=options.workers) as pool:
        list(pool.map(one, range(len(ids))))
    return ImageSet(images, masks)


def load_voc(request: DatasetRequest) -> DataSplits:
    """Pascal VOC ``year``'s segmentation split: train = ``train.txt``, test = ``val.txt``."""
    options = _options(request.params)
    layout, fix = _layout(options.year, (options.train_split, options.test_split)), _fix(options.year)
    if request.download and request.root is not None and _problem(request, options) is not None:
        _download(request.root, options.year)
    problem = _problem(request, options)
    if problem is not None:
        what, looked = problem
        raise DataFileError(f"Pascal VOC {options.year} not found ({what})", looked, layout, fix)
    folder = find_folder(request.root, options.year)
    assert folder is not None
    parts = {}
    for split, name, subset in (("train", options.train_split, options.train_subset),
                                ("test", options.test_split, options.test_subset)):
        ids = read_ids(folder / "ImageSets" / "Segmentation" / f"{name}.txt", layout, fix)
        what = f"{split}_subset"
        index = stratified_subset(np.zeros(len(ids)), subset_size(subset, len(ids), what), request.seed, salt=what)
        parts[split] = _read_split(folder, [ids[i] for i in index], options)
    return DataSplits(
        train=parts["train"], test=parts["test"], num_classes=NUM_CLASSES, mean=IMAGENET_MEAN, std=IMAGENET_STD,
        class_names=CLASS_NAMES, task="segmentation",
    )


@hookimpl
def robustprune_register_datasets(register):
    register(
        DatasetSpec(
            name="voc",
            load=load_voc,
            check=check_voc,
            description="Pascal VOC 2011/2012 segmentation (train.txt / val.txt), shorter side resized to 513 "
                        "and center-cropped to 513x513",
        )
    )
