"""What a pruned network costs: parameters, multiply-accumulates and measured CPU latency.

* :func:`count_params`: the parameters a deployment has to store: the kept
  entries of every prunable weight plus every other parameter (biases, norms).
* :func:`count_macs`: multiply-accumulates of the Conv2d and Linear layers for
  one input, counting only kept weights (each kept conv weight does one MAC
  per output position). Norms, activations and pooling are not counted (they
  are a few percent of a CNN's work, and the usual convention).
* :func:`measure_latency`: the median wall-clock time of a forward pass after
  warm-up, without autograd, of the network's :func:`inference_form` (batch
  norms folded into the convs, channels-last layout), as a CPU deployment
  would run it.
* :func:`network_costs`: all of it for one network; a structured result is
  compacted first (:func:`robustprune.compute.compaction.compact`), so its counts and
  its latency are those of the physically smaller network.

Latency depends on the machine: :func:`machine_fingerprint` names what it
depends on (CPU model, cores, torch version, threads), for cache keys.
"""

from __future__ import annotations

import contextlib
import copy
import math
import os
import platform
import statistics
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from ..plugin.masks import PrunableLayer, prunable_weights
from .compaction import compact

__all__ = [
    "NetworkCosts",
    "count_macs",
    "count_params",
    "inference_form",
    "machine_fingerprint",
    "measure_latency",
    "network_costs",
]


@dataclass(frozen=True)
class NetworkCosts:
    """Costs of one network; ``latency`` (seconds per batch) only when measured."""

    params: int
    macs: int
    latency: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def count_params(network: nn.Module, masks: Mapping[str, torch.Tensor] | None = None) -> int:
    """Kept prunable weights (all of them without ``masks``) plus every other parameter."""
    weights = prunable_weights(network)
    prunable_ids = {id(w) for w in weights.values()}
    others = sum(p.numel() for p in network.parameters() if id(p) not in prunable_ids)
    if masks is None:
        return others + sum(w.numel() for w in weights.values())
    return others + sum(int(masks[name].sum()) for name in weights)


@torch.no_grad()
def count_macs(network: nn.Module, example_input: torch.Tensor, masks: Mapping[str, torch.Tensor] | None = None) -> int:
    """Multiply-accumulates of the Conv2d and Linear layers for one input (the first of ``example_input``)."""
    names = {id(w): name for name, w in prunable_weights(network).items()}
    total = 0

    def hook(module: PrunableLayer, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        nonlocal total
        name = names.get(id(module.weight))
        kept = module.weight.numel() if masks is None or name is None else int(masks[name].sum())
        if isinstance(module, nn.Conv2d):
            per_weight = math.prod(output.shape[2:])  # one MAC per output position
        else:
            per_weight = output.numel() // max(1, output.shape[-1])  # leading dims of a Linear's input
        total += kept * per_weight

    handles = [m.register_forward_hook(hook) for m in network.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    modes = {m: m.training for m in network.modules()}
    parameter = next(network.parameters(), None)
    try:
        network.eval()
        x = example_input[:1]
        network(x.to(parameter.device) if parameter is not None else x)
    finally:
        for handle in handles:
            handle.remove()
        for m, training in modes.items():
            m.training = training
    return total


def inference_form(network: nn.Module) -> nn.Module:
    """The network as a CPU deployment runs it: a copy in eval mode, batch norms folded, channels-last.

    Batch norms that directly follow a conv are folded into its weights
    (``torch.fx.experimental.optimization.fuse``; a network fx cannot trace
    keeps them), and conv weights use the channels-last layout that oneDNN's
    fastest CPU kernels want. The outputs are those of the eval-mode network up
    to float rounding. Latencies of a parent and of its pruned networks are
    only comparable if both are measured in the same form.
    """
    from torch.fx.experimental.optimization import fuse

    network = copy.deepcopy(network).eval()
    with contextlib.suppress(Exception):  # not traceable (or an unusual layer): time it unfused
        network = fuse(network)
    return network.to(memory_format=torch.channels_last)


@torch.inference_mode()
def measure_latency(
    network: nn.Module,
    inputs: torch.Tensor,
    warmup: int = 5,
    repeats: int = 21,
    min_seconds: float = 0.25,
    inference: bool = True,
) -> float:
    """Median seconds of a forward pass on ``inputs``, timed after ``warmup`` untimed passes.

    Times at least ``repeats`` passes and keeps going until they span
    ``min_seconds``, so that a short burst of other work on the machine
    cannot own the median. With ``inference`` (the default) the network is
    timed in its :func:`inference_form` on channels-last inputs; otherwise as
    it is, in eval mode. Runs with the current torch thread count and leaves
    ``network`` unchanged.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    training = network.training
    if inference:
        timed, inputs = inference_form(network), inputs.contiguous(memory_format=torch.channels_last)
    else:
        timed = network.eval()
    try:
        for _ in range(warmup):
            timed(inputs)
        times: list[float] = []
        while len(times) < repeats or (sum(times) < min_seconds and len(times) < 100 * repeats):
            started = time.perf_counter()
            timed(inputs)
            times.append(time.perf_counter() - started)
    finally:
        network.train(training)
    return statistics.median(times)


def machine_fingerprint() -> dict[str, Any]:
    """What a latency measurement depends on besides the network: CPU model, cores, torch version, threads."""
    return {
        "cpu": _cpu_model(),
        "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def network_costs(
    network: nn.Module,
    masks: Mapping[str, torch.Tensor] | None,
    example_input: torch.Tensor,
    structured: bool = False,
) -> tuple[NetworkCosts, nn.Module]:
    """Parameters and MACs of ``network`` under ``masks``, and the network to time.

    A ``structured`` result is compacted first; its counts are those of the
    compacted network, which is returned for timing. Otherwise the network
    itself is returned (masked weights are zeros in dense tensors: no faster).
    """
    if structured and masks is not None:
        compacted = compact(network, masks, example_input)
        network, masks = compacted.network, compacted.masks
    costs = NetworkCosts(params=count_params(network, masks), macs=count_macs(network, example_input, masks))
    return costs, network
