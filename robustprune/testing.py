"""Contract checks and fixtures for plugin authors: call them from your plugin's own tests.

::

    from robustprune.testing import check_dataset, check_method, check_model, check_shift

    def test_my_method_keeps_the_host_contract():
        check_method(MyMethod())

    def test_my_shift_is_deterministic_and_keeps_images():
        check_shift(MY_SHIFT, 3)

Each check runs the item the way the host does, without a suite or a store,
and raises ``AssertionError`` saying what the host would refuse. With
``pytest_plugins = ["robustprune.testing"]`` in a ``conftest.py`` the
fixtures :func:`tiny_data` and :func:`tiny_parent` are available too, so a
plugin's tests run in seconds.
"""

from __future__ import annotations

import copy
import pickle
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from .compute.compaction import CompactionError, compact
from .compute.data import prepare
from .compute.training import train
from .plugin.api import (
    IGNORE_INDEX,
    DatasetRequest,
    DatasetSpec,
    DataSplits,
    ImageSet,
    ModelSpec,
    PixelShift,
    PruneContext,
    PruneMethod,
    Recipe,
    TensorShift,
    mask_problem,
)
from .plugin.masks import Masks, PruneError, apply_masks, full_masks, prunable_weights, validate_masks
from .plugin.registry import load_registry

__all__ = ["check_dataset", "check_method", "check_model", "check_shift", "tiny_data", "tiny_parent", "tiny_splits"]

_INPUT_SHAPE = (3, 32, 32)


def check_method(method: PruneMethod, *, models: Sequence[str | nn.Module] = ("small_cnn", "resnet20"),
                 ratios: Sequence[float] = (0.3, 0.6), seed: int = 0) -> None:
    """Prune each of ``models`` (names of installed models, or networks taking ``(N, 3, 32, 32)``) in a cascade
    over ``ratios`` as the host does, and check what the host checks: ``prune`` leaves the network alone,
    returns one boolean mask per prunable weight, reaches each ratio within the tolerance, keeps what the
    previous step removed removed; a structured method's masks compact into a smaller network that computes
    exactly what the masked one does."""
    for model in models:
        network = _network(model, seed) if isinstance(model, str) else copy.deepcopy(model)
        where = f"{method.name} on {model if isinstance(model, str) else type(model).__name__}"
        example = torch.randn(2, *_INPUT_SHAPE, generator=torch.Generator().manual_seed(seed))
        masks: Masks = full_masks(network)
        for ratio in ratios:
            size = method.data_size(network, example) if method.data_informed else 0
            data = torch.randn(max(size, 1), *_INPUT_SHAPE, generator=torch.Generator().manual_seed(seed + 1)) \
                if method.data_informed else None
            context = PruneContext.for_network(network, example, masks=masks, seed=seed, data=data)
            before = {k: v.clone() for k, v in network.state_dict().items()}
            returned = method.prune(network, ratio, context)
            changed = [k for k, v in network.state_dict().items() if not torch.equal(v, before[k])]
            assert not changed, f"{where} at ratio {ratio}: prune() modified the network ({', '.join(changed[:3])})"
            # first: the host would combine reviving masks with the previous ones and report a missed ratio
            revived = [n for n, previous in masks.items() if n in returned and tuple(returned[n].shape) == tuple(
                previous.shape) and bool(torch.any(~previous & returned[n].bool().cpu()))]
            assert not revived, (f"{where} at ratio {ratio}: the masks keep weights the previous step removed "
                                 f"({', '.join(revived[:3])}); start from context.masks")
            try:
                combined, _ = validate_masks(returned, masks, ratio, method.name)
            except PruneError as exc:
                raise AssertionError(f"{where} at ratio {ratio}: {exc}") from None
            if method.structured:
                try:
                    compact(network, combined, example)
                except CompactionError as exc:
                    raise AssertionError(f"{where} at ratio {ratio} (structured): {exc}") from None
            with torch.no_grad():
                apply_masks(network, combined)
            masks = combined


