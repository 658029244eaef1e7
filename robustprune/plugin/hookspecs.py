"""The plugin contract: one register-style hook per kind of thing a plugin adds.

Each hook receives a ``register`` callable. A plugin calls it once per item it
provides; the host records which plugin registered which name, so that name
conflicts and lookups can be reported precisely. Implement a hook with
:data:`robustprune.hookimpl`::

    from robustprune import hookimpl, PruneMethod

    @hookimpl
    def robustprune_register_methods(register):
        register(MyMethod())

The hook names all start with ``robustprune_`` so a module can be both a
robustprune plugin and something else without clashes.
"""

from __future__ import annotations

from collections.abc import Callable

import pluggy

__all__ = [
    "PROJECT_NAME",
    "hookimpl",
    "hookspec",
    "robustprune_register_datasets",
    "robustprune_register_methods",
    "robustprune_register_metrics",
    "robustprune_register_models",
    "robustprune_register_shifts",
]

PROJECT_NAME = "robustprune"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
"""Marker for the hook specifications below (host side)."""

hookimpl = pluggy.HookimplMarker(PROJECT_NAME)
"""Marker for hook implementations: ``@hookimpl def robustprune_register_methods(register): ...``."""


@hookspec
def robustprune_register_methods(register: Callable[..., None]) -> None:
    """Register prune methods.

    Call ``register(method)`` with an object that follows
    :class:`robustprune.PruneMethod` (a ``name``, ``structured``,
    ``data_informed`` and a ``prune(network, ratio, context)`` method).
    """


@hookspec
def robustprune_register_models(register: Callable[..., None]) -> None:
    """Register network architectures.

    Call ``register(ModelSpec(name=..., build=..., recipe=...))``. ``build``
    takes ``(num_classes, input_shape)`` and returns a fresh ``nn.Module``.
    """


@hookspec
def robustprune_register_datasets(register: Callable[..., None]) -> None:
    """Register datasets.

    Call ``register(DatasetSpec(name=..., load=...))``. ``load`` takes a
    :class:`robustprune.DatasetRequest` and returns
    :class:`robustprune.DataSplits`.
    """


@hookspec
def robustprune_register_shifts(register: Callable[..., None]) -> None:
    """Register distribution shifts and shift groups.

    Call ``register(PixelShift(...))`` for a shift applied to uint8 images,
    ``register(TensorShift(...))`` for one applied to normalized tensors, and
    ``register(ShiftGroup(name=..., members=[...]))`` for a named group such
    as ``noise`` (written ``noise@3`` in suites).
    """


@hookspec
def robustprune_register_metrics(register: Callable[..., None]) -> None:
    """Register scores (higher is better) that datasets and suites name.

    Call ``register(Metric(name=..., label=..., statistics=..., score=...))``;
    see :class:`robustprune.Metric` for the contract (additive per-sample
    statistics, a vectorized score of their sums).
    """
