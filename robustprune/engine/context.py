"""What a run is made of: its options, the networks of a curve, and the narrow view measures receive.

Measures beyond accuracy (functional similarity, informative features) get a
:class:`CaseContext`, never the engine: the networks they may load, the test
inputs, the store and where to report progress. What they compute stays
theirs; how the run is organised stays the engine's.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..compute.data import ProgressFn
from ..compute.store import Store
from ..core.machine import available_cores
from ..core.results import CaseKey

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from torch import nn

    from ..compute.data import PreparedData

__all__ = ["CaseContext", "NetworkRecord", "ProgressFn", "RunOptions", "tagged"]



def _silent(message: str) -> None:
    """The default progress sink: say nothing."""


def tagged(progress: ProgressFn, tag: str) -> ProgressFn:
    """``progress`` with every line prefixed ``[tag]`` (a case id, a dataset name)."""
    return lambda message: progress(f"[{tag}] {message}")


@dataclass(frozen=True)
class RunOptions:
    """How a run executes. ``threads`` is torch's intra-op thread count: results depend on it
    (parallel reductions add in a different order), so it is fixed, enters the store keys, and
    defaults to 1: the same suite then gives the same numbers serially, under xdist and on Ray."""

    store: Store
    device: str = "cpu"
    threads: int = 1
    workers: int = field(default_factory=available_cores)
    data_root: Path | None = None
    download: bool = False
    progress: ProgressFn = _silent


@dataclass
class NetworkRecord:
    """A network of a curve: the parent or one cascade step, by store key; weights only while needed."""

    key: str
    ratio: float  # requested (0 for the parent)
    achieved: float
    state: dict[str, torch.Tensor] | None = None
    masks: dict[str, torch.Tensor] | None = None


@dataclass(frozen=True)
class CaseContext:
    """The narrow, typed view of a run that a measure beyond accuracy receives for one case.

    ``load(record)`` builds the case's model with the record's weights (eval
    mode, on the CPU); ``test_inputs()`` is the normalized nominal test set;
    ``parent_of_seed(seed)`` trains (or finds) the parent of another seed.
    """

    case: CaseKey
    data: PreparedData
    store: Store
    device: str
    numerics: Mapping[str, Any]  # what the device computes with (robustprune.compute.numerics): in every key
    seed: int
    gate_ratio: float
    progress: ProgressFn
    load: Callable[[NetworkRecord], nn.Module]
    test_inputs: Callable[[], torch.Tensor]
    parent_of_seed: Callable[[int], NetworkRecord]
