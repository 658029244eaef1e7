"""CIFAR-10 and CIFAR-100 from their python-pickle batches, CIFAR-10-C arrays and CIFAR-10.1.

Datasets:

* ``cifar10`` / ``cifar100``: the "python version" archives as torchvision
  reads them: ``<root>/cifar-10-batches-py/{data_batch_1..5, test_batch,
  batches.meta}`` and ``<root>/cifar-100-python/{train, test, meta}``. With the
  download switch (``--rp-download``) torchvision fetches them into ``<root>``.
* ``cifar10_1``: trained on CIFAR-10's training set, tested on CIFAR-10.1
  (``cifar10.1_v6_data.npy`` / ``_labels.npy``, Recht et al. 2018).

Published shifts (:attr:`robustprune.DataSplits.published_shift`):

* The 19 corruptions at severity s are read from ``<root>/CIFAR-10-C/<name>.npy``
  (``CIFAR-100-C`` for cifar100) when that folder exists: one uint8 array per
  corruption with severities 1-5 stacked in blocks the size of the test set,
  plus ``labels.npy``. They replace the generated corruptions (the same
  CIFAR-10-C parameters, in robustprune's implementation: close, not identical).
* ``cifar10_1@6`` (and ``@4``) on ``cifar10``: CIFAR-10.1 as a shift of CIFAR-10,
  a new test set with its own images and labels.

Parameters (``Suite(dataset_params={"cifar10": {...}})``):
``train_subset`` / ``test_subset`` (a count or a fraction; seeded and
stratified; the published corruption arrays are cut to the same test images),
``published_corruptions`` (a folder, or ``False`` to generate corruptions even
when the arrays are on disk), ``cifar10_1`` (the folder holding the CIFAR-10.1
files; default ``<root>/CIFAR-10.1``), ``version`` (``cifar10_1`` only: 4 or 6).
``root`` is the data root, as for every dataset.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from robustprune import (
    DatasetRequest,
    DatasetSpec,
    DataSplits,
    ImageSet,
    PublishedShift,
    ShiftedSet,
    ShiftParam,
    hookimpl,
)
from robustprune.plugin.datafiles import DataFileError, load_data_pickle, stratified_subset, subset_size

# The normalisation of the paper's code (torchprune) for CIFAR-10; CIFAR-100's own statistics.
CIFAR10_MEAN, CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)
CIFAR100_MEAN, CIFAR100_STD = (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)

# The file names of the published CIFAR-10-C / CIFAR-100-C release (Hendrycks & Dietterich 2019).
CORRUPTIONS = (
    "gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "glass_blur", "motion_blur", "zoom_blur",
    "snow", "frost", "fog", "brightness", "contrast", "elastic_transform", "pixelate", "jpeg_compression",
    "speckle_noise", "gaussian_blur", "spatter", "saturate",
)
SEVERITIES = 5
CIFAR10_1_VERSIONS = (4, 6)

_POINT_AT_DATA = (
    "point robustprune at that data root with --rp-data DIR (robustprune run --data DIR), "
    "ROBUSTPRUNE_DATA=DIR, or Suite(dataset_params={{'{dataset}': {{'root': DIR}}}})"
)


@dataclass(frozen=True)
class CifarLayout:
    """Where one CIFAR variant's python-pickle batches live and what they hold."""

    title: str
    folder: str
    train_files: tuple[str, ...]
    test_files: tuple[str, ...]
    meta_file: str
    label_key: str
    names_key: str
    num_classes: int
    url: str
    corruptions_folder: str
    torchvision_class: str

    def describe(self) -> str:
        files = ", ".join((*self.train_files, *self.test_files))
        return f"{self.folder}/ with the python-pickle batches {files} (as extracted from {self.url})"