def check_shift(shift: PixelShift | TensorShift, param: Any, *, images: np.ndarray | None = None) -> None:
    """Apply ``shift`` at ``param`` as the host does, twice: the same seeds must give the same result, of the
    input's shape and dtype (uint8 images for a pixel shift, a float batch for a tensor shift). A pixel shift
    with parameter families is checked in each family, and its ``default_family`` must name one of them."""
    images = _images(8, seed=0) if images is None else images
    shift.param.parse(str(param))  # the host's range check: raises ValueError naming the range
    if isinstance(shift, PixelShift):
        functions = {"": shift.apply, **{f" (family {name!r})": f for name, f in shift.families.items()}}
        for which, function in functions.items():
            try:
                pickle.dumps(function)
            except Exception as exc:  # noqa: BLE001 - the host refuses it at registration
                raise AssertionError(f"shift {shift.name}{which}: its function cannot be pickled ({exc}); the host "
                                     "runs it in worker processes: use a module-level function") from None
            for seed, image in enumerate(images):
                first = np.asarray(function(image, param, seed))
                again = np.asarray(function(image, param, seed))
                assert first.shape == image.shape and first.dtype == np.uint8, (
                    f"shift {shift.name}@{param}{which} returned {first.shape} {first.dtype} for a "
                    f"{image.shape} uint8 image; return the image's shape as uint8")
                assert np.array_equal(first, again), (
                    f"shift {shift.name}@{param}{which} is not deterministic given its seed")
        if shift.families:
            height, width = images.shape[1:3]
            chosen = shift.family_for(None, int(height), int(width))  # raises if default_family names no family
            assert chosen is None or chosen in shift.families
        return
    batch = torch.from_numpy(images).permute(0, 3, 1, 2).float().div(255.0)
    seeds = np.arange(len(images), dtype=np.int64)
    out, out_again = shift.apply(batch.clone(), param, seeds), shift.apply(batch.clone(), param, seeds)
    assert isinstance(out, torch.Tensor) and out.shape == batch.shape and out.dtype == batch.dtype, (
        f"shift {shift.name}@{param} returned {getattr(out, 'shape', type(out))}; expected a {tuple(batch.shape)} "
        f"{batch.dtype} tensor")
    assert torch.equal(out, out_again), f"shift {shift.name}@{param} is not deterministic given its seeds"


def check_model(spec: ModelSpec, *, num_classes: int = 10, input_shape: tuple[int, int, int] = _INPUT_SHAPE,
                dense: bool = False) -> None:
    """Build the model for ``num_classes`` and ``input_shape``: an ``nn.Module`` with prunable weights whose
    output is ``(N, num_classes)``, or with ``dense`` (a segmentation model) ``(N, num_classes, H, W)``."""
    network = spec.build(num_classes, input_shape)
    assert isinstance(network, nn.Module), f"model {spec.name} built {type(network).__name__}, not an nn.Module"
    assert prunable_weights(network), f"model {spec.name} has no Conv2d or Linear weight to prune"
    network.eval()
    with torch.no_grad():
        out = network(torch.zeros(2, *input_shape))
    expected = (2, num_classes, *input_shape[1:]) if dense else (2, num_classes)
    assert tuple(out.shape) == expected, (
        f"model {spec.name} gives outputs of shape {tuple(out.shape)} for 2 inputs; expected {expected}")


def check_dataset(spec: DatasetSpec, request: DatasetRequest | None = None) -> DataSplits:
    """Load the dataset and check its splits as the host will use them; returns them."""
    splits = spec.load(request or DatasetRequest(seed=0))
    assert isinstance(splits, DataSplits), f"dataset {spec.name} returned {type(splits).__name__}, not DataSplits"
    for part in (splits.train, splits.test):
        assert len(part.images) == len(part.labels) > 0, f"dataset {spec.name}: a split is empty or mismatched"
        labels = np.asarray(part.labels)
        if part.dense:
            problem = mask_problem(labels, splits.num_classes)
            assert problem is None, f"dataset {spec.name}: {problem}"
            assert (labels != IGNORE_INDEX).any(), f"dataset {spec.name}: a split has no labelled pixel"
        else:
            assert labels.min() >= 0 and labels.max() < splits.num_classes, (
                f"dataset {spec.name}: labels outside 0..{splits.num_classes - 1}")
    assert splits.train.images.shape[1:] == splits.test.images.shape[1:], (
        f"dataset {spec.name}: train and test images differ in shape")
    assert len(splits.mean) == len(splits.std) == 3 and all(s > 0 for s in splits.std), (
        f"dataset {spec.name}: mean and std need three values each, std > 0")
    return splits


def tiny_splits(seed: int = 0, classes: int = 2) -> DataSplits:
    """A dataset small enough for a unit test: 64 training and 32 test images of 32x32, ``classes`` classes told
    apart by brightness."""
    rng = np.random.default_rng(seed)

    def part(n: int) -> ImageSet:
        labels = np.arange(n) % classes
        base = (labels * (200 // max(classes - 1, 1)) + 30)[:, None, None, None]
        return ImageSet(np.clip(base + rng.integers(-25, 25, size=(n, 32, 32, 3)), 0, 255).astype(np.uint8), labels)

    return DataSplits(part(64), part(32), classes, (0.45, 0.45, 0.45), (0.25, 0.25, 0.25))


@pytest.fixture
def tiny_data() -> DataSplits:
    """:func:`tiny_splits`: two classes, 64 + 32 images of 32x32."""
    return tiny_splits()


@pytest.fixture
def tiny_parent(tiny_data: DataSplits) -> nn.Module:
    """small_cnn trained for one epoch on :func:`tiny_data` (about a second on a CPU)."""
    prepared = prepare("tiny", "tiny", tiny_data)
    network = load_registry().model("small_cnn").item.build(tiny_data.num_classes, _INPUT_SHAPE)
    train(network, prepared.train_inputs, prepared.train_labels, Recipe(epochs=1, batch_size=32, lr=0.05,
                                                                       augment="none"),
          epochs=1, seed=0, pad_value=prepared.pad_value)
    return network.eval()


def _network(name: str, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return load_registry().model(name).item.build(10, _INPUT_SHAPE)


def _images(count: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(count, 32, 32, 3)).astype(np.uint8)
