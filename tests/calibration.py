"""Untrained networks made fit for comparing outputs: float64, batch norms calibrated on random inputs."""

from __future__ import annotations

import torch
from torch import nn


def calibrated(network: nn.Module, size: int, batch: int = 16) -> nn.Module:
    """``network`` in float64 with batch norm statistics of real activations and random affine parameters, in
    eval mode.

    Fresh batch norms (mean 0, variance 1) leave a deep untrained network's
    outputs at 1e9 or at 1e-17; calibrated ones keep them near 1, so an
    output difference means something. Seed torch before building and calling this.
    """
    network = network.double()
    for module in network.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.momentum = None  # cumulative average over the calibration pass
            with torch.no_grad():
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.2, 0.2)
    network.train()
    with torch.no_grad():
        network(torch.randn(batch, 3, size, size, dtype=torch.float64))
    return network.eval()
