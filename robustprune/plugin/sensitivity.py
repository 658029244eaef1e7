"""Data-informed sensitivities of weights and channels: the scores of SiPP and PFP.

Both methods (Baykal et al., "SiPPing Neural Networks"; Liebenwein et al.,
"Provable Filter Pruning", ICLR 2020) score a weight ``W[i, j]`` of a layer by
the share of the pre-activation ``z_i`` it contributes on real inputs::

    g_ij(x, p) = W_ij a_j(x, p) / z_i(x, p)

for an input ``x`` and, in a convolution, an output position (patch) ``p``;
``a`` is the layer's input as the network computes it and ``z`` the output
without bias. Positive and negative parts are treated separately so that each
share is in [0, 1]: a positive weight is measured against
``z+ = W+ a`` and a negative one against ``z- = W- a`` (``W+ = max(W, 0)``,
``W- = min(W, 0)``), and an input with negative entries (the normalized image
fed to the first layer) is split into its positive part and its negated
negative part, two data points. A share whose denominator is (numerically) zero
counts as 0.

* :func:`weight_sensitivities` (SiPP): the mean of ``g`` over the patches,
  then the max over the data points. One number per weight.
* :func:`input_channel_sensitivities` (PFP): the max of ``g`` over the data,
  the patches, the output channels ``i`` and the kernel positions of each input
  channel. One number per input channel (per input feature for ``Linear``).

The batch comes from the host (``PruneContext.data``); how many inputs it
holds is :func:`sample_size`, the papers' bound with a cap.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .api import PruneMethod
from .masks import PrunableLayer, PruneError, prunable_weights

__all__ = [
    "LayerInfo",
    "SampledSensitivityMethod",
    "input_channel_sensitivities",
    "layer_info",
    "sample_size",
    "weight_sensitivities",
]

_EPS = float(np.finfo(np.float32).eps)  # denominators at or below this count as zero (as in the papers' code)
_BLOCK_ELEMENTS = 1 << 18  # largest intermediate tensor of the patch-wise max (1 MB of float32: fits in L2)


# --------------------------------------------------------------------------- layers


@dataclass(frozen=True)
class LayerInfo:
    """What the sample-size formulas need of a prunable layer, measured on one input.

    ``neurons`` is the number of output activations per input (channels x
    positions for a conv), ``patches`` the number of output positions (1 for a
    ``Linear``) and ``kernel`` the number of weights per input channel and
    output channel (``kh * kw``; 1 for a ``Linear``).
    """

    neurons: int
    patches: int
    kernel: int


def layer_info(network: nn.Module, example_input: torch.Tensor) -> dict[str, LayerInfo]:
    """:class:`LayerInfo` of every prunable layer, keyed by weight name, from one forward pass.

    A layer that does not run on the example input is missing from the result.
    """
    names = {module: name for name, module in _prunable_modules(network).items()}
    found: dict[str, LayerInfo] = {}

    def hook(module: PrunableLayer, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        per_input = output[0] if output.dim() > 1 else output
        patches = math.prod(output.shape[2:]) if isinstance(module, nn.Conv2d) else 1
        kernel = math.prod(module.weight.shape[2:]) if isinstance(module, nn.Conv2d) else 1
        found.setdefault(names[module], LayerInfo(per_input.numel(), patches, kernel))

    with _hooked(network, hook, forward=True):
        _run(network, example_input[:1])
    return found


def sample_size(
    network: nn.Module,
    example_input: torch.Tensor,
    delta: float = 1e-16,
    c_constant: float = 3.0,
    cap: int | None = 256,
) -> int:
    """How many training inputs the sensitivity bounds ask for: ``ceil(C log(8 eta eta* / delta))``, capped.

    ``eta`` is the number of neurons (output activations) of all prunable
    layers, ``eta*`` the most of any one layer, ``delta`` the failure
    probability of the bound (the confidence is ``1 - delta``) and ``C`` the
    papers' constant (3). This is the size of the set ``S`` in the papers'
    code (which splits ``delta`` over the ``eta`` neurons). ``cap`` bounds the
    work on large networks.
    """
    if not 0 < delta < 1:
        raise ValueError(f"delta is a failure probability in (0, 1), got {delta}")
    if not c_constant > 0:
        raise ValueError(f"c_constant must be > 0, got {c_constant}")
    neurons = [info.neurons for info in layer_info(network, example_input).values()]
    if not neurons:
        return 1
    eta, eta_star = sum(neurons), max(neurons)
    size = math.ceil(c_constant * math.log(8.0 * eta * eta_star / delta))
    return max(1, min(size, cap) if cap is not None else size)


# --------------------------------------------------------------------------- sensitivities


def weight_sensitivities(
    network: nn.Module,
    data: torch.Tensor | None,
    patch_reduction: Literal["mean", "max"] = "mean",
    batch: int = 32,
) -> dict[str, torch.Tensor]:
    """SiPP's sensitivity of every prunable weight: ``g`` reduced over patches, then the max over ``data``.

    Returns float32 tensors shaped like the weights, keyed like
    :func:`~robustprune.plugin.masks.prunable_weights`. ``patch_reduction`` is
    ``"mean"`` for deterministic SiPP (the paper's) and ``"max"`` for its
    randomized variant. The network runs in eval mode on ``data`` in chunks of
    ``batch`` inputs and is left unchanged. Without data (``context.data`` of a
    method not declared ``data_informed``) a :class:`PruneError` says so.
    """
    if patch_reduction not in ("mean", "max"):
        raise ValueError(f"patch_reduction must be 'mean' or 'max', got {patch_reduction!r}")
    modules = _prunable_modules(network)
    result = {name: torch.zeros(m.weight.shape) for name, m in modules.items()}
    names = {m: name for name, m in modules.items()}

    def hook(module: PrunableLayer, inputs: tuple[torch.Tensor, ...]) -> None:
        name = names[module]
        flat = result[name].view(module.weight.shape[0], -1)
        for rows, _, a, weight in _unfolded(module, inputs[0]):
            g = _shares(weight, a, reduce=patch_reduction)  # (N, I, J)
            flat[rows] = torch.maximum(flat[rows], g.amax(dim=0))

    _track(network, data, hook, batch)
    return result


def input_channel_sensitivities(network: nn.Module, data: torch.Tensor | None,
                                batch: int = 32) -> dict[str, torch.Tensor]:
    """PFP's sensitivity of every input channel of every prunable layer.

    The max of ``g`` over ``data``, the patches, the output channels and the
    kernel positions of the channel. Returns float32 vectors of length
    ``in_channels`` (``in_features`` for a ``Linear``), keyed by weight name.
    """
    modules = _prunable_modules(network)
    result = {name: torch.zeros(m.weight.shape[1] * getattr(m, "groups", 1)) for name, m in modules.items()}
    names = {m: name for name, m in modules.items()}

    def hook(module: PrunableLayer, inputs: tuple[torch.Tensor, ...]) -> None:
        name = names[module]
        kernel = math.prod(module.weight.shape[2:]) if isinstance(module, nn.Conv2d) else 1
        for _, channels, a, weight in _unfolded(module, inputs[0]):
            g = _shares(weight, a, reduce="max")  # (N, I, J): J = channels x kernel positions, channel-major
            per_channel = g.amax(dim=(0, 1)).view(-1, kernel).amax(dim=1)
            result[name][channels] = torch.maximum(result[name][channels], per_channel)

    _track(network, data, hook, batch)
    return result


# --------------------------------------------------------------------------- internals


def _prunable_modules(network: nn.Module) -> dict[str, PrunableLayer]:
    weights = {id(w): name for name, w in prunable_weights(network).items()}
    return {
        weights[id(m.weight)]: m
        for m in network.modules()
        if isinstance(m, (nn.Conv2d, nn.Linear)) and id(m.weight) in weights
    }


def _unfolded(
    module: PrunableLayer, x: torch.Tensor
) -> Iterator[tuple[slice, slice, torch.Tensor, torch.Tensor]]:
    """The layer's input as ``(N, J, P)`` patches with the matching ``(I, J)`` weight, one item per conv group.

    Yields ``(rows, channels, a, weight)``: the output channels (rows of the
    weight) and the input channels the item covers, the non-negative
    (sign-split) patches and the weight block. Data points are the rows of
    every leading dimension.
    """
    x = x.detach().float()
    weight = module.weight.detach().float()
    if isinstance(module, nn.Linear):
        a = _split_signs(x.reshape(-1, x.shape[-1])).unsqueeze(-1)  # (N, J, 1)
        yield slice(0, weight.shape[0]), slice(0, weight.shape[1]), a, weight
        return
    assert isinstance(module, nn.Conv2d)
    x = _split_signs(x)
    declared = module.padding
    padding: int | tuple[int, ...]
    if module.padding_mode != "zeros":  # reflect, replicate, circular: pad first, as the conv does
        pads = _explicit_padding(module) if isinstance(declared, str) else _pads_of(declared)
        x = F.pad(x, pads, mode=module.padding_mode)
        padding = 0
    elif isinstance(declared, str):  # "same" / "valid": spell out what the conv does
        padding = _explicit_padding(module)
        if len(padding) == 4:
            x, padding = F.pad(x, padding), 0
    else:
        padding = declared
    groups, c_in = module.groups, module.in_channels // module.groups
    c_out = module.out_channels // groups
    per_group = c_in * math.prod(module.kernel_size)
    for g in range(groups):
        part = x[:, g * c_in : (g + 1) * c_in]
        a = F.unfold(part, module.kernel_size, dilation=module.dilation, padding=padding, stride=module.stride)
        block = weight[g * c_out : (g + 1) * c_out].reshape(c_out, per_group)
        yield slice(g * c_out, (g + 1) * c_out), slice(g * c_in, (g + 1) * c_in), a, block


def _pads_of(padding: tuple[int, ...]) -> tuple[int, ...]:
    """A conv's ``(ph, pw)`` padding as ``F.pad`` takes it: last dimension first, both sides."""
    return tuple(p for p in reversed(padding) for _ in range(2))


def _explicit_padding(module: nn.Conv2d) -> tuple[int, ...]:
    if module.padding == "valid":
        return (0, 0)
    # "same" (stride 1): total padding d*(k-1) per dim, the extra one on the right/bottom as torch does
    pads = []
    for d, k in zip(reversed(module.dilation), reversed(module.kernel_size)):
        total = d * (k - 1)
        pads += [total // 2, total - total // 2]
    return tuple(pads)


def _split_signs(x: torch.Tensor) -> torch.Tensor:
    """Inputs with negative entries become two data points: the positive part and the negated negative part."""
    negative = x < 0
    if not negative.any():
        return x
    return torch.cat([x.clamp(min=0), (-x).clamp(min=0)])


def _shares(weight: torch.Tensor, a: torch.Tensor, reduce: str) -> torch.Tensor:
    """``|W_ij| a_j / |z_i|`` per data point, reduced over patches: ``(N, J, P)`` patches -> ``(N, I, J)``."""
    total = torch.zeros(a.shape[0], weight.shape[0], weight.shape[1])
    for part in (weight.clamp(min=0), (-weight).clamp(min=0)):
        if not part.any():
            continue
        z = torch.einsum("ij,njp->nip", part, a)
        inverse = torch.where(z > _EPS, 1.0 / z, torch.zeros_like(z))  # (N, I, P)
        if reduce == "mean":
            share = torch.einsum("njp,nip->nij", a, inverse) / a.shape[2]
        else:
            share = _max_product(a, inverse)
        # each weight is either positive or negative: the two parts never overlap
        total += share * part.unsqueeze(0)
    return total


def _max_product(a: torch.Tensor, inverse: torch.Tensor) -> torch.Tensor:
    """``out[n, i, j] = max_p a[n, j, p] * inverse[n, i, p]`` in blocks that stay in a core's cache.

    An exact max-times product: no identity shortens it, so its speed is memory traffic. Each block of
    products (data points x output rows x input columns x patches, at most :data:`_BLOCK_ELEMENTS`) is
    reduced while still in cache; wide layers are cut into rows and columns, narrow ones take several data
    points at once. Measured with ``benchmarks/pfp_sensitivity.py``: the same numbers, several times faster
    than whole data points' blocks on wide layers (wrn16_8), as fast on narrow ones (resnet20)."""
    n, j, p = a.shape
    i = inverse.shape[1]
    out = torch.empty(n, i, j)
    cols = max(1, min(j, _BLOCK_ELEMENTS // max(1, p)))
    rows = max(1, min(i, _BLOCK_ELEMENTS // (cols * max(1, p))))
    samples = max(1, _BLOCK_ELEMENTS // (rows * cols * max(1, p)))
    for first in range(0, n, samples):
        points = slice(first, first + samples)
        for col in range(0, j, cols):
            patches = a[points, None, col : col + cols, :]
            for row in range(0, i, rows):
                out[points, row : row + rows, col : col + cols] = (
                    inverse[points, row : row + rows, None, :] * patches).amax(dim=-1)
    return out


class _hooked:
    """Context manager: a hook on every prunable layer, removed on exit."""

    def __init__(self, network: nn.Module, hook: Callable[..., None], forward: bool = False):
        self.handles = []
        for module in _prunable_modules(network).values():
            register = module.register_forward_hook if forward else module.register_forward_pre_hook
            self.handles.append(register(hook))

    def __enter__(self) -> _hooked:
        return self

    def __exit__(self, *exc: object) -> None:
        for handle in self.handles:
            handle.remove()


@torch.no_grad()
def _run(network: nn.Module, x: torch.Tensor) -> None:
    """One eval-mode forward pass that leaves the network's modes as they were."""
    modes = {m: m.training for m in network.modules()}
    parameter = next(network.parameters(), None)
    try:
        network.eval()
        network(x.to(parameter.device) if parameter is not None else x)
    finally:
        for m, training in modes.items():
            m.training = training


def _track(network: nn.Module, data: torch.Tensor | None, hook: Callable[..., None], batch: int) -> None:
    if data is None or len(data) == 0:
        raise PruneError(
            "a data-informed method got no data: set data_informed = True on the method so that the host "
            "passes a batch of training inputs in context.data"
        )

    def on_cpu(module: nn.Module, inputs: tuple) -> None:
        hook(module, (inputs[0].detach().cpu(),))

    with _hooked(network, on_cpu):
        for start in range(0, len(data), batch):
            _run(network, data[start : start + batch])


class SampledSensitivityMethod(PruneMethod):
    """Base for data-informed methods whose data size follows the papers' sample-size bound (SiPP, PFP).

    ``delta`` is the failure probability and ``c_constant`` the constant of
    the bound; ``max_data`` caps the batch. All three enter the store key.
    """

    data_informed = True

    def __init__(self, delta: float = 1e-16, c_constant: float = 3.0, max_data: int = 256):
        if not 0 < delta < 1:
            raise ValueError(f"delta is a failure probability in (0, 1), got {delta}")
        self.delta = delta
        self.c_constant = c_constant
        self.data_batch_size = max_data  # the cap; the host asks data_size() for the actual size

    def params(self) -> dict[str, Any]:
        return {"delta": self.delta, "c_constant": self.c_constant, "max_data": self.data_batch_size}

    def data_size(self, network: nn.Module, example_input: torch.Tensor) -> int:
        return sample_size(network, example_input, self.delta, self.c_constant, cap=self.data_batch_size)
