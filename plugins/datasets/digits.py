"""scikit-learn's bundled handwritten digits (1,797 real 8x8 images), as 32x32 RGB.

Upsampled to CIFAR's size so that the corruptions (ImageNet-C's need at least 32x32) and the
CIFAR-style networks apply; the split is stratified and seeded, so every run
with the same seed trains and tests on the same images.

``digits_seg`` is the same images as a segmentation task: every stroke pixel
(intensity at least half of full ink after upsampling) is labelled with its
digit's class (1-10 for the digits 0-9), the rest is background (0). Real
images, derived masks, no download: the embedded default of the
``segmentation`` suite.
"""

from __future__ import annotations

import numpy as np

from robustprune import DatasetRequest, DatasetSpec, DataSplits, ImageSet, hookimpl

_PARAMS = {"test_fraction": 0.2}


STROKE = 128
"""digits_seg: a pixel at or above this intensity (of 255, after upsampling) is a stroke of the digit."""


def _test_fraction(request: DatasetRequest, name: str) -> float:
    unknown = sorted(set(request.params) - set(_PARAMS))
    if unknown:
        raise ValueError(f"unknown {name} parameter(s) {', '.join(unknown)}; valid: {', '.join(_PARAMS)}")
    test_fraction = float(request.params.get("test_fraction", _PARAMS["test_fraction"]))
    if not 0 < test_fraction < 1:
        raise ValueError(f"{name} test_fraction must be in (0, 1), got {test_fraction}")
    return test_fraction


def load_digits_32(request: DatasetRequest) -> DataSplits:
    test_fraction = _test_fraction(request, "digits")

    import torch
    import torch.nn.functional as F
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    small = torch.from_numpy(digits.images.astype(np.float32) / 16.0).unsqueeze(1)  # (N, 1, 8, 8) in [0, 1]
    big = F.interpolate(small, size=(32, 32), mode="bilinear", align_corners=False)
    images = (big.clamp(0, 1) * 255).round().to(torch.uint8).squeeze(1).numpy()
    images = np.repeat(images[..., None], 3, axis=-1)  # (N, 32, 32, 3)
    labels = digits.target.astype(np.int64)
    train_idx, test_idx = train_test_split(
        np.arange(len(labels)), test_size=test_fraction, stratify=labels, random_state=request.seed
    )
    train_images = images[np.sort(train_idx)]
    mean = float(train_images.mean() / 255.0)
    std = float(train_images.std() / 255.0)
    return DataSplits(
        train=ImageSet(train_images, labels[np.sort(train_idx)]),
        test=ImageSet(images[np.sort(test_idx)], labels[np.sort(test_idx)]),
        num_classes=10,
        mean=(mean, mean, mean),
        std=(std, std, std),
        class_names=tuple(str(d) for d in range(10)),
    )


def load_digits_seg(request: DatasetRequest) -> DataSplits:
    """``digits``' images and split, each labelled per pixel: stroke pixels with 1 + the digit, the rest 0."""
    digits = load_digits_32(DatasetRequest(seed=request.seed, params={
        "test_fraction": _test_fraction(request, "digits_seg")}))

    def masks(images: ImageSet) -> ImageSet:
        ink = images.images[..., 0] >= STROKE
        labels = np.where(ink, images.labels[:, None, None] + 1, 0).astype(np.uint8)
        return ImageSet(images.images, labels)

    return DataSplits(
        train=masks(digits.train), test=masks(digits.test), num_classes=11, mean=digits.mean, std=digits.std,
        class_names=("background", *digits.class_names), task="segmentation",
    )


@hookimpl
def robustprune_register_datasets(register):
    register(
        DatasetSpec(
            name="digits",
            load=load_digits_32,
            description="scikit-learn handwritten digits, 8x8 upsampled to 32x32 RGB, stratified 80/20 split",
        )
    )
    register(
        DatasetSpec(
            name="digits_seg",
            load=load_digits_seg,
            description="the digits as segmentation: stroke pixels labelled with their digit (11 classes with the "
                        "background), digits' split",
        )
    )
