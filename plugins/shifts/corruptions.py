"""The 19 corruptions of Hendrycks & Dietterich at severities 1-5, in two parameter families.

- ``cifar10-c``: the parameters of CIFAR-10-C, calibrated for 32x32 images
  (:mod:`.cifar10c`: our implementation on numpy, scipy and Pillow; no OpenCV);
- ``imagenet-c``: ImageNet-C's parameters, for 224x224 images, through the
  ``imagecorruptions`` package (which imports OpenCV).

A dataset of 32x32 images (or smaller) gets ``cifar10-c``, larger images
``imagenet-c``; a suite's ``shift_family`` overrides that. The
published CIFAR-10-C arrays, where on disk, win over both (the cifar dataset
supplies them).

Groups: ``corruptions`` (all 19), and the package's subsets ``noise``,
``blur``, ``weather``, ``digital`` (the 15 common ones) and ``validation``
(speckle noise, gaussian blur, spatter, saturate). The names are listed here,
not asked of ``imagecorruptions``, so that registering them never imports
OpenCV.

Each image is corrupted under its own seed. In the ImageNet-C family most
corruptions draw from numpy's global generator, which we seed per image;
``glass_blur`` shuffles pixels in a numba function whose generator ignores
numpy's global seed, and ``impulse_noise`` takes a seed of its own, so those
two get the seed passed explicitly.
"""

from __future__ import annotations

import functools
import warnings

import numpy as np

from robustprune import SEVERITY, MissingDependencyError, PixelShift, ShiftGroup, hookimpl

from .cifar10c import corrupt_cifar, frost_folder

CIFAR10C, IMAGENETC = "cifar10-c", "imagenet-c"
LARGEST_CIFAR_SIDE = 32
"""Images up to this many pixels on each side (CIFAR, the digits) get the CIFAR-10-C parameters; larger
ones ImageNet-C's."""

SUBSETS: dict[str, tuple[str, ...]] = {
    "noise": ("gaussian_noise", "shot_noise", "impulse_noise"),
    "blur": ("defocus_blur", "glass_blur", "motion_blur", "zoom_blur"),
    "weather": ("snow", "frost", "fog", "brightness"),
    "digital": ("contrast", "elastic_transform", "pixelate", "jpeg_compression"),
    "validation": ("speckle_noise", "gaussian_blur", "spatter", "saturate"),
}
ALL = tuple(name for members in SUBSETS.values() for name in members)

_EXPLICIT_SEED = {"glass_blur", "impulse_noise"}

OPENCV_FIX = (
    "imagecorruptions' ImageNet-C corruptions need OpenCV, and `import cv2` failed here: {problem}.\n"
    "  On a slim container (e.g. python:3.11-slim) the opencv-python wheel lacks the system libraries libGL "
    "and libglib. Either install them:\n"
    "    apt-get install -y libgl1 libglib2.0-0\n"
    "  or replace OpenCV by its build without GUI dependencies:\n"
    "    pip uninstall -y opencv-python && pip install opencv-python-headless\n"
    "  (32x32 datasets use the CIFAR-10-C family, which needs no OpenCV: Suite(shift_family=\"cifar10-c\").)"
)


def _import_opencv() -> None:
    try:
        import cv2  # noqa: F401
    except ImportError as exc:
        raise MissingDependencyError(OPENCV_FIX.format(problem=f"{type(exc).__name__}: {exc}")) from exc


def _import_imagecorruptions() -> None:
    _import_opencv()  # its own message first: the likeliest failure, with the fixes
    try:
        import imagecorruptions  # noqa: F401  # pulls in numba and scikit-image too
    except ImportError as exc:
        raise MissingDependencyError(f"the ImageNet-C corruptions need the imagecorruptions package, whose import "
                                     f"failed: {type(exc).__name__}: {exc}; reinstall it: pip install "
                                     "--force-reinstall imagecorruptions-imaug") from exc


def corrupt_image(name: str, image: np.ndarray, severity: int, seed: int) -> np.ndarray:
    """Corrupt one uint8 (H, W, 3) image deterministically with ImageNet-C's parameters."""
    _import_opencv()
    from imagecorruptions import corrupt  # imported lazily: it pulls in OpenCV, numba and scikit-image

    np.random.seed(seed % 2**32)
    kwargs = {"seed": seed % 2**32} if name in _EXPLICIT_SEED else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scikit-image deprecation chatter, once per image otherwise
        out = corrupt(image, severity=int(severity), corruption_name=name, **kwargs)
    # a few corruptions return a different size for tiny inputs; the network needs the original one
    if out.shape != image.shape:
        raise ValueError(f"{name} returned shape {out.shape} for an image of shape {image.shape}")
    return out


def default_family(height: int, width: int) -> str:
    """CIFAR-10-C's parameters for small images, ImageNet-C's for the rest."""
    return CIFAR10C if max(height, width) <= LARGEST_CIFAR_SIDE else IMAGENETC


def check_ready(name: str, family: str | None) -> None:
    """Before any work: ImageNet-C needs OpenCV importable; CIFAR-10-C's frost needs the frost photographs."""
    if family == IMAGENETC:
        _import_imagecorruptions()
    elif name == "frost":
        folder = frost_folder()
        if not folder.is_dir():
            raise MissingDependencyError(f"frost needs the frost photographs of imagecorruptions in {folder}, "
                                         "which is missing; reinstall it: pip install --force-reinstall "
                                         "imagecorruptions-imaug")


@hookimpl
def robustprune_register_shifts(register):
    for name in ALL:
        register(
            PixelShift(
                name=name,
                apply=functools.partial(corrupt_image, name),
                param=SEVERITY,
                description=f"{name}: CIFAR-10-C parameters up to {LARGEST_CIFAR_SIDE}x{LARGEST_CIFAR_SIDE} "
                            "images, ImageNet-C's above",
                families={CIFAR10C: functools.partial(corrupt_cifar, name),
                          IMAGENETC: functools.partial(corrupt_image, name)},
                default_family=default_family,
                check_ready=functools.partial(check_ready, name),
            )
        )
    register(ShiftGroup("corruptions", ALL, "all 19 corruptions"))
    for subset, members in SUBSETS.items():
        register(ShiftGroup(subset, members, f"imagecorruptions' {subset} subset"))