CIFAR10 = CifarLayout(
    title="CIFAR-10", folder="cifar-10-batches-py",
    train_files=tuple(f"data_batch_{i}" for i in range(1, 6)), test_files=("test_batch",),
    meta_file="batches.meta", label_key="labels", names_key="label_names", num_classes=10,
    url="https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz", corruptions_folder="CIFAR-10-C",
    torchvision_class="CIFAR10",
)
CIFAR100 = CifarLayout(
    title="CIFAR-100", folder="cifar-100-python", train_files=("train",), test_files=("test",),
    meta_file="meta", label_key="fine_labels", names_key="fine_label_names", num_classes=100,
    url="https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz", corruptions_folder="CIFAR-100-C",
    torchvision_class="CIFAR100",
)


# --------------------------------------------------------------------------- reading


def read_batch(path: Path, label_key: str, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """One pickled batch as uint8 ``(N, 32, 32, 3)`` images and int64 labels."""
    expected = (f"a pickled dict with 'data' (N x 3072 uint8, channel-major rows of 32x32 images) and "
                f"'{label_key}' (N integers in 0..{num_classes - 1}), as in the python version of CIFAR")
    fix = "download and extract the archive again (or pass --rp-download on a machine with a network)"
    try:
        with open(path, "rb") as f:
            batch = load_data_pickle(f)
    except FileNotFoundError:
        raise DataFileError("CIFAR batch not found", path, expected, fix) from None
    except Exception as exc:  # noqa: BLE001 - any unpicklable content is a malformed file
        raise DataFileError(f"CIFAR batch unreadable ({type(exc).__name__}: {exc})", path, expected, fix) from None
    if not isinstance(batch, Mapping) or "data" not in batch or label_key not in batch:
        keys = sorted(batch) if isinstance(batch, Mapping) else type(batch).__name__
        raise DataFileError(f"CIFAR batch has the wrong content (found {keys})", path, expected, fix)
    data = np.asarray(batch["data"])
    labels = np.asarray(batch[label_key])
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(labels) != len(data):
        raise DataFileError(
            f"CIFAR batch has data of shape {data.shape} and {len(labels)} labels", path, expected, fix
        )
    if data.dtype != np.uint8 or (len(labels) and (labels.min() < 0 or labels.max() >= num_classes)):
        raise DataFileError(
            f"CIFAR batch has {data.dtype} data or labels outside 0..{num_classes - 1}", path, expected, fix
        )
    images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)  # rows are R, G, B planes
    return np.ascontiguousarray(images), labels.astype(np.int64)


def find_folder(layout: CifarLayout, root: Path | None) -> Path | None:
    """``root/<folder>``, or ``root`` itself if it is that folder; ``None`` if neither holds the batches."""
    if root is None:
        return None
    for candidate in (root / layout.folder, root):
        if candidate.name == layout.folder and candidate.is_dir():
            return candidate
    return None


def _missing(layout: CifarLayout, root: Path | None) -> tuple[Path, list[str]]:
    """The folder looked at and the batch files missing there."""
    names = [*layout.train_files, *layout.test_files]
    if root is None:
        return Path("<data root>") / layout.folder, names
    folder = find_folder(layout, root)
    return folder or root / layout.folder, [n for n in names if folder is None or not (folder / n).is_file()]


def _fix(layout: CifarLayout, dataset: str) -> str:
    return (f"extract {layout.url} into a data root DIR (it creates DIR/{layout.folder}/) and "
            f"{_point_at_data(dataset)}; or add --rp-download (robustprune run --download) on a machine "
            "with a network")


def missing_message(layout: CifarLayout, dataset: str, request: DatasetRequest) -> str | None:
    """Why ``layout`` cannot be loaded for ``request`` (``None`` if it can); the ``check`` of its DatasetSpec."""
    if request.download and request.root is not None:
        return None
    folder, missing = _missing(layout, request.root)
    if not missing:
        return None
    looked = "no data root is set" if request.root is None else f"looked for {folder} ({', '.join(missing)} missing)"
    return f"{layout.title} is not on disk here: {looked}. Fix: {_fix(layout, dataset)}."


def _point_at_data(dataset: str) -> str:
    return _POINT_AT_DATA.format(dataset=dataset)


