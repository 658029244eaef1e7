"""Seeded training and retraining with masks enforced after every optimizer step.

Retraining replays the recipe's learning-rate schedule compressed to the
retrain epochs ("learning-rate rewinding", Renda et al. 2020), starting from
the pruned weights.

On CUDA devices training uses mixed precision (float16 autocast with a
gradient scaler); on the CPU it runs in float32 exactly as before.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..plugin.api import IGNORE_INDEX, Recipe
from ..plugin.masks import apply_masks
from .data import ProgressFn


def lr_at(recipe: Recipe, progress: float) -> float:
    """Learning rate at ``progress`` (fraction of training done, 0..1): linear warm-up, then steps."""
    if recipe.warmup > 0 and progress < recipe.warmup:
        return recipe.lr * (progress + 1e-3) / recipe.warmup
    drops = sum(1 for m in recipe.milestones if progress >= m)
    return recipe.lr * recipe.gamma**drops


def amp_enabled(device: str) -> bool:
    """Mixed precision is used on CUDA devices only: float16 on a CPU is slow and changes results."""
    return torch.device(device).type == "cuda"


def _grad_scaler() -> Any:
    # torch.amp.GradScaler appeared in torch 2.3; torch.cuda.amp's is its older spelling
    if hasattr(torch.amp, "GradScaler"):
        return torch.amp.GradScaler("cuda")
    return torch.cuda.amp.GradScaler()


def resized_crop_flip(batch: torch.Tensor, generator: torch.Generator,
                      scale: tuple[float, float] = (0.08, 1.0),
                      ratio: tuple[float, float] = (3 / 4, 4 / 3)) -> torch.Tensor:
    """ImageNet's random-resized crop (area fraction ``scale``, aspect ``ratio``) and horizontal flip.

    Each image gets one crop, resampled bilinearly to the input size by one
    ``grid_sample`` over the whole batch. Crops wider or taller than the image
    are clipped to it (torchvision retries instead; the difference is rare).
    """
    grid = _resized_crop_grid(batch, generator, scale, ratio)
    return F.grid_sample(batch, grid, mode="bilinear", padding_mode="border", align_corners=False)


def _resized_crop_grid(batch: torch.Tensor, generator: torch.Generator, scale: tuple[float, float],
                       ratio: tuple[float, float]) -> torch.Tensor:
    """The sampling grid of :func:`resized_crop_flip` (one crop and flip per image, drawn from ``generator``)."""
    n, _, h, w = batch.shape
    area = torch.rand(n, generator=generator) * (scale[1] - scale[0]) + scale[0]
    log_ratio = torch.rand(n, generator=generator) * math.log(ratio[1] / ratio[0]) + math.log(ratio[0])
    aspect = torch.exp(log_ratio)
    crop_w = torch.sqrt(area * aspect).clamp(max=1.0)  # as fractions of the image's width and height
    crop_h = torch.sqrt(area / aspect).clamp(max=1.0)
    center_x = (torch.rand(n, generator=generator) * 2 - 1) * (1 - crop_w)
    center_y = (torch.rand(n, generator=generator) * 2 - 1) * (1 - crop_h)
    flip = torch.where(torch.rand(n, generator=generator) < 0.5, -1.0, 1.0)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0], theta[:, 0, 2] = crop_w * flip, center_x
    theta[:, 1, 1], theta[:, 1, 2] = crop_h, center_y
    theta = theta.to(device=batch.device, dtype=batch.dtype)
    return F.affine_grid(theta, [n, batch.shape[1], h, w], align_corners=False)


def augment(batch: torch.Tensor, mode: str, pad_value: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random crop after 4-pixel padding (with black, in normalized units), and optional horizontal flip;
    or, for ``resized_crop_flip``, ImageNet's random-resized crop and flip."""
    if mode == "none":
        return batch
    if mode == "resized_crop_flip":
        return resized_crop_flip(batch, generator)
    n, c, h, w = batch.shape
    padded = pad_value.view(1, c, 1, 1).expand(n, c, h + 8, w + 8).clone()
    padded[:, :, 4 : 4 + h, 4 : 4 + w] = batch
    # one gather for the whole batch instead of a Python loop over images
    dy = torch.randint(0, 9, (n,), generator=generator)
    dx = torch.randint(0, 9, (n,), generator=generator)
    rows = (dy.view(n, 1) + torch.arange(h).view(1, h)).view(n, 1, h, 1).expand(n, c, h, w + 8)
    out = padded.gather(2, rows)
    cols = (dx.view(n, 1) + torch.arange(w).view(1, w)).view(n, 1, 1, w).expand(n, c, h, w)
    out = out.gather(3, cols)
    if mode == "crop_flip":
        flip = torch.rand(n, generator=generator) < 0.5
        out = torch.where(flip.view(n, 1, 1, 1), out.flip(3), out)
    return out


