"""Shared fixtures: the registry of installed plugins, engines on a fresh store, suites run in-process.

``pytester`` runs suites inside this process (fast: no interpreter start, no
torch import), with the robustprune pytest plugin loaded from its entry point
exactly as in a user's run; :func:`run_suite` writes a suite next to a tiny
local plugin (a toy dataset, a two-layer model and a cheap pixel shift) so the
grid computes in well under a second.
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from robustprune import Suite
from robustprune.compute.store import Store
from robustprune.engine.context import RunOptions
from robustprune.engine.engine import Engine
from robustprune.plugin.registry import Registry, load_registry

pytest_plugins = ["pytester"]


def pytest_configure(config: pytest.Config) -> None:
    # one torch thread, as robustprune runs by default: results then do not depend on the machine's cores
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def registry() -> Registry:
    """Everything the installed plugins register (the first-party ones through their entry points)."""
    return load_registry()


@pytest.fixture
def make_engine(registry: Registry, tmp_path: Path) -> Callable[..., Engine]:
    """``make_engine(suite, messages=None, **options)``: an engine on a fresh store in ``tmp_path``, one worker;
    progress lines go to ``messages`` when given."""

    def make(suite: Suite, messages: list[str] | None = None, **options: object) -> Engine:
        options.setdefault("store", Store(tmp_path / "store"))
        options.setdefault("workers", 1)
        sink = messages.append if messages is not None else (lambda message: None)
        return Engine(suite, registry, RunOptions(progress=sink, **options))  # type: ignore[arg-type]

    return make


# --------------------------------------------------------------------------- suites in-process

TOY_PLUGIN = '''
"""A toy dataset, a two-layer model and a cheap pixel shift: a whole grid in well under a second."""

import numpy as np
from torch import nn

from robustprune import (DatasetSpec, DataSplits, ImageSet, ModelSpec, PixelShift, PruneMethod, Recipe, ShiftParam,
                         hookimpl)
from robustprune.plugin.masks import global_top_masks, prunable_weights


def load(request):
    """Two classes told apart by brightness: 96 training and 48 test images of 8x8 pixels."""
    rng = np.random.default_rng(request.seed)

    def images(n):
        labels = np.arange(n) % 2
        base = np.where(labels[:, None, None, None] == 1, 170, 60)
        noise = rng.integers(-40, 40, size=(n, 8, 8, 3))
        return ImageSet(np.clip(base + noise, 0, 255).astype(np.uint8), labels)

    return DataSplits(images(96), images(48), 2, (0.45, 0.45, 0.45), (0.25, 0.25, 0.25))


def build(num_classes, input_shape):
    return nn.Sequential(nn.Conv2d(input_shape[0], 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(8, num_classes))


def darken(image, strength, seed):
    """Scale the image towards black: 0 = unchanged, 1 = black."""
    return (image * (1 - strength)).astype(np.uint8)


class Erase(PruneMethod):
    """The opposite of WT: removes the largest weights first (a method that certainly hurts)."""

    name = "erase"

    def prune(self, network, ratio, context):
        scores = {n: -w.detach().abs() for n, w in prunable_weights(network).items()}
        return global_top_masks(scores, ratio, context.masks)


class Broken(PruneMethod):
    """A method whose prune() raises, as a buggy third-party method would."""

    name = "broken"

    def prune(self, network, ratio, context):
        raise RuntimeError("broken on purpose")


@hookimpl
def robustprune_register_methods(register):
    register(Erase())
    register(Broken())


@hookimpl
def robustprune_register_datasets(register):
    register(DatasetSpec("toy", load, "two brightness classes"))


@hookimpl
def robustprune_register_models(register):
    register(ModelSpec("toynet", build, Recipe(epochs=2, batch_size=32, lr=0.05, augment="none")))


@hookimpl
def robustprune_register_shifts(register):
    register(PixelShift("darken", darken, ShiftParam("strength", float, 0.0, 1.0), "scale towards black"))
'''

TOY_SUITE_HEAD = '''
from robustprune import DeployGate, Suite

suite = Suite(
    models=["toynet"],
    datasets=["toy"],
    methods={methods!r},
    shifts={shifts!r},
    ratios=[0.25, 0.5],
    gate_ratio=0.25,
    retrain_epochs=1,
    plugins={plugins!r},{extra}
)
'''


@pytest.fixture(scope="session")
def torch_warmed_up() -> None:
    """Import what torch imports lazily (the optimizer step pulls in torch._dynamo) before any in-process run.

    pytester removes the modules a run imported when it ends; torch cannot import some of them twice
    (a second TORCH_LIBRARY registration fails), so they must already be loaded when the first run starts.
    """
    network = torch.nn.Linear(2, 2)
    optimizer = torch.optim.SGD(network.parameters(), lr=0.1, momentum=0.9)
    network(torch.zeros(1, 2)).sum().backward()
    optimizer.step()


@pytest.fixture
def run_suite(pytester: pytest.Pytester, torch_warmed_up: None) -> Callable[..., pytest.RunResult]:
    """``run_suite(checks, *args, methods=("wt",), shifts=("darken@0.5",), plugins=("toy_plugin",), extra="")``:
    write ``suite_toy.py`` (the toy suite with ``checks`` as its test functions, ``extra`` as more ``Suite``
    fields) and run it in-process; the store lives in the pytester folder, so a second call reuses it."""
    pytester.makepyfile(toy_plugin=TOY_PLUGIN)

    def run(checks: str, *args: str, methods: tuple[str, ...] = ("wt",), shifts: tuple[str, ...] = ("darken@0.5",),
            plugins: tuple[str, ...] = ("toy_plugin",), extra: str = "") -> pytest.RunResult:
        head = TOY_SUITE_HEAD.format(methods=list(methods), shifts=list(shifts), plugins=list(plugins),
                                     extra=("\n    " + extra.strip()) if extra else "")
        pytester.makepyfile(suite_toy=head + "\n" + textwrap.dedent(checks))
        # one process: in-process runs stay fast (tests/test_executors.py runs the worker pool)
        return pytester.runpytest_inprocess("suite_toy.py", f"--rp-store={pytester.path / 'store'}",
                                            "--rp-workers=1", "-p", "no:cacheprovider", *args)

    return run
