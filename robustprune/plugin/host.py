"""The plugin manager: first-party and third-party plugins from entry points, plus local modules.

Plugins are found three ways, all registered on one pluggy manager:

1. entry points in the ``robustprune`` group (first-party plugins are
   registered this way too, so they follow exactly the third-party path);
2. local modules named with ``--rp-plugin MODULE`` / ``robustprune run -p MODULE``
   or in the ``ROBUSTPRUNE_PLUGINS`` environment variable (comma-separated);
3. local modules named by a suite (``Suite(plugins=[...])``).

A plugin that fails to import is recorded with its error and skipped; the
rest load. Names resolve through :class:`robustprune.plugin.registry.Registry`;
:func:`robustprune.plugin.registry.load_registry` assembles both.
"""

from __future__ import annotations

import difflib
import hashlib
import importlib
import importlib.metadata
import inspect
import os
import sys
import traceback
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import ModuleType

import pluggy

from . import hookspecs
from .hookspecs import PROJECT_NAME

ENTRY_POINT_GROUP = PROJECT_NAME
PLUGINS_ENV = "ROBUSTPRUNE_PLUGINS"
DISABLE_ENV = "ROBUSTPRUNE_DISABLE_PLUGINS"


@dataclass(frozen=True)
class PluginInfo:
    """Where a plugin came from, for listings, conflict errors and store keys.

    ``source_hash`` hashes the plugin's own source files (see
    :func:`source_hash`): it is part of the store key of everything the
    plugin's items compute, so editing a plugin recomputes its results even
    when its version stays the same (an editable install, say).
    """

    name: str
    distribution: str
    version: str
    source: str  # "entry point" or "local module"
    source_hash: str = ""


@dataclass(frozen=True)
class PluginFailure:
    """A plugin that failed to load or register, with the one-line error."""

    name: str
    source: str
    error: str

    def describe(self) -> str:
        """``plugin 'x' (entry point of dist) failed to load: TypeError: ...``."""
        return f"plugin {self.name!r} ({self.source}) failed to load: {self.error}"


@dataclass
class PluginHost:
    """A pluggy manager plus what we know about each registered plugin."""

    manager: pluggy.PluginManager
    info: dict[str, PluginInfo] = field(default_factory=dict)  # by pluggy plugin name
    failures: list[PluginFailure] = field(default_factory=list)
    disabled: list[str] = field(default_factory=list)  # plugins not loaded because they were asked to be off
    notes: list[str] = field(default_factory=list)  # what loaded but looks wrong (a hook without @hookimpl)

    def info_for(self, plugin: object) -> PluginInfo:
        """What we know of a registered plugin object (a placeholder for one registered behind our back)."""
        name = str(self.manager.get_name(plugin))
        return self.info.get(name, PluginInfo(name, "unknown", "0", "unknown"))

    def load_local(self, module_name: str, search_path: Path | None = None) -> None:
        """Import and register a local plugin module (no packaging needed)."""
        added = False
        if search_path is not None and str(search_path) not in sys.path:
            sys.path.insert(0, str(search_path))
            added = True
        try:
            module = importlib.import_module(module_name)
        except Exception as exc:  # noqa: BLE001 - any import error is reported, not raised
            self.failures.append(PluginFailure(module_name, "local module", short_error(exc)))
            return
        finally:
            if added:
                sys.path.remove(str(search_path))
        if self.manager.is_registered(module):
            return  # named twice (command line and suite, say): load once
        # a local module may share its name with an entry point (a user's own `digits.py`)
        name = module_name if not self.manager.has_plugin(module_name) else f"{module_name} (local)"
        self.register_module(module, name, _module_info(name, module))

    def register_module(self, module: ModuleType, name: str, info: PluginInfo) -> None:
        """Register an imported module as plugin ``name``; a module implementing an unknown hook is refused
        (recorded as a failure with a "did you mean"), since pluggy would silently never call it. A hook
        function without ``@hookimpl`` is warned about, for the same reason."""
        unmarked = _unmarked_hooks(module)
        if unmarked:
            message = (f"plugin {name!r} defines {', '.join(unmarked)} without @hookimpl, so it is never called; "
                       "decorate it with @robustprune.hookimpl")
            self.notes.append(message)
            warnings.warn(PluginWarning(message), stacklevel=2)
        try:
            self.manager.register(module, name=name)
        except pluggy.PluginValidationError:
            self.failures.append(PluginFailure(name, info.source, _signature_problem(module)))
            return
        except Exception as exc:  # noqa: BLE001 - one broken plugin must not take down the rest
            self.failures.append(PluginFailure(name, info.source, short_error(exc)))
            return
        # pluggy accepts hooks nobody specified; a misspelled hook would silently do nothing
        unknown = [c.name for c in self.manager.get_hookcallers(module) or [] if not c.has_spec()]
        if unknown:
            self.manager.unregister(module)
            valid = [n for n in dir(hookspecs) if n.startswith(PROJECT_NAME + "_")]
            hints = []
            for hook in unknown:
                close = difflib.get_close_matches(hook, valid, n=1)
                hints.append(f"{hook}" + (f" (did you mean {close[0]}?)" if close else ""))
            self.failures.append(PluginFailure(
                name, info.source, f"unknown hook {', '.join(hints)}; valid hooks: {', '.join(valid)}"
            ))
            return
        self.info[name] = info


