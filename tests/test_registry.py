"""robustprune.plugin.registry + robustprune.plugin.host: local plugin modules, lookups, conflicts and failures."""

from __future__ import annotations

import itertools
import sys
import textwrap
from pathlib import Path

import pytest

from robustprune.plugin.host import DISABLE_ENV, PLUGINS_ENV, PluginFailure, PluginWarning, create_host
from robustprune.plugin.registry import PluginConflictError, Registry, UnknownNameError

_counter = itertools.count()

METHOD_MODULE = """
from robustprune import PruneMethod, hookimpl

__version__ = "{version}"

class Method(PruneMethod):
    name = "{name}"

    def prune(self, network, ratio, context):
        return dict(context.masks)

@hookimpl
def robustprune_register_methods(register):
    register(Method())
"""


@pytest.fixture
def write_module(tmp_path, monkeypatch):
    """Write a local plugin module into tmp_path (on sys.path); returns its unique importable name."""
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv(PLUGINS_ENV, raising=False)
    written: list[str] = []

    def write(source: str, hint: str = "plugin", name: str | None = None) -> str:
        module = name or f"rp_test_{hint}_{next(_counter)}"
        (tmp_path / f"{module}.py").write_text(textwrap.dedent(source))
        written.append(module)
        return module

    yield write
    for module in written:
        sys.modules.pop(module, None)


def method_module(write_module, method: str, version: str = "1.2.3", hint: str = "method") -> str:
    return write_module(METHOD_MODULE.format(name=method, version=version), hint)


def failures_of(reg: Registry, module: str) -> list[PluginFailure]:
    """The failures of one plugin (ignoring any unrelated plugin installed in the environment)."""
    return [f for f in reg.failures if f.name == module]


def registry_with(*modules: str) -> Registry:
    return Registry(create_host(local_modules=list(modules)))


# --------------------------------------------------------------------------- local modules


def test_local_module_method_is_registered(write_module):
    mod = method_module(write_module, "mymethod")
    reg = registry_with(mod)
    assert failures_of(reg, mod) == []
    assert "mymethod" in reg.names("method")
    found = reg.method("mymethod")
    assert found.name == "mymethod"
    assert found.plugin.name == mod
    assert found.plugin.source == "local module"
    assert found.plugin.distribution == "local"
    assert found.version == "1.2.3"
    assert reg.registered_by(mod) == {"method": ["mymethod"]}
    # the first-party plugins load beside it
    assert {"wt", "ft"} <= set(reg.names("method"))
    assert reg.method("wt").plugin.source == "entry point"


def test_local_modules_from_search_path_do_not_stay_on_sys_path(tmp_path, monkeypatch):
    monkeypatch.delenv(PLUGINS_ENV, raising=False)
    folder = tmp_path / "suite_dir"
    folder.mkdir()
    name = f"rp_test_searchpath_{next(_counter)}"
    (folder / f"{name}.py").write_text(METHOD_MODULE.format(name="nearby", version="0"))
    try:
        reg = Registry(create_host(local_modules=[name], search_path=folder))
        assert "nearby" in reg.names("method")
        assert str(folder) not in sys.path
    finally:
        sys.modules.pop(name, None)


def test_env_var_loads_modules(write_module, monkeypatch):
    a = method_module(write_module, "envmethod_a")
    b = method_module(write_module, "envmethod_b")
    monkeypatch.setenv(PLUGINS_ENV, f" {a} ,{b}, ")
    reg = Registry(create_host())
    assert failures_of(reg, a) == failures_of(reg, b) == []
    assert {"envmethod_a", "envmethod_b"} <= set(reg.names("method"))
    assert reg.method("envmethod_a").plugin.source == "local module"


def test_same_module_named_twice_loads_once(write_module, monkeypatch):
    mod = method_module(write_module, "oncemethod")
    monkeypatch.setenv(PLUGINS_ENV, mod)
    reg = registry_with(mod, mod)  # env + twice on the command line: no self-conflict
    assert failures_of(reg, mod) == []
    assert reg.names("method").count("oncemethod") == 1