def read_cifar(layout: CifarLayout, dataset: str,
               request: DatasetRequest) -> tuple[ImageSet, ImageSet, tuple[str, ...]]:
    """The full train and test sets of ``layout`` (downloading first if asked to and absent)."""
    if request.download and request.root is not None and _missing(layout, request.root)[1]:
        _download(layout, request.root)
    folder, missing = _missing(layout, request.root)
    if missing:
        problem = "no data root is set" if request.root is None else f"{', '.join(missing)} missing"
        raise DataFileError(f"{layout.title} not found ({problem})", folder, layout.describe(), _fix(layout, dataset))
    parts = {}
    for split, files in (("train", layout.train_files), ("test", layout.test_files)):
        batches = [read_batch(folder / name, layout.label_key, layout.num_classes) for name in files]
        parts[split] = ImageSet(np.concatenate([b[0] for b in batches]), np.concatenate([b[1] for b in batches]))
    return parts["train"], parts["test"], _class_names(folder / layout.meta_file, layout)


def _class_names(path: Path, layout: CifarLayout) -> tuple[str, ...]:
    # the meta file is optional for loading: names only label the report
    try:
        with open(path, "rb") as f:
            names = load_data_pickle(f)[layout.names_key]
        if len(names) == layout.num_classes:
            return tuple(str(n) for n in names)
    except Exception:  # noqa: BLE001
        pass
    return tuple(str(i) for i in range(layout.num_classes))


def _download(layout: CifarLayout, root: Path) -> None:
    """Fetch and extract the archive with torchvision (which checks its MD5)."""
    import torchvision.datasets

    root.mkdir(parents=True, exist_ok=True)
    getattr(torchvision.datasets, layout.torchvision_class)(root=str(root), train=True, download=True)


# --------------------------------------------------------------------------- published shifts


def read_corruption(folder: Path, name: str, severity: int, index: np.ndarray, block: int) -> ShiftedSet:
    """Severity ``severity`` of one CIFAR-10-C-style array, cut to the test images ``index``."""
    path, labels_path = folder / f"{name}.npy", folder / "labels.npy"
    expected = (f"{name}.npy holding uint8 images ({SEVERITIES * block}, 32, 32, 3): severities 1-{SEVERITIES} "
                f"in blocks of {block} (the test set's size), and labels.npy with {SEVERITIES * block} labels")
    fix = (f"download and extract the published arrays into {folder} again, or set "
           "published_corruptions=False in the dataset's parameters to generate corruptions instead")
    images = _load_npy(path, expected, fix)
    labels = _load_npy(labels_path, expected, fix)
    if images.shape != (SEVERITIES * block, 32, 32, 3) or images.dtype != np.uint8:
        raise DataFileError(f"corruption array of shape {images.shape} and dtype {images.dtype}", path, expected, fix)
    if labels.shape != (SEVERITIES * block,) or not np.issubdtype(labels.dtype, np.integer):
        raise DataFileError(f"labels of shape {labels.shape} and dtype {labels.dtype}", labels_path, expected, fix)
    rows = (severity - 1) * block + index
    return ShiftedSet(ImageSet(np.ascontiguousarray(images[rows]), labels[rows].astype(np.int64)), str(path))


def read_cifar10_1(folder: Path, version: int) -> ShiftedSet:
    """The CIFAR-10.1 test set of ``version`` (4 or 6)."""
    if version not in CIFAR10_1_VERSIONS:
        raise ValueError(f"CIFAR-10.1 exists in versions {' and '.join(map(str, CIFAR10_1_VERSIONS))}, not {version}")
    data_path, labels_path = _cifar10_1_files(folder, version)
    expected = (f"cifar10.1_v{version}_data.npy (uint8, (N, 32, 32, 3)) and cifar10.1_v{version}_labels.npy "
                f"(N integers in 0..9) from https://github.com/modestyachts/CIFAR-10.1 (folder datasets/)")
    fix = (f"put both files in {folder} (or set the dataset parameter cifar10_1 to the folder that holds them)")
    images = _load_npy(data_path, expected, fix)
    labels = _load_npy(labels_path, expected, fix)
    if images.ndim != 4 or images.shape[1:] != (32, 32, 3) or images.dtype != np.uint8:
        raise DataFileError(f"CIFAR-10.1 images of shape {images.shape} and dtype {images.dtype}",
                            data_path, expected, fix)
    if labels.shape != (len(images),) or not np.issubdtype(labels.dtype, np.integer) or (
        len(labels) and (labels.min() < 0 or labels.max() > 9)
    ):
        raise DataFileError(f"CIFAR-10.1 labels of shape {labels.shape} and dtype {labels.dtype}",
                            labels_path, expected, fix)
    # copied out of the read-only memory map: tensors made from it must be writable
    return ShiftedSet(ImageSet(np.array(images), labels.astype(np.int64)), str(data_path))


