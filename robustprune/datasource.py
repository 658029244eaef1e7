"""Where a suite's data and checkpoints live, and skipping a suite whose data is not on disk.

The data root of a dataset is, in order: ``Suite(dataset_params={name: {"root": DIR}})``
(relative to the suite file), ``--rp-data DIR`` (``robustprune run --data``),
``$ROBUSTPRUNE_DATA``. Dataset plugins see it as :attr:`DatasetRequest.root`
and never as a parameter, so moving the data does not change any store key
(the data's content hash does that when the data itself changes).
"""

from __future__ import annotations

import dataclasses
import inspect
import os
from pathlib import Path
from typing import Any

from .api import DatasetRequest
from .suite import Suite

ROOT_PARAM = "root"

__all__ = ["dataset_request", "resolve_path", "skip_unless_data", "with_resolved_paths"]


def resolve_path(path: str | os.PathLike[str], base: Path | None) -> Path:
    """``path`` with ``~`` expanded, relative to ``base`` (the suite's folder) unless absolute."""
    p = Path(path).expanduser()
    if not p.is_absolute() and base is not None:
        p = base / p
    return p.resolve()


def with_resolved_paths(suite: Suite, base: Path) -> Suite:
    """``suite`` with relative dataset roots, parent and pruned checkpoints made absolute against ``base``."""
    params = {
        name: ({**p, ROOT_PARAM: str(resolve_path(p[ROOT_PARAM], base))} if p.get(ROOT_PARAM) is not None else p)
        for name, p in suite.dataset_params.items()
    }
    checkpoints = {model: str(resolve_path(path, base)) for model, path in suite.parent_checkpoints.items()}
    pruned = {name: dataclasses.replace(entry, path=str(resolve_path(entry.path, base)))
              for name, entry in suite.pruned_checkpoints.items()}
    if params == dict(suite.dataset_params) and checkpoints == {m: str(p) for m, p in suite.parent_checkpoints.items()} \
            and pruned == dict(suite.pruned_checkpoints):
        return suite
    return dataclasses.replace(suite, dataset_params=params, parent_checkpoints=checkpoints, pruned_checkpoints=pruned)


def dataset_request(suite: Suite, name: str, *, data_root: Path | None, download: bool) -> DatasetRequest:
    """What the host hands dataset ``name``'s plugin: the per-dataset ``root`` is taken out of the parameters."""
    params: dict[str, Any] = dict(suite.dataset_params.get(name, {}))
    own_root = params.pop(ROOT_PARAM, None)
    # relative to the working directory here; the pytest plugin has already made suite-relative roots absolute
    root = resolve_path(own_root, None) if own_root is not None else data_root
    return DatasetRequest(seed=suite.seed, root=root, download=download, params=params)


def _settings() -> tuple[Path | None, bool, list[str]]:
    """Data root, download switch and extra plugins of the running pytest session (or the environment)."""
    from . import pytest_plugin

    config = pytest_plugin.active_config()
    if config is not None:
        root, download = pytest_plugin.data_options(config)
        return root, download, list(config.getoption("rp_plugin") or [])
    value = os.environ.get(pytest_plugin.DATA_ENV)
    return (Path(value).expanduser().resolve() if value else None), False, []


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
    import pytest

    from .plugins import create_host
    from .registry import Registry, UnknownNameError

    if suite_file is None:
        caller = inspect.currentframe().f_back  # type: ignore[union-attr]
        suite_file = caller.f_globals.get("__file__") if caller is not None else None
    suite_dir = Path(suite_file).resolve().parent if suite_file else None
    data_root, download, extra_plugins = _settings()
    if suite_dir is not None:
        suite = with_resolved_paths(suite, suite_dir)
    registry = Registry(create_host([*extra_plugins, *suite.plugins], search_path=suite_dir))
    for name in suite.datasets:
        try:
            spec = registry.dataset(name).item
        except UnknownNameError:
            continue
        if spec.check is None:
            continue
        request = dataset_request(suite, name, data_root=data_root, download=download)
        problem = spec.check(request)
        if problem:
            where = Path(suite_file).name if suite_file else "suite"
            pytest.skip(f"{where}: dataset {name!r} is not available. {problem}", allow_module_level=True)
