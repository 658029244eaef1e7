"""Stands in for the project's own training pipeline: makes the data, trains the parent, prunes it.

    python train.py            # data/*.npy, checkpoints/parent.pt, checkpoints/pruned.pt

The data are scikit-learn's handwritten digits as 32x32 RGB .npy arrays (any
project has its own). The parent is trained with a plain PyTorch loop; the
pruned network is made with torch.nn.utils.prune (global magnitude pruning of
every Conv2d and Linear weight, then a short fine-tune) and saved as its state
dict, which keeps prune's weight_orig / weight_mask pairs. robustprune reads
both files as they are.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from mydata import load_arrays, mean_std, missing
from mynet import MyNet
from torch import nn
from torch.nn.utils import prune

HERE = Path(__file__).resolve().parent


def make_data(root: Path, seed: int = 0) -> None:
    """The example's data: digits upsampled to 32x32 RGB, a stratified 80/20 split."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    small = torch.from_numpy(digits.images.astype(np.float32) / 16.0).unsqueeze(1)
    big = F.interpolate(small, size=(32, 32), mode="bilinear", align_corners=False)
    images = np.repeat((big.clamp(0, 1) * 255).round().to(torch.uint8).squeeze(1).numpy()[..., None], 3, axis=-1)
    labels = digits.target.astype(np.int64)
    train, test = train_test_split(np.arange(len(labels)), test_size=0.2, stratify=labels, random_state=seed)
    root.mkdir(parents=True, exist_ok=True)
    for split, index in (("train", np.sort(train)), ("test", np.sort(test))):
        np.save(root / f"{split}_images.npy", images[index])
        np.save(root / f"{split}_labels.npy", labels[index])


def tensors(root: Path) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Normalised (N, C, H, W) inputs and labels, normalised exactly as robustprune_local.py declares."""
    arrays = load_arrays(root)
    mean, std = mean_std(arrays["train_images"])
    mean_t, std_t = torch.tensor(mean).view(1, 3, 1, 1), torch.tensor(std).view(1, 3, 1, 1)

    def normalise(images: np.ndarray) -> torch.Tensor:
        return (torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0 - mean_t) / std_t

    return (normalise(arrays["train_images"]), torch.from_numpy(arrays["train_labels"]).long(),
            normalise(arrays["test_images"]), torch.from_numpy(arrays["test_labels"]).long())


def fit(network: nn.Module, x: torch.Tensor, y: torch.Tensor, epochs: int, lr: float, seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.SGD(network.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, epochs))
    network.train()
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=generator)
        for start in range(0, len(x), 64):
            index = order[start : start + 64]
            optimizer.zero_grad()
            F.cross_entropy(network(x[index]), y[index]).backward()
            optimizer.step()
        schedule.step()


@torch.no_grad()
def accuracy(network: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    network.eval()
    return float((network(x).argmax(1) == y).float().mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=15, help="parent training epochs")
    parser.add_argument("--amount", type=float, default=0.5, help="fraction of weights torch.nn.utils.prune removes")
    parser.add_argument("--finetune-epochs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)  # deterministic, and polite on a shared CI runner

    data, checkpoints = HERE / "data", HERE / "checkpoints"
    if missing(data):
        make_data(data, args.seed)
    x, y, x_test, y_test = tensors(data)
    checkpoints.mkdir(exist_ok=True)

    torch.manual_seed(args.seed)
    parent = MyNet(num_classes=int(y.max()) + 1)
    fit(parent, x, y, args.epochs, lr=0.05, seed=args.seed)
    torch.save(parent.state_dict(), checkpoints / "parent.pt")
    print(f"parent: test accuracy {accuracy(parent, x_test, y_test):.3f} -> checkpoints/parent.pt")

    layers = [(m, "weight") for m in parent.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    prune.global_unstructured(layers, pruning_method=prune.L1Unstructured, amount=args.amount)
    fit(parent, x, y, args.finetune_epochs, lr=0.01, seed=args.seed + 1)  # prune's masks hold during training
    torch.save(parent.state_dict(), checkpoints / "pruned.pt")  # keeps weight_orig / weight_mask
    print(f"pruned ({args.amount:.0%} of the weights): test accuracy {accuracy(parent, x_test, y_test):.3f} "
          "-> checkpoints/pruned.pt")


if __name__ == "__main__":
    main()