def _cifar10_1_files(folder: Path, version: int) -> tuple[Path, Path]:
    stem = f"cifar10.1_v{version}"
    # the repository keeps them in datasets/; accept the folder or that subfolder
    for candidate in (folder, folder / "datasets"):
        if (candidate / f"{stem}_data.npy").is_file():
            return candidate / f"{stem}_data.npy", candidate / f"{stem}_labels.npy"
    return folder / f"{stem}_data.npy", folder / f"{stem}_labels.npy"


def _load_npy(path: Path, expected: str, fix: str) -> np.ndarray:
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except FileNotFoundError:
        raise DataFileError("file not found", path, expected, fix) from None
    except Exception as exc:  # noqa: BLE001 - a truncated or foreign file
        raise DataFileError(f"not a readable .npy file ({type(exc).__name__}: {exc})", path, expected, fix) from None


def published_shifts(
    dataset: str,
    corruptions: Path | None,
    cifar10_1: Path | None,
    test_index: np.ndarray,
    full_test_size: int,
) -> Callable[[str, Any], ShiftedSet | None]:
    """The ``published_shift`` callable of a CIFAR dataset."""

    def lookup(name: str, param: Any) -> ShiftedSet | None:
        if name == "cifar10_1":
            if cifar10_1 is None:
                raise ValueError(f"dataset {dataset} does not provide cifar10_1: it is a shift of cifar10 "
                                 "(and needs a data root; cifar10_1=False turns it off)")
            return read_cifar10_1(cifar10_1, int(param))
        if corruptions is not None and name in CORRUPTIONS and float(param).is_integer() and 1 <= param <= SEVERITIES:
            return read_corruption(corruptions, name, int(param), test_index, full_test_size)
        return None

    return lookup


# --------------------------------------------------------------------------- datasets

_COMMON_PARAMS = ("train_subset", "test_subset")


def _check_params(dataset: str, params: Mapping[str, Any], valid: tuple[str, ...]) -> None:
    unknown = sorted(set(params) - set(valid))
    if unknown:
        raise ValueError(f"unknown {dataset} parameter(s) {', '.join(unknown)}; valid: {', '.join(valid)}")


def _subset(images: ImageSet, value: Any, seed: int, what: str) -> tuple[ImageSet, np.ndarray]:
    index = stratified_subset(images.labels, subset_size(value, len(images), what), seed, salt=what)
    if len(index) == len(images):
        return images, index
    return ImageSet(np.ascontiguousarray(images.images[index]), images.labels[index]), index


def _folder_param(request: DatasetRequest, name: str, default: str) -> Path | None:
    """A folder parameter: an explicit path (relative to the data root), else ``root/default``."""
    value = request.params.get(name)
    if value is False:
        return None
    if value is None:
        return request.root / default if request.root is not None else None
    path = Path(value).expanduser()
    return path if path.is_absolute() or request.root is None else request.root / path