def test_a_broken_module_named_twice_is_one_failure(monkeypatch):
    monkeypatch.setenv(PLUGINS_ENV, "no_such_plugin_module")
    reg = registry_with("no_such_plugin_module")  # as an engine job names it again: env + command line
    assert len(failures_of(reg, "no_such_plugin_module")) == 1


# --------------------------------------------------------------------------- lookups


def test_unknown_method_lists_available_and_suggests():
    reg = Registry(create_host())
    with pytest.raises(UnknownNameError) as info:
        reg.method("wtt")
    msg = str(info.value)
    assert msg.startswith("unknown method 'wtt'; did you mean 'wt'? Available methods: ")
    listed = msg.split("Available methods: ")[1].split(".")[0].split(", ")
    assert {"ft", "random", "wt"} <= set(listed)
    assert listed == sorted(listed)
    assert "robustprune plugins" in msg
    assert isinstance(info.value, LookupError)


def test_unknown_name_without_close_match_has_no_suggestion():
    reg = Registry(create_host())
    with pytest.raises(UnknownNameError) as info:
        reg.model("zzzzzzzz")
    msg = str(info.value)
    assert "did you mean" not in msg
    assert msg.startswith("unknown model 'zzzzzzzz'. Available models: ")
    assert "small_cnn" in msg


# --------------------------------------------------------------------------- conflicts


def test_two_plugins_registering_one_name_make_only_that_name_unavailable(write_module):
    first = method_module(write_module, "twin", hint="first")
    second = write_module(METHOD_MODULE.format(name="twin", version="1").replace(
        "register(Method())", "register(Method())\n    register(Other())").replace(
        "@hookimpl", "class Other(Method):\n    name = 'other_of_second'\n\n@hookimpl"), "second")
    reg = registry_with(first, second)
    with pytest.raises(PluginConflictError) as info:
        reg.method("twin")
    msg = str(info.value)
    assert "method 'twin' is registered by 2 plugins" in msg and "so it is unavailable" in msg
    assert repr(first) in msg and repr(second) in msg and "--disable NAME" in msg
    assert "other_of_second" in reg.names("method") and "wt" in reg.names("method")  # the rest still works
    assert reg.registered_by(first) == {"method": ["twin (clash)"]}
    assert not failures_of(reg, first) and not failures_of(reg, second)
    third = method_module(write_module, "twin", hint="third")
    with pytest.raises(PluginConflictError, match="registered by 3 plugins: .* disable all but one of them"):
        registry_with(first, second, third).method("twin")


def test_one_plugin_registering_a_name_twice_is_its_own_failure(write_module):
    mod = write_module(METHOD_MODULE.format(name="doubled", version="1").replace(
        "register(Method())", "register(Method())\n    register(Method())"), "doubled")
    reg = registry_with(mod)
    (failure,) = failures_of(reg, mod)
    assert "registers method 'doubled' twice" in failure.error and not reg.clashes


def test_local_plugin_conflicting_with_first_party(write_module):
    mod = method_module(write_module, "wt")
    reg = registry_with(mod)
    with pytest.raises(PluginConflictError) as info:
        reg.method("wt")
    msg = str(info.value)
    assert "'wt'" in msg and repr(mod) in msg
    assert "robustprune" in msg  # the first-party distribution
    assert "ft" in reg.names("method")


def test_disabling_the_first_party_plugin_resolves_the_clash(write_module, monkeypatch):
    mod = method_module(write_module, "wt")
    reg = Registry(create_host(local_modules=[mod], disabled=["wt"]))
    assert reg.method("wt").plugin.name == mod and "wt" in reg.host.disabled
    monkeypatch.setenv(DISABLE_ENV, f" {mod} , ft")
    reg = registry_with(mod)
    assert reg.method("wt").plugin.distribution == "robustprune"
    assert "ft" not in reg.names("method") and set(reg.host.disabled) == {mod, "ft"}
    with pytest.raises(UnknownNameError, match=r"unknown method 'ft'.* Disabled \(not loaded\): .*ft"):
        reg.method("ft")  # the user who disabled it learns why the name is missing


