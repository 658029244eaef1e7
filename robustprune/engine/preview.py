"""``robustprune shifts preview``: a grid of test images under each shift, to see what a network must survive.

Each row is one shift at one parameter (the first is the clean image), each
column one test image (the first of each class). The images are the ones a
run evaluates: the dataset is loaded with the same request (seed, parameters)
under the same key, every image is shifted under the same per-image seed as
in a suite with that ``seed`` and with the parameter family a suite with that
``shift_family`` would use, and a set the dataset publishes (the CIFAR-10-C
arrays on disk) is shown instead of a generated one, as a run reads it.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from ..compute.data import PreparedData
from ..core.datasource import new_file_mode
from ..core.results import CaseError
from ..core.shifts import Shift, all_members, check_requested_family, image_seeds, parse_shifts
from ..plugin.api import AUTO_FAMILY, DatasetRequest, PixelShift, TensorShift
from ..plugin.errors import as_missing_dependency
from ..plugin.registry import Registry
from .engine import load_dataset
from .shifted import read_published

if TYPE_CHECKING:  # pragma: no cover
    from PIL import Image

__all__ = ["PreviewRow", "preview_grid", "preview_rows", "write_preview"]

_TILE = 96  # each image is scaled up (nearest neighbour) to at least this many pixels on its longer side


@dataclass(frozen=True)
class PreviewRow:
    """One row of the grid: a label (``fog@3 (cifar10-c)``) and its images, uint8 ``(N, H, W, 3)``."""

    label: str
    images: np.ndarray


def _columns(data: PreparedData, count: int) -> list[int]:
    """The first test image of each class, then the next ones, up to ``count``."""
    labels = data.test_labels.numpy()
    if labels.ndim == 3:  # masks: an image per class it shows (background and unlabelled pixels aside)
        shown = [c for c in np.unique(labels) if 0 < c < data.splits.num_classes]
        firsts = list(dict.fromkeys(int(np.flatnonzero((labels == c).any((1, 2)))[0]) for c in shown))
    else:
        firsts = [int(np.flatnonzero(labels == c)[0]) for c in np.unique(labels)]
    taken = set(firsts)
    rest = [i for i in range(len(labels)) if i not in taken]
    return (firsts + rest)[:count]


def _shifted(data: PreparedData, shift: Shift, indices: list[int], seed: int, family: str | None) -> np.ndarray:
    seeds_all = image_seeds(seed, data.key, shift, len(data.test_labels))
    seeds = [seeds_all[i] for i in indices]
    clean = data.splits.test.images[indices]
    item = shift.registered.item  # type: ignore[union-attr]
    if isinstance(item, PixelShift):
        apply = item.implementation(family)
        return np.stack([np.asarray(apply(image, shift.param, s)) for image, s in zip(clean, seeds)])
    assert isinstance(item, TensorShift)
    inputs = data.normalize(clean)
    shifted = item.apply(inputs, shift.param, np.array(seeds, dtype=np.int64))
    pixels = shifted * data.std.view(1, -1, 1, 1) + data.mean.view(1, -1, 1, 1)  # back to [0, 1] to be seen
    return (pixels.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


def _published(data: PreparedData, shift: Shift, indices: list[int]) -> np.ndarray | None:
    """The dataset's published images of ``shift`` at ``indices`` (read and checked as a run reads them), if it
    supplies them."""
    found = read_published(data, shift) if shift.kind == "pixel" else None
    if found is None:
        return None
    if len(found.test.images) != len(data.splits.test.images):  # side by side needs the same test images
        raise CaseError(f"the published set for {shift.label} ({found.source}) holds {len(found.test.images)} "
                        f"images, the test set {len(data.splits.test.images)}: they cannot be shown side by side")
    return np.asarray(found.test.images)[indices]


def preview_rows(registry: Registry, shifts: Sequence[str], dataset: str, *, count: int = 6, seed: int = 0,
                 family: str = AUTO_FAMILY, request: DatasetRequest | None = None) -> list[PreviewRow]:
    """The clean images and each shift's, for ``count`` test images of ``dataset``.

    ``shifts`` are written as in suites (``fog@1,3,5``, ``noise@3``, ``uniform_noise@0.2``). Raises
    ``ValueError`` or ``LookupError`` for an unknown shift, dataset or family or a shift that cannot be
    previewed, ``CaseError`` for a shift whose code fails, :class:`MissingDependencyError` when the machine
    lacks what a shift needs.
    """
    members = all_members(parse_shifts(list(shifts), registry))
    if not check_requested_family(members, [family]) and family != AUTO_FAMILY:
        raise ValueError(f"--family {family}: none of these shifts has parameter families")
    for shift in members:
        if shift.kind == "published":
            raise ValueError(f"{shift.label} is a published test set with images of its own, not a shift of the "
                             "test images: nothing to preview side by side")
        if shift.unavailable is not None:
            raise ValueError(shift.unavailable)
    request = request or DatasetRequest(seed=seed)  # a given request's seed wins: it made the data key
    data = load_dataset(dataset, registry.get("dataset", dataset), request)
    indices = _columns(data, count)
    rows = [PreviewRow("clean", data.splits.test.images[indices])]
    height, width = data.splits.test.images.shape[1:3]
    for shift in members:
        if shift.is_nominal:
            continue
        item = shift.registered.item  # type: ignore[union-attr]
        published = _published(data, shift, indices)
        if published is not None:
            rows.append(PreviewRow(f"{shift.label} (published)", published))
            continue
        chosen = item.family_for(family, int(height), int(width)) if isinstance(item, PixelShift) else None
        if isinstance(item, PixelShift) and item.check_ready is not None:
            item.check_ready(chosen)
        try:
            images = _shifted(data, shift, indices, request.seed, chosen)
        except ImportError as exc:
            raise as_missing_dependency(exc, f"shift {shift.label}") from exc
        except Exception as exc:  # noqa: BLE001 - plugin code: say which shift failed
            raise CaseError(f"shift {shift.label} failed on {dataset}: {type(exc).__name__}: {exc}") from exc
        rows.append(PreviewRow(shift.label + (f" ({chosen})" if chosen else ""), images))
    return rows


def preview_grid(rows: list[PreviewRow]) -> Image.Image:
    """The rows drawn as one PIL image: labels on the left, images scaled up without smoothing."""
    from PIL import Image, ImageDraw, ImageFont

    height, width = rows[0].images.shape[1:3]
    scale = max(1, -(-_TILE // max(height, width)))
    tile_h, tile_w, gap = height * scale, width * scale, 4
    font = ImageFont.load_default()
    margin = 8 + max(int(ImageDraw.Draw(Image.new("RGB", (1, 1))).textlength(r.label, font=font)) for r in rows)
    columns = rows[0].images.shape[0]
    grid = Image.new("RGB", (margin + columns * (tile_w + gap), len(rows) * (tile_h + gap)), "white")
    draw = ImageDraw.Draw(grid)
    for r, row in enumerate(rows):
        top = r * (tile_h + gap)
        draw.text((4, top + tile_h // 2 - 6), row.label, fill="black", font=font)
        for c, image in enumerate(row.images):
            tile = Image.fromarray(image).resize((tile_w, tile_h), Image.Resampling.NEAREST)
            grid.paste(tile, (margin + c * (tile_w + gap), top))
    return grid


def write_preview(rows: list[PreviewRow], path: Path) -> Path:
    """Draw the grid and write it as a PNG at ``path`` (whole or not at all)."""
    grid = preview_grid(rows)
    path = Path(path)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as out:
            grid.save(out, format="PNG")
        os.chmod(temporary, new_file_mode())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path
