"""scikit-learn's bundled handwritten digits (1,797 real 8x8 images), as 32x32 RGB.

Upsampled to CIFAR's size so that the corruptions (ImageNet-C's need at least 32x32) and the
CIFAR-style networks apply; the split is stratified and seeded, so every run
with the same seed trains and tests on the same images.
"""

from __future__ import annotations

import numpy as np

from robustprune import DatasetRequest, DatasetSpec, DataSplits, ImageSet, hookimpl

_PARAMS = {"test_fraction": 0.2}


def load_digits_32(request: DatasetRequest) -> DataSplits:
    unknown = sorted(set(request.params) - set(_PARAMS))
    if unknown:
        raise ValueError(f"unknown digits parameter(s) {', '.join(unknown)}; valid: {', '.join(_PARAMS)}")
    test_fraction = float(request.params.get("test_fraction", _PARAMS["test_fraction"]))
    if not 0 < test_fraction < 1:
        raise ValueError(f"digits test_fraction must be in (0, 1), got {test_fraction}")

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


@hookimpl
def robustprune_register_datasets(register):
    register(
        DatasetSpec(
            name="digits",
            load=load_digits_32,
            description="scikit-learn handwritten digits, 8x8 upsampled to 32x32 RGB, stratified 80/20 split",
        )
    )