class PluginWarning(UserWarning):
    """A plugin loaded, but part of it will not work as its author meant (a hook without ``@hookimpl``)."""


def _hook_names() -> list[str]:
    return [n for n in dir(hookspecs) if n.startswith(PROJECT_NAME + "_")]


def _unmarked_hooks(module: ModuleType) -> list[str]:
    """The module's functions named like a hook but not marked with ``@hookimpl`` (pluggy skips them)."""
    marker = PROJECT_NAME + "_impl"
    return [n for n in _hook_names()
            if callable(getattr(module, n, None)) and not hasattr(getattr(module, n), marker)]


def _signature_problem(module: ModuleType) -> str:
    """What pluggy's ``PluginValidationError`` means, for each hook whose arguments are not the spec's."""
    problems = []
    for hook in _hook_names():
        function = getattr(module, hook, None)
        if function is None or not hasattr(function, PROJECT_NAME + "_impl"):
            continue
        expected = list(inspect.signature(getattr(hookspecs, hook)).parameters)
        got = list(inspect.signature(function).parameters)
        if got != expected and not set(got) <= set(expected):
            problems.append(f"hook {hook} takes one argument named `{expected[0]}`, not "
                            f"{', '.join(f'`{g}`' for g in got) or 'none'}: write `def {hook}({expected[0]}):`")
    return "; ".join(problems) or "a hook's arguments do not match its specification"


def short_error(exc: BaseException) -> str:
    """``Type: message (at file.py:line)``: an exception in one line, pointing at where a plugin raised it."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if not f.filename.startswith("<")]
    last = frames[-1:]
    where = f" (at {Path(last[0].filename).name}:{last[0].lineno})" if last else ""
    return f"{type(exc).__name__}: {exc}{where}"


def _module_info(name: str, module: ModuleType) -> PluginInfo:
    """A local module's version is its ``__version__``, else a hash of its source.

    The version enters the store keys of everything the plugin's items make, so
    editing an unversioned local plugin recomputes its results instead of
    silently reusing stale ones.
    """
    version = getattr(module, "__version__", None)
    if version is None:
        source = getattr(module, "__file__", None)
        try:
            version = "src-" + hashlib.sha256(Path(source).read_bytes()).hexdigest()[:12] if source else "unknown"
        except OSError:
            version = "unknown"
    return PluginInfo(name, "local", str(version), "local module", source_hash(module))


_HASHES: dict[Path, str] = {}


PRUNE_LIBRARY = ("masks", "channels", "allocation", "layerwise", "sensitivity")
"""The modules of :mod:`robustprune.plugin` that compute masks for the methods (analysis, allocation, scores)."""


SCORES_LIBRARY = ("scores",)
"""The modules of :mod:`robustprune.plugin` that compute metrics' per-sample statistics."""