def test_group_named_like_a_shift_conflicts(write_module):
    mod = write_module(
        """
        from robustprune import ShiftGroup, hookimpl

        @hookimpl
        def robustprune_register_shifts(register):
            register(ShiftGroup("contrast", ("fog", "snow")))
        """,
        "group",
    )
    reg = registry_with(mod)
    with pytest.raises(PluginConflictError, match="shift 'contrast' is registered by 2 plugins"):
        reg.get("shift", "contrast")
    with pytest.raises(PluginConflictError, match="group 'contrast' is registered by 2 plugins"):
        reg.get("group", "contrast")
    assert "fog" in reg.names("shift")


# --------------------------------------------------------------------------- failures


def test_module_raising_on_import_is_recorded(write_module):
    bad = write_module("x = 1\nraise RuntimeError('kaboom at import')\n", "broken")
    good = method_module(write_module, "survivor")
    reg = registry_with(bad, good)
    assert failures_of(reg, good) == []
    assert len(failures_of(reg, bad)) == 1
    failure = failures_of(reg, bad)[0]
    assert isinstance(failure, PluginFailure)
    assert failure.name == bad
    assert failure.source == "local module"
    assert "RuntimeError: kaboom at import" in failure.error
    assert f"{bad}.py:2" in failure.error  # where it failed
    # everything else still loads
    assert {"wt", "ft", "survivor"} <= set(reg.names("method"))
    assert "small_cnn" in reg.names("model")
    # and lookups mention the failure
    with pytest.raises(UnknownNameError, match=f"plugin '{bad}' .*failed to load: RuntimeError: kaboom"):
        reg.method("nosuch")


def test_missing_module_is_recorded(write_module):
    reg = registry_with("rp_test_no_such_module_xyz")
    (failure,) = failures_of(reg, "rp_test_no_such_module_xyz")
    assert "ModuleNotFoundError" in failure.error


def test_register_hook_raising_is_recorded_and_other_hooks_still_run(write_module):
    mod = write_module(
        """
        from robustprune import ModelSpec, hookimpl

        @hookimpl
        def robustprune_register_methods(register):
            raise ValueError("cannot build my method")

        @hookimpl
        def robustprune_register_models(register):
            register(ModelSpec(name="tinymodel", build=lambda n, s: None))
        """,
        "hookraise",
    )
    reg = registry_with(mod)
    (failure,) = failures_of(reg, mod)
    assert failure.source == "robustprune_register_methods"
    assert "ValueError: cannot build my method" in failure.error
    assert "tinymodel" in reg.names("model")
    assert "wt" in reg.names("method")


def test_wrong_object_type_fails_clearly(write_module):
    mod = write_module(
        """
        from robustprune import ModelSpec, hookimpl

        @hookimpl
        def robustprune_register_methods(register):
            register("wt2")

        @hookimpl
        def robustprune_register_shifts(register):
            register(ModelSpec(name="notashift", build=lambda n, s: None))
        """,
        "wrongtype",
    )
    reg = registry_with(mod)
    errors = {f.source: f.error for f in failures_of(reg, mod)}
    assert set(errors) == {"robustprune_register_methods", "robustprune_register_shifts"}
    assert "TypeError" in errors["robustprune_register_methods"]
    assert f"plugin {mod!r} registered 'wt2'; expected a PruneMethod" in errors["robustprune_register_methods"]
    assert "expected a PixelShift, TensorShift, PublishedShift or ShiftGroup" in errors["robustprune_register_shifts"]
    assert "wt2" not in reg.names("method")
    assert "notashift" not in reg.names("shift")


@pytest.mark.parametrize("bad_name", ["my@method", "my method", ""])
def test_invalid_name_is_rejected(write_module, bad_name):
    mod = method_module(write_module, bad_name, hint="badname")
    reg = registry_with(mod)
    (failure,) = failures_of(reg, mod)
    assert f"invalid method name {bad_name!r}" in failure.error
    assert "no '@'" in failure.error
    assert bad_name not in reg.names("method")