def augment_dense(batch: torch.Tensor, masks: torch.Tensor, mode: str, pad_value: torch.Tensor,
                  generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`augment` for segmentation: the same crop and flip move each image and its mask ``(N, H, W)``.

    Padding is labelled :data:`~robustprune.IGNORE_INDEX` (not counted by the loss); a resized crop samples
    the mask with nearest neighbours, so labels stay labels. Draws as many random numbers as :func:`augment`.
    """
    if mode == "none":
        return batch, masks
    if mode == "resized_crop_flip":
        grid = _resized_crop_grid(batch, generator, (0.08, 1.0), (3 / 4, 4 / 3))
        images = F.grid_sample(batch, grid, mode="bilinear", padding_mode="border", align_corners=False)
        labels = F.grid_sample(masks.unsqueeze(1).to(batch.dtype), grid, mode="nearest", padding_mode="border",
                               align_corners=False)
        return images, labels.squeeze(1).round().to(masks.dtype)
    # the mask rides along as one more channel, padded with the ignore label
    stacked = torch.cat([batch, masks.unsqueeze(1).to(batch.dtype)], 1)
    pad = torch.cat([pad_value.to(batch.dtype), torch.tensor([float(IGNORE_INDEX)], dtype=batch.dtype)])
    out = augment(stacked, mode, pad, generator)
    return out[:, :-1], out[:, -1].round().to(masks.dtype)


def train(
    network: nn.Module,
    inputs: torch.Tensor,
    labels: torch.Tensor,
    recipe: Recipe,
    *,
    epochs: int,
    seed: int,
    pad_value: torch.Tensor,
    masks: Mapping[str, torch.Tensor] | None = None,
    device: str = "cpu",
    progress: ProgressFn | None = None,
    epoch_inputs: Callable[[int], torch.Tensor] | None = None,
) -> dict[str, float]:
    """Train ``network`` in place on normalized ``inputs`` with ``recipe``'s schedule over ``epochs``.

    With ``masks``, masked weights are zeroed before training and after every
    optimizer step, so they stay pruned. With ``epoch_inputs``, epoch ``e``
    trains on ``epoch_inputs(e)`` instead of ``inputs`` (same images and
    labels, e.g. a corrupted copy for robust training). Returns the final
    epoch's loss and training accuracy. Labels ``(N, H, W)`` train a segmentation network: a cross-entropy
    per pixel, :data:`~robustprune.IGNORE_INDEX` pixels left out, crops and flips applied to the masks too,
    accuracy counted over labelled pixels.
    """
    dense = labels.ndim == 3
    ignore = IGNORE_INDEX if dense else -100  # -100: cross_entropy's default, no class label can be it
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)  # dropout and anything else that draws from the global generator
    network.to(device).train()
    if masks is not None:
        apply_masks(network, masks)
    decay: list[torch.Tensor] = []
    no_decay: list[torch.Tensor] = []
    for param in network.parameters():
        (no_decay if param.ndim <= 1 else decay).append(param)  # no decay on BN and biases
    optimizer = torch.optim.SGD(
        [{"params": decay, "weight_decay": recipe.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=recipe.lr, momentum=recipe.momentum, nesterov=recipe.nesterov,
    )
    n = len(inputs)
    steps_per_epoch = math.ceil(n / recipe.batch_size)
    total_steps = max(1, epochs * steps_per_epoch)
    stats = {"loss": float("nan"), "accuracy": float("nan")}
    amp = amp_enabled(device)
    scaler = _grad_scaler() if amp else None
    # a resized crop resamples every pixel: do it where the network runs
    augment_on_device = recipe.augment == "resized_crop_flip"
    started = time.monotonic()
    for epoch in range(epochs):
        order = torch.randperm(n, generator=generator)
        source = inputs if epoch_inputs is None else epoch_inputs(epoch)
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), device=device, dtype=torch.long)
        counted = torch.zeros((), device=device, dtype=torch.long)
        for step in range(steps_per_epoch):
            index = order[step * recipe.batch_size : (step + 1) * recipe.batch_size]
            x = source[index]
            if augment_on_device:
                x = x.to(device, non_blocking=True)
            y = labels[index].to(torch.int64)
            if dense:
                x, y = augment_dense(x, y.to(x.device), recipe.augment, pad_value.to(x.device), generator)
                x = x.to(device, non_blocking=True)
            else:
                x = augment(x, recipe.augment, pad_value, generator).to(device, non_blocking=True)
            y = y.to(device, non_blocking=True)
            lr = lr_at(recipe, (epoch * steps_per_epoch + step) / total_steps)
            for group in optimizer.param_groups:
                group["lr"] = lr
            if scaler is not None:
                with torch.autocast("cuda", dtype=torch.float16):
                    logits = network(x)
                    loss = F.cross_entropy(logits, y, ignore_index=ignore)
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(optimizer)  # skipped when the scaled gradients overflowed
                scaler.update()
            else:
                logits = network(x)
                loss = F.cross_entropy(logits, y, ignore_index=ignore)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
            if masks is not None:
                apply_masks(network, masks)
            # accumulate on device: no host-device synchronisation inside the loop
            loss_sum += loss.detach() * len(y)
            labelled = y != ignore
            correct += ((logits.detach().argmax(1) == y) & labelled).sum()
            counted += labelled.sum()
        stats = {"loss": float(loss_sum) / n, "accuracy": float(correct) / max(1, int(counted))}
        if progress is not None:
            progress(
                f"epoch {epoch + 1}/{epochs} loss {stats['loss']:.3f} train acc {stats['accuracy']:.3f} "
                f"({time.monotonic() - started:.0f} s)"
            )
    network.eval()
    return stats
