"""Name lookups over everything the plugins registered, with "did you mean" errors.

The registry calls each plugin's register hooks once, recording which plugin
registered which name. Two plugins claiming one name make that name
unavailable (a lookup raises an error naming both), and nothing else: every
other name of both plugins still works. A plugin whose hook raises is
recorded as failed and the rest load.
"""

from __future__ import annotations

import difflib
import pickle
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

from .api import (
    NOMINAL,
    DatasetSpec,
    Metric,
    ModelSpec,
    PixelShift,
    PruneMethod,
    PublishedShift,
    ShiftGroup,
    TensorShift,
    check_name,
    describe_sequence,
)
from .host import PluginFailure, PluginHost, PluginInfo, create_host, short_error

T = TypeVar("T")


class UnknownNameError(LookupError):
    """A name that no plugin registered. The message lists what is available."""

    def __str__(self) -> str:  # LookupError would quote the message
        return str(self.args[0])


class PluginConflictError(LookupError):
    """Two plugins registered the same name: it is unavailable until one of them is disabled or renamed."""

    def __str__(self) -> str:  # LookupError would quote the message
        return str(self.args[0])


@dataclass(frozen=True)
class Registered(Generic[T]):
    """A registered item with the plugin that registered it."""

    name: str
    item: T
    plugin: PluginInfo

    @property
    def version(self) -> str:
        """The item's own version if it declares one, else its distribution's."""
        return getattr(self.item, "version", None) or self.plugin.version

    def identity(self) -> dict[str, str]:
        """What identifies this item in store keys: its name, plugin, version and the plugin's source hash (so an
        edit recomputes its results, version bumped or not)."""
        return {"name": self.name, "plugin": self.plugin.distribution, "version": self.version,
                "source": self.plugin.source_hash}


# What the host reads from a method; PruneMethod provides defaults for all but name and prune().
_METHOD_PROTOCOL = ("name", "structured", "data_informed", "data_batch_size", "prune", "params", "data_size")


def _is_method(obj: Any) -> bool:
    return all(hasattr(obj, a) for a in _METHOD_PROTOCOL) and callable(obj.prune) and callable(obj.params)


def _method_problem(obj: Any) -> str:
    missing = [a for a in _METHOD_PROTOCOL if not hasattr(obj, a)]
    if missing:
        return f"it lacks {', '.join(missing)}; subclass robustprune.PruneMethod, which provides the defaults"
    return "its prune or params is not callable"


# kind -> (hook name, accepted check, what was expected)
_KINDS: dict[str, tuple[str, Callable[[Any], bool], str]] = {
    "method": ("robustprune_register_methods", _is_method, "a PruneMethod (name, structured, data_informed, prune())"),
    "model": ("robustprune_register_models", lambda o: isinstance(o, ModelSpec), "a ModelSpec"),
    "dataset": ("robustprune_register_datasets", lambda o: isinstance(o, DatasetSpec), "a DatasetSpec"),
    "shift": (
        "robustprune_register_shifts",
        lambda o: isinstance(o, (PixelShift, TensorShift, PublishedShift, ShiftGroup)),
        "a PixelShift, TensorShift, PublishedShift or ShiftGroup",
    ),
    "metric": ("robustprune_register_metrics", lambda o: isinstance(o, Metric), "a Metric"),
}


def _check_picklable(shift: PixelShift, info: PluginInfo) -> None:
    """Pixel shifts run in worker processes: an unpicklable ``apply`` would fail only with workers > 1."""
    for family, function in [(None, shift.apply), *shift.families.items()]:
        try:
            pickle.dumps(function)
        except Exception as exc:  # noqa: BLE001 - pickling raises many types
            which = "an apply" if family is None else f"a family {family!r} function"
            raise TypeError(
                f"plugin {info.name!r}: shift {shift.name!r} has {which} that cannot be pickled ({exc}); use a "
                "module-level function or functools.partial of one, not a lambda or a nested function"
            ) from None


