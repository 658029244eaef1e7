"""Where a suite's data, checkpoints and store live.

The data root of a dataset is, in order: ``Suite(dataset_params={name: {"root": DIR}})``
(relative to the suite file), ``--rp-data DIR`` (``robustprune run --data``),
``$ROBUSTPRUNE_DATA``. Dataset plugins see it as :attr:`DatasetRequest.root`
and never as a parameter, so moving the data does not change any store key
(the data's content hash does that when the data itself changes).

Skipping a suite whose data is not on disk is the harness's job
(:func:`robustprune.harness.data_skips.skip_unless_data`).
"""

from __future__ import annotations

import dataclasses
import os
import uuid
from pathlib import Path
from typing import Any

from ..plugin.api import DatasetRequest
from .suite import Suite

ROOT_PARAM = "root"
"""The key of ``Suite.dataset_params[name]`` that names the dataset's own data root."""

STORE_ENV = "ROBUSTPRUNE_STORE"
DEFAULT_STORE = ".robustprune"

__all__ = ["DEFAULT_STORE", "ROOT_PARAM", "STORE_ENV", "can_write", "dataset_request", "default_store_root",
           "new_file_mode", "resolve_path", "with_resolved_paths"]


def default_store_root() -> Path:
    """``$ROBUSTPRUNE_STORE`` if set, else ``.robustprune/`` in the working directory."""
    return Path(os.environ.get(STORE_ENV) or DEFAULT_STORE).expanduser().resolve()


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
              for name, entry in suite.pruned_entries.items()}
    unchanged_checkpoints = checkpoints == {m: str(p) for m, p in suite.parent_checkpoints.items()}
    if params == dict(suite.dataset_params) and unchanged_checkpoints and pruned == dict(suite.pruned_checkpoints):
        return suite
    return dataclasses.replace(suite, dataset_params=params, parent_checkpoints=checkpoints, pruned_checkpoints=pruned)


def dataset_request(suite: Suite, name: str, *, data_root: Path | None, download: bool) -> DatasetRequest:
    """What the host hands dataset ``name``'s plugin: the per-dataset ``root`` is taken out of the parameters."""
    params: dict[str, Any] = dict(suite.dataset_params.get(name, {}))
    own_root = params.pop(ROOT_PARAM, None)
    # relative to the working directory here; the pytest plugin has already made suite-relative roots absolute
    root = resolve_path(own_root, None) if own_root is not None else data_root
    return DatasetRequest(seed=suite.seed, root=root, download=download, params=params)


def new_file_mode() -> int:
    """The permissions ``open()`` gives a new file under the process's umask (``tempfile.mkstemp`` gives 0600:
    files written through a temporary copy are set to this, so a store or report shared by a team stays so)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def can_write(folder: Path) -> bool:
    """Whether a file can be created in ``folder`` now (tried, not inferred from permission bits: read-only
    mounts, ACLs and root all answer differently)."""
    probe = folder / f".robustprune-probe-{uuid.uuid4().hex}"
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError:
        return False
    return True