def prune_library_hash() -> str:
    """A hash of the pruning library the methods build on (:data:`PRUNE_LIBRARY`): part of every pruned network's
    store key, so an edit there recomputes pruned networks just as an edit of a method's own plugin does."""
    return _library_hash(PRUNE_LIBRARY)


def scores_library_hash() -> str:
    """A hash of the statistics library metrics build on (:data:`SCORES_LIBRARY`): part of every stored
    evaluation's key, so an edit there re-evaluates as an edit of the metric's own plugin does."""
    return _library_hash(SCORES_LIBRARY)


def _library_hash(names: tuple[str, ...]) -> str:
    if names not in _LIBRARY:
        digest = hashlib.sha256()
        for name in names:
            digest.update(name.encode() + b"\0" + (Path(__file__).parent / f"{name}.py").read_bytes())
        _LIBRARY[names] = digest.hexdigest()[:16]
    return _LIBRARY[names]


_LIBRARY: dict[tuple[str, ...], str] = {}


def source_hash(module: ModuleType) -> str:
    """A hash of the source files a plugin module's behaviour most likely lives in: the module's own file and,
    when it belongs to a package, every ``.py`` file of that package (its immediate package, recursively:
    helpers next to it count). Computed once per folder per process."""
    file = getattr(module, "__file__", None)
    if not file:
        return "unknown"
    path = Path(file).resolve()
    in_package = path.name == "__init__.py" or "." in module.__name__
    root = path.parent if in_package else path
    if root not in _HASHES:
        files = sorted(root.rglob("*.py")) if root.is_dir() else [root]
        digest = hashlib.sha256()
        for source in files:
            digest.update(str(source.relative_to(root) if root.is_dir() else source.name).encode() + b"\0")
            try:
                digest.update(source.read_bytes())
            except OSError:  # unreadable: the file's name still counts
                continue
        _HASHES[root] = digest.hexdigest()[:16]
    return _HASHES[root]


def local_modules_from_env() -> list[str]:
    """The local plugin modules named in ``$ROBUSTPRUNE_PLUGINS`` (comma-separated)."""
    return [m.strip() for m in os.environ.get(PLUGINS_ENV, "").split(",") if m.strip()]


def disabled_from_env() -> list[str]:
    """The plugins named in ``$ROBUSTPRUNE_DISABLE_PLUGINS`` (comma-separated entry-point or module names)."""
    return [m.strip() for m in os.environ.get(DISABLE_ENV, "").split(",") if m.strip()]


def create_host(local_modules: Iterable[str] = (), search_path: Path | None = None,
                disabled: Iterable[str] = ()) -> PluginHost:
    """Build the plugin host: entry points, then ``ROBUSTPRUNE_PLUGINS``, then ``local_modules``; none of the
    plugins named in ``disabled`` or ``$ROBUSTPRUNE_DISABLE_PLUGINS`` (an entry point's name, the first-party
    ones included, or a local module's) is imported."""
    manager = pluggy.PluginManager(PROJECT_NAME)
    manager.add_hookspecs(hookspecs)
    host = PluginHost(manager)
    off = set(disabled) | set(disabled_from_env())
    seen: set[str] = set()
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in seen:  # the same distribution visible twice on sys.path
            continue
        seen.add(ep.name)
        if ep.name in off:
            host.disabled.append(ep.name)
            continue
        dist = ep.dist
        info = PluginInfo(
            ep.name,
            dist.metadata["Name"] if dist else "unknown",
            dist.version if dist else "0",
            "entry point",
        )
        try:
            module = ep.load()
        except Exception as exc:  # noqa: BLE001 - one broken plugin must not take down the rest
            host.failures.append(PluginFailure(ep.name, f"entry point of {info.distribution}", short_error(exc)))
            continue
        host.register_module(module, ep.name, replace(info, source_hash=source_hash(module)))
    # each module once, even when named in several places (the environment, the command line, a suite)
    for module_name in dict.fromkeys([*local_modules_from_env(), *local_modules]):
        if module_name in off:
            host.disabled.append(module_name)
            continue
        host.load_local(module_name, search_path)
    return host