def load_cifar(layout: CifarLayout, dataset: str, request: DatasetRequest) -> DataSplits:
    valid = (*_COMMON_PARAMS, "published_corruptions", *(("cifar10_1",) if layout is CIFAR10 else ()))
    _check_params(dataset, request.params, valid)
    train, test, names = read_cifar(layout, dataset, request)
    train, _ = _subset(train, request.params.get("train_subset"), request.seed, "train_subset")
    full_test_size = len(test)
    test, test_index = _subset(test, request.params.get("test_subset"), request.seed, "test_subset")
    corruptions = _folder_param(request, "published_corruptions", layout.corruptions_folder)
    explicit = request.params.get("published_corruptions") not in (None, False)
    if corruptions is not None and not corruptions.is_dir():
        if explicit:
            raise DataFileError(
                "published corruption folder not found", corruptions,
                f"one <corruption>.npy per corruption ({', '.join(CORRUPTIONS[:3])}, ...) and labels.npy",
                "fix the published_corruptions parameter, or remove it to generate corruptions",
            )
        corruptions = None  # not downloaded: corruptions are generated
    cifar10_1 = _folder_param(request, "cifar10_1", "CIFAR-10.1") if layout is CIFAR10 else None
    mean, std = (CIFAR10_MEAN, CIFAR10_STD) if layout is CIFAR10 else (CIFAR100_MEAN, CIFAR100_STD)
    return DataSplits(
        train=train, test=test, num_classes=layout.num_classes, mean=mean, std=std, class_names=names,
        published_shift=published_shifts(dataset, corruptions, cifar10_1, test_index, full_test_size),
    )


def load_cifar10_1(request: DatasetRequest) -> DataSplits:
    """CIFAR-10's training set with CIFAR-10.1 as the test set."""
    _check_params("cifar10_1", request.params, (*_COMMON_PARAMS, "cifar10_1", "version"))
    version = int(request.params.get("version", 6))
    folder = _folder_param(request, "cifar10_1", "CIFAR-10.1")
    if folder is None:
        raise DataFileError("CIFAR-10.1 not found: no data root is set", Path("<data root>") / "CIFAR-10.1",
                            f"cifar10.1_v{version}_data.npy and cifar10.1_v{version}_labels.npy",
                            _point_at_data("cifar10_1"))
    train, _, names = read_cifar(CIFAR10, "cifar10_1", request)
    published = read_cifar10_1(folder, version)
    train, _ = _subset(train, request.params.get("train_subset"), request.seed, "train_subset")
    test, _ = _subset(published.test, request.params.get("test_subset"), request.seed, "test_subset")
    return DataSplits(train=train, test=test, num_classes=10, mean=CIFAR10_MEAN, std=CIFAR10_STD, class_names=names)


def check_cifar10_1(request: DatasetRequest) -> str | None:
    problem = missing_message(CIFAR10, "cifar10_1", request)
    if problem is not None:
        return problem
    folder = _folder_param(request, "cifar10_1", "CIFAR-10.1")
    version = int(request.params.get("version", 6))
    data_path, labels_path = _cifar10_1_files(folder, version) if folder is not None else (None, None)
    if data_path is None or labels_path is None or not (data_path.is_file() and labels_path.is_file()):
        return (f"CIFAR-10.1 is not on disk here: looked for {data_path} and its _labels.npy. Put the v{version} "
                f"files from https://github.com/modestyachts/CIFAR-10.1 there, or {_point_at_data('cifar10_1')}.")
    return None


@hookimpl
def robustprune_register_datasets(register):
    for layout, name in ((CIFAR10, "cifar10"), (CIFAR100, "cifar100")):
        register(
            DatasetSpec(
                name=name,
                load=functools.partial(load_cifar, layout, name),
                check=functools.partial(missing_message, layout, name),
                description=f"{layout.title} from its python-pickle batches under the data root "
                            f"(published {layout.corruptions_folder} arrays used when present)",
            )
        )
    register(
        DatasetSpec(
            name="cifar10_1",
            load=load_cifar10_1,
            check=check_cifar10_1,
            description="CIFAR-10 training set, CIFAR-10.1 (v6 by default) as the test set",
        )
    )


@hookimpl
def robustprune_register_shifts(register):
    register(
        PublishedShift(
            name="cifar10_1",
            param=ShiftParam("version", int, 4, 6),
            description="CIFAR-10.1 (Recht et al.) as a shift of CIFAR-10: a new test set, read from disk",
        )
    )
