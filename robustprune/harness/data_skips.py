"""Skipping a suite whose data is not on disk: ``robustprune.skip_unless_data(suite)``.

A suite calls it at import time, where no fixture can hand it the session's
options; it reads them from the running session (or the environment when
there is none).
"""

from __future__ import annotations

import inspect
import os
from pathlib import Path

import pytest

from ..core.datasource import dataset_request, with_resolved_paths
from ..core.suite import Suite
from ..plugin.registry import load_registry
from .options import data_options
from .session import active_config

__all__ = ["skip_unless_data"]


def skip_unless_data(suite: Suite, *, suite_file: str | os.PathLike[str] | None = None) -> None:
    """Skip the calling suite module (``pytest.skip(allow_module_level=True)``) if its data is not on disk.

    Call it at the top level of a suite, after ``suite = Suite(...)``. Each
    dataset plugin's ``check`` says what is missing where; the skip reason
    repeats it with how to point robustprune at the data (``--rp-data`` /
    ``ROBUSTPRUNE_DATA`` / ``dataset_params`` root) or download it
    (``--rp-download``). Datasets without a ``check`` (or unknown names, which
    the suite reports itself) never cause a skip. ``suite_file`` defaults to
    the caller's ``__file__``.
    """
    if suite_file is None:
        caller = inspect.currentframe().f_back  # type: ignore[union-attr]
        suite_file = caller.f_globals.get("__file__") if caller is not None else None
    suite_dir = Path(suite_file).resolve().parent if suite_file else None
    config = active_config()
    data_root, download = data_options(config)
    extra_plugins = list(config.getoption("rp_plugin") or []) if config is not None else []
    disabled = list(config.getoption("rp_disable") or []) if config is not None else []
    if suite_dir is not None:
        suite = with_resolved_paths(suite, suite_dir)
    registry = load_registry([*extra_plugins, *suite.plugins], search_path=suite_dir, disabled=disabled)
    for name in suite.datasets:
        try:
            spec = registry.dataset(name).item
        except LookupError:  # unknown, or registered by several plugins: the suite's cases say so
            continue
        if spec.check is None:
            continue
        request = dataset_request(suite, name, data_root=data_root, download=download)
        problem = spec.check(request)
        if problem:
            where = Path(suite_file).name if suite_file else "suite"
            pytest.skip(f"{where}: dataset {name!r} is not available. {problem}", allow_module_level=True)
