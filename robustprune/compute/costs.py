"""What a pruned network costs: parameters, multiply-accumulates and measured CPU latency.

* :func:`count_params`: the parameters a deployment has to store: the kept
  entries of every prunable weight plus every other parameter (biases, norms).
* :func:`count_macs`: multiply-accumulates of the Conv2d and Linear layers for
  one input, counting only kept weights (each kept conv weight does one MAC
  per output position). Norms, activations and pooling are not counted (they
  are a few percent of a CNN's work, and the usual convention).
* :func:`compare_latency`: the speed-up of networks over a baseline (a
  pruned network over its parent), timed interleaved with
  ``torch.utils.benchmark`` at batch 1 and a throughput batch: the median
  and interquartile range of per-round ratios, each network in its
  :func:`inference_form` (batch norms folded into the convs) and in the
  memory layout that is faster for the baseline, as a CPU deployment would
  run it.
* :func:`measure_latency`: the median wall-clock time of one network alone
  (kept for scripts; the report uses :func:`compare_latency`).
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
import random
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from ..plugin.masks import PrunableLayer, prunable_weights
from .compaction import compact

__all__ = [
    "LATENCY_BATCHES",
    "NetworkCosts",
    "Timing",
    "compare_latency",
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


def inference_form(network: nn.Module, channels_last: bool = True) -> nn.Module:
    """The network as a CPU deployment runs it: a copy in eval mode, batch norms folded, channels-last.

    Batch norms that directly follow a conv are folded into its weights
    (``torch.fx.experimental.optimization.fuse``; a network fx cannot trace
    keeps them), and with ``channels_last`` conv weights use the layout that
    oneDNN's fastest CPU kernels usually want. The outputs are those of the
    eval-mode network up to float rounding. Latencies of a parent and of its
    pruned networks are only comparable if both are measured in the same form.
    """
    from torch.fx.experimental.optimization import fuse

    network = copy.deepcopy(network).eval()
    with contextlib.suppress(Exception):  # not traceable (or an unusual layer): time it unfused
        network = fuse(network)
    return network.to(memory_format=torch.channels_last) if channels_last else network


LATENCY_BATCHES = (1, 64)
"""The batch sizes latency is compared at: one request at a time, and a throughput batch."""


@dataclass(frozen=True)
class Timing:
    """One network's latency at one batch size, measured interleaved with a baseline network.

    ``seconds`` is the median time of one forward pass of the batch;
    ``speedup`` the median over rounds of the baseline's time divided by this
    network's in the same round, ``speedup_low`` and ``speedup_high`` the
    first and third quartiles of those ratios. ``layout`` is the memory layout
    the networks ran in (``channels_last`` or ``contiguous``, the faster for
    the baseline), ``threads`` the torch threads, ``rounds`` the paired
    measurements.
    """

    batch: int
    seconds: float
    speedup: float
    speedup_low: float
    speedup_high: float
    layout: str
    threads: int
    rounds: int

    @property
    def within_noise(self) -> bool:
        """Whether the interquartile range of the per-round ratios includes 1: the middle half of the rounds
        does not agree on which network is faster (a spread of single rounds, not an interval of the median)."""
        return self.speedup_low <= 1.0 <= self.speedup_high

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "within_noise": self.within_noise}


@torch.inference_mode()
def compare_latency(
    networks: Sequence[nn.Module],
    inputs: torch.Tensor,
    batches: Sequence[int] = LATENCY_BATCHES,
    rounds: int = 25,
    block_seconds: float = 0.01,
    sessions: int = 5,
) -> list[list[Timing]]:
    """Latency of each of ``networks`` and its speed-up over ``networks[0]`` (the baseline), per batch size.

    For each batch size (the first rows of ``inputs``, repeated if there are
    fewer), every network is timed after warm-up in blocks of as many passes
    as fill ``block_seconds`` (at least one; ``time.perf_counter`` around the
    block: ``torch.utils.benchmark.Timer.timeit`` would add two warm-up passes
    to every block, tripling the cost of one-pass blocks of a large network
    at batch 64). Each of ``rounds`` rounds times every network once, in an
    order that rotates from round to round, each right beside a block of the
    baseline (before it in even rounds, after it in odd ones). The speed-up
    of a network is the median of its per-round ratios to the baseline block
    beside it, with their interquartile range: a busy moment on a shared
    machine slows both blocks of a pair alike and cancels out of the ratio.

    The rounds are split over ``sessions``, each on fresh copies of the
    networks and the inputs (and a heap shifted by a buffer of another size):
    where a network's tensors happen to lie in memory can change its speed by
    a third on its own (cache-set conflicts), so one placement per process
    would make the speed-up differ from process to process. Every network
    runs in its :func:`inference_form`, in the memory layout (channels-last or
    contiguous) that a short interleaved trial finds faster for the baseline,
    so that the layout choice never differs between the networks compared.
    Uses the current torch thread count (one thread, the harness's default,
    gives the steadiest ratios on a shared machine); leaves ``networks``
    unchanged. Returns ``[network][batch]``.
    """
    if not networks:
        raise ValueError("compare_latency needs at least one network (the baseline)")
    if rounds < 3 or sessions < 1 or rounds < sessions:
        raise ValueError(f"need rounds >= 3 (for quartiles) and >= sessions >= 1, got {rounds} and {sessions}")
    threads = torch.get_num_threads()
    cpu = [copy.deepcopy(network).to("cpu") for network in networks]  # the caller's modules stay where they are
    layouts = ("channels_last", "contiguous")
    shifts = random.Random(0)  # the heap offsets of the sessions: the same procedure on every run
    result: list[list[Timing]] = [[] for _ in networks]
    for batch in batches:
        x = inputs[:batch].cpu()
        if len(x) < batch:
            x = x.repeat(math.ceil(batch / len(x)), *[1] * (x.dim() - 1))[:batch]
        trial = {layout: _block_timer(inference_form(cpu[0], layout == "channels_last"), _in_layout(x, layout),
                                      block_seconds) for layout in layouts}
        trial_times: dict[str, list[float]] = {layout: [] for layout in layouts}
        for _ in range(5):
            for layout, timed in trial.items():
                trial_times[layout].append(timed())
        layout = min(layouts, key=lambda name: statistics.median(trial_times[name]))
        del trial
        times: list[list[float]] = [[] for _ in networks]
        ratios: list[list[float]] = [[1.0] * rounds] + [[] for _ in networks[1:]]
        for session in range(sessions):
            shift = torch.empty(shifts.randrange(1, 1 << 22), dtype=torch.uint8)  # kept alive for the session
            x_in = _in_layout(x.clone(), layout)
            blocks = [_block_timer(inference_form(n, layout == "channels_last"), x_in, block_seconds) for n in cpu]
            for r in range(session * rounds // sessions, (session + 1) * rounds // sessions):
                if len(networks) == 1:
                    times[0].append(blocks[0]())
                for i in [1 + (r + k) % (len(networks) - 1) for k in range(len(networks) - 1)]:
                    if r % 2:
                        own, base = blocks[i](), blocks[0]()
                    else:
                        base, own = blocks[0](), blocks[i]()
                    times[0].append(base)
                    times[i].append(own)
                    ratios[i].append(base / own)
            del blocks, x_in, shift
        for i in range(len(networks)):
            low, median, high = statistics.quantiles(ratios[i], n=4, method="inclusive")
            result[i].append(Timing(batch=batch, seconds=statistics.median(times[i]), speedup=median,
                                    speedup_low=low, speedup_high=high, layout=layout, threads=threads,
                                    rounds=rounds))
    return result


def _block_timer(network: nn.Module, x: torch.Tensor, block_seconds: float) -> Callable[[], float]:
    """``network`` on ``x`` warmed up: a function timing one block of passes, in seconds per pass."""

    def run(number: int) -> float:
        started = time.perf_counter()
        for _ in range(number):
            network(x)
        return (time.perf_counter() - started) / number

    run(2)
    number = max(1, round(block_seconds / max(run(1), 1e-7)))
    return lambda: run(number)


def _in_layout(x: torch.Tensor, layout: str) -> torch.Tensor:
    if layout == "channels_last" and x.dim() == 4:
        return x.contiguous(memory_format=torch.channels_last)
    return x.contiguous()


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