class Registry:
    """Everything the loaded plugins registered, by kind and name."""

    def __init__(self, host: PluginHost):
        self.host = host
        self.failures: list[PluginFailure] = list(host.failures)
        self._items: dict[str, dict[str, Registered[Any]]] = {kind: {} for kind in (*_KINDS, "group")}
        # (kind, name) -> every plugin that registered it, when more than one did: the name is unavailable
        self.clashes: dict[tuple[str, str], list[PluginInfo]] = {}
        self._clashing: dict[tuple[str, str], list[Registered[Any]]] = {}
        for kind, (hook_name, accepts, expected) in _KINDS.items():
            for impl in getattr(host.manager.hook, hook_name).get_hookimpls():
                info = host.info_for(impl.plugin)
                register = self._registrar(kind, info, accepts, expected)
                try:
                    impl.function(register=register)
                except Exception as exc:  # noqa: BLE001 - a broken plugin fails alone
                    self.failures.append(PluginFailure(info.name, f"{hook_name}", short_error(exc)))

    def _registrar(self, kind: str, info: PluginInfo, accepts: Callable[[Any], bool],
                   expected: str) -> Callable[[Any], None]:
        def register(item: Any) -> None:
            if not accepts(item):
                why = f" ({_method_problem(item)})" if kind == "method" and hasattr(item, "prune") else ""
                raise TypeError(f"plugin {info.name!r} registered {item!r}; expected {expected}{why}")
            if isinstance(item, PixelShift):
                _check_picklable(item, info)
            item_kind = "group" if isinstance(item, ShiftGroup) else kind
            check_name(item_kind, item.name)
            # a shift and a shift group share one namespace: suites name both the same way
            kinds = ("shift", "group") if item_kind in ("shift", "group") else (item_kind,)
            registered = Registered(item.name, item, info)
            clash = next(((k, item.name) for k in kinds if (k, item.name) in self.clashes), None)
            if clash is not None:
                self.clashes[clash].append(info)
                self._clashing[clash].append(registered)
                return
            holder = next((k for k in kinds if item.name in self._items[k]), None)
            if holder is not None and self._items[holder][item.name].plugin.name == info.name:
                raise ValueError(f"plugin {info.name!r} registers {item_kind} {item.name!r} twice")
            if holder is not None:
                first = self._items[holder].pop(item.name)
                self.clashes[(holder, item.name)] = [first.plugin, info]
                self._clashing[(holder, item.name)] = [first, registered]
                return
            self._items[item_kind][item.name] = registered

        return register

    # ------------------------------------------------------------------ lookups

    def names(self, kind: str) -> list[str]:
        return sorted(self._items[kind])

    def items(self, kind: str) -> list[Registered[Any]]:
        return [self._items[kind][n] for n in self.names(kind)]

    def get(self, kind: str, name: str) -> Registered[Any]:
        table = self._items[kind]
        if name in table:
            return table[name]
        clash = self.clash_message(kind, name)
        if clash is not None:
            raise PluginConflictError(clash)
        raise UnknownNameError(self._unknown_message(kind, name))

    def clashing(self, kind: str, name: str) -> list[Registered[Any]]:
        """Every registration of a name several plugins registered (empty when none did), in load order."""
        return list(self._clashing.get((kind, name), ()))

    def clash_message(self, kind: str, name: str) -> str | None:
        """Why ``name`` is unavailable when several plugins registered it (``None`` when they did not)."""
        kinds = ("shift", "group") if kind in ("shift", "group") else (kind,)
        plugins = next((self.clashes[(k, name)] for k in kinds if (k, name) in self.clashes), None)
        if plugins is None:
            return None
        who = " and ".join(f"{p.name!r} ({p.distribution} {p.version})" for p in plugins)
        which = "one of them" if len(plugins) == 2 else "all but one of them"
        return (f"{kind} {name!r} is registered by {len(plugins)} plugins: {who}, so it is unavailable; disable "
                f"{which} (robustprune run --disable NAME, pytest --rp-disable NAME, or "
                "$ROBUSTPRUNE_DISABLE_PLUGINS) or rename its item")

    def method(self, name: str) -> Registered[PruneMethod]:
        """The method registered as ``name`` (it has every attribute of :class:`PruneMethod`, checked on
        registration, though it need not subclass it)."""
        return self.get("method", name)

    def model(self, name: str) -> Registered[ModelSpec]:
        return self.get("model", name)

    def dataset(self, name: str) -> Registered[DatasetSpec]:
        return self.get("dataset", name)

    def metric(self, name: str) -> Registered[Metric]:
        return self.get("metric", name)

    def _unknown_message(self, kind: str, name: str) -> str:
        available = self.names(kind)
        if kind == "shift":
            available = sorted({*available, NOMINAL, *self.names("group")})
        close = difflib.get_close_matches(name, available, n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]!r}?" if close else "."
        message = f"unknown {kind} {name!r}{hint} Available {kind}s: {describe_sequence(available)}."
        if self.failures:
            message += " Note: " + "; ".join(f.describe() for f in self.failures)
        if self.host.disabled:
            message += f" Disabled (not loaded): {', '.join(self.host.disabled)}."
        return message + " (`robustprune plugins` lists every plugin and what it registers.)"

    def registered_by(self, plugin_name: str) -> dict[str, list[str]]:
        """What one plugin registered, by kind (for ``robustprune plugins``); a name another plugin registered
        too is marked ``(clash)``."""
        out: dict[str, list[str]] = {}
        for kind, table in self._items.items():
            names = [n for n, reg in table.items() if reg.plugin.name == plugin_name]
            names += [f"{n} (clash)" for (k, n), plugins in self.clashes.items()
                      if k == kind and any(p.name == plugin_name for p in plugins)]
            if names:
                out[kind] = sorted(names)
        return out


def load_registry(local_modules: Iterable[str] = (), search_path: Path | None = None,
                  disabled: Iterable[str] = ()) -> Registry:
    """Load every plugin (entry points, ``$ROBUSTPRUNE_PLUGINS``, then ``local_modules``; none named in
    ``disabled`` or ``$ROBUSTPRUNE_DISABLE_PLUGINS``) and register their items.

    The one place the plugin host and the registry are assembled: the engine
    factory, the ``robustprune plugins`` command and ``skip_unless_data`` call it.
    """
    return Registry(create_host(local_modules, search_path=search_path, disabled=disabled))
