"""The one place an engine is assembled: plugin host + registry + engine, from a picklable job.

The pytest harness, the Ray executor and the export in xdist's controller all
describe the run they want as an :class:`EngineJob` and call
:meth:`EngineJob.build`; a remote process rebuilds the same engine from the
same job. Importing this module imports no torch (the engine is imported
when a job is built), so the harness can hold jobs from collection on.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..core.datasource import default_store_root, with_resolved_paths
from ..core.machine import available_cores
from ..core.suite import Suite
from ..plugin.host import disabled_from_env, local_modules_from_env
from ..plugin.registry import load_registry

if TYPE_CHECKING:  # pragma: no cover
    from .context import ProgressFn
    from .engine import Engine

__all__ = ["EngineJob"]


@dataclass(frozen=True)
class EngineJob:
    """Everything a process needs to build the engine of one suite (all picklable).

    ``suite_file`` is the suite module: relative paths in the suite (data
    roots, checkpoints) are taken relative to its folder, and local plugin
    modules are looked up there first. ``plugins`` are the local plugin
    modules named on the command line or in the suite; ``$ROBUSTPRUNE_PLUGINS``
    is added when the job is made, so a remote process loads the same ones.
    ``disabled`` names plugins not to load (with ``$ROBUSTPRUNE_DISABLE_PLUGINS``, read when the job is made).
    ``workers=None`` uses every core for shifted-set generation. ``numerics``,
    set by the executors, is the main process's: a worker applies its
    deterministic flags and refuses to compute under other numerics.
    """

    suite: Suite
    suite_file: str
    store_root: str
    plugins: tuple[str, ...] = ()
    disabled: tuple[str, ...] = ()
    device: str = "cpu"
    threads: int = 1
    workers: int | None = None
    data_root: str | None = None
    download: bool = False
    numerics: dict[str, Any] | None = None  # set for worker processes: the main process's, to compute with

    @classmethod
    def for_suite(cls, suite: Suite, suite_file: str, store_root: str | None, *, plugins: tuple[str, ...] = (),
                  disabled: tuple[str, ...] = (), device: str = "cpu", threads: int = 1, workers: int | None = None,
                  data_root: str | None = None, download: bool = False) -> EngineJob:
        """The job of ``suite`` declared in ``suite_file``: paths resolved against its folder, and every local
        plugin it needs (``$ROBUSTPRUNE_PLUGINS``, ``plugins``, the suite's own) named. ``store_root=None``
        is ``$ROBUSTPRUNE_STORE`` or ``.robustprune/`` here, resolved now: a remote process uses the same folder."""
        store_root = str(Path(store_root).resolve() if store_root else default_store_root())
        folder = Path(suite_file).parent
        modules = (*local_modules_from_env(), *plugins, *suite.plugins)
        off = tuple(dict.fromkeys((*disabled_from_env(), *disabled)))
        return cls(suite=with_resolved_paths(suite, folder), suite_file=suite_file, store_root=store_root,
                   plugins=modules, disabled=off, device=device, threads=threads, workers=workers,
                   data_root=data_root, download=download)

    @property
    def search_path(self) -> Path:
        """Where local plugin modules are looked up first: the suite's folder."""
        return Path(self.suite_file).parent

    def with_workers(self, workers: int) -> EngineJob:
        return replace(self, workers=workers)

    def build(self, progress: ProgressFn | None = None) -> Engine:
        """Load the plugins and build the engine. Unknown names and malformed shifts raise
        ``LookupError`` / ``ValueError`` here, before any work."""
        from ..compute.store import Store
        from .context import RunOptions
        from .engine import Engine  # torch: only once an engine is really needed

        registry = load_registry(self.plugins, search_path=self.search_path, disabled=self.disabled)
        named = [f for f in registry.failures if f.name.removesuffix(" (local)") in self.plugins]
        if named:  # a plugin the user asked for by name must load; a broken third-party one is only noted
            raise LookupError("; ".join(f.describe() for f in named))
        options = RunOptions(
            store=Store(self.store_root), device=self.device, threads=self.threads,
            workers=self.workers if self.workers is not None else available_cores(),
            data_root=Path(self.data_root) if self.data_root else None, download=self.download,
            **({"progress": progress} if progress is not None else {}),
        )
        return Engine(self.suite, registry, options)
