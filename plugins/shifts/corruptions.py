"""The 19 corruptions of Hendrycks & Dietterich via ``imagecorruptions``, at severities 1-5.

Groups: ``corruptions`` (all 19), and the package's subsets ``noise``,
``blur``, ``weather``, ``digital`` (the 15 common ones) and ``validation``
(speckle noise, gaussian blur, spatter, saturate).

Each image is corrupted under its own seed. Most corruptions draw from numpy's
global generator, which we seed per image; ``glass_blur`` shuffles pixels in a
numba function whose generator ignores numpy's global seed, and
``impulse_noise`` takes a seed of its own, so those two get the seed passed
explicitly.
"""

from __future__ import annotations

import functools
import warnings

import numpy as np

from robustprune import SEVERITY, PixelShift, ShiftGroup, hookimpl

_EXPLICIT_SEED = {"glass_blur", "impulse_noise"}


def corrupt_image(name: str, image: np.ndarray, severity: int, seed: int) -> np.ndarray:
    """Corrupt one uint8 (H, W, 3) image deterministically."""
    from imagecorruptions import corrupt  # imported lazily: it pulls in numba and scikit-image

    np.random.seed(seed % 2**32)
    kwargs = {"seed": seed % 2**32} if name in _EXPLICIT_SEED else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scikit-image deprecation chatter, once per image otherwise
        out = corrupt(image, severity=int(severity), corruption_name=name, **kwargs)
    # a few corruptions return a different size for tiny inputs; the network needs the original one
    if out.shape != image.shape:
        raise ValueError(f"{name} returned shape {out.shape} for an image of shape {image.shape}")
    return out


def _names(subset: str) -> list[str]:
    from imagecorruptions import get_corruption_names

    return list(get_corruption_names(subset))


@hookimpl
def robustprune_register_shifts(register):
    for name in _names("all"):
        register(
            PixelShift(
                name=name,
                apply=functools.partial(corrupt_image, name),
                param=SEVERITY,
                description=f"imagecorruptions {name} (ImageNet-C parameters)",
            )
        )
    register(ShiftGroup("corruptions", tuple(_names("all")), "all 19 corruptions"))
    for subset in ("noise", "blur", "weather", "digital", "validation"):
        register(ShiftGroup(subset, tuple(_names(subset)), f"imagecorruptions' {subset} subset"))