def test_hook_with_wrong_argument_name_is_recorded(write_module):
    mod = write_module(
        """
        from robustprune import hookimpl

        @hookimpl
        def robustprune_register_methods(reg):
            pass
        """,
        "badargs",
    )
    reg = registry_with(mod)
    (failure,) = failures_of(reg, mod)
    assert failure.error == ("hook robustprune_register_methods takes one argument named `register`, not `reg`: "
                             "write `def robustprune_register_methods(register):`")
    assert "wt" in reg.names("method")


def test_a_hook_without_hookimpl_is_warned_about(write_module):
    mod = write_module(
        """
        from robustprune import PruneMethod

        class Method(PruneMethod):
            name = "never_registered"

        def robustprune_register_methods(register):
            register(Method())
        """,
        "unmarked",
    )
    with pytest.warns(PluginWarning, match=rf"plugin '{mod}' defines robustprune_register_methods without "
                                           r"@hookimpl, so it is never called; decorate it"):
        reg = registry_with(mod)
    assert "never_registered" not in reg.names("method") and reg.host.notes


def test_misspelled_hook_is_recorded(write_module):
    mod = write_module(
        """
        from robustprune import PruneMethod, hookimpl

        class Method(PruneMethod):
            name = "typo_method"

        @hookimpl
        def robustprune_register_method(register):
            register(Method())
        """,
        "typo",
    )
    reg = registry_with(mod)
    (failure,) = failures_of(reg, mod)
    assert "unknown hook robustprune_register_method (did you mean robustprune_register_methods?)" in failure.error
    assert "typo_method" not in reg.names("method")


def test_local_module_named_like_an_entry_point_is_loaded(write_module):
    write_module(METHOD_MODULE.format(name="shadowed_method", version="0"), name="digits")
    reg = registry_with("digits")
    assert "shadowed_method" in reg.names("method") or failures_of(reg, "digits")


def test_unversioned_local_module_is_versioned_by_its_source(write_module):
    """Editing a local plugin must change its version, or the store would reuse stale results."""
    body = """
        from robustprune import PruneMethod, hookimpl

        class Method(PruneMethod):
            name = "edited_method"
            def prune(self, network, ratio, context):
                return {}

        @hookimpl
        def robustprune_register_methods(register):
            register(Method())
        """
    mod = write_module(body, "edited")
    first = registry_with(mod).method("edited_method").version
    assert first.startswith("src-")
    import importlib

    path = Path(sys.modules[mod].__file__)
    path.write_text(textwrap.dedent(body) + "\n# edited\n")
    del sys.modules[mod]
    importlib.invalidate_caches()
    assert registry_with(mod).method("edited_method").version != first


def test_method_without_the_host_defaults_is_refused_with_the_fix(write_module):
    mod = write_module(
        """
        from robustprune import hookimpl

        class Bare:
            name = "bare"
            structured = False
            data_informed = False
            def prune(self, network, ratio, context):
                return {}

        @hookimpl
        def robustprune_register_methods(register):
            register(Bare())
        """,
        "bare",
    )
    reg = registry_with(mod)
    (failure,) = failures_of(reg, mod)
    assert "lacks data_batch_size, params, data_size" in failure.error
    assert "subclass robustprune.PruneMethod" in failure.error
    assert "bare" not in reg.names("method")


def test_unpicklable_pixel_shift_is_refused_at_registration(write_module):
    mod = write_module(
        """
        from robustprune import PixelShift, hookimpl

        @hookimpl
        def robustprune_register_shifts(register):
            register(PixelShift("lambda_shift", lambda image, param, seed: image))
        """,
        "lambdashift",
    )
    reg = registry_with(mod)
    (failure,) = failures_of(reg, mod)
    assert "shift 'lambda_shift' has an apply that cannot be pickled" in failure.error
    assert "module-level function" in failure.error
