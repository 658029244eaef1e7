"""What a plugin author meets: name clashes that fail only what uses the name, disabling a plugin, keys that
follow a plugin's source, and contract errors that say what to write.

The toy suite of conftest.py runs in-process, with one more local plugin
module per test (a method of its own, or one that clashes with a built-in).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from robustprune.harness.exitcodes import ExitStatus
from robustprune.plugin.host import source_hash

NOMINAL_CHECK = """
def test_nominal(case):
    assert case.prune_potential() >= 0.0
"""

OWN_METHOD = '''
"""A method of its own, versioned: the author forgets to bump the version after editing."""

from robustprune import PruneMethod, hookimpl
from robustprune.plugin.masks import global_top_masks, prunable_weights

__version__ = "1.0"


class Smallest(PruneMethod):
    name = "smallest"

    def prune(self, network, ratio, context):
        scores = {n: w.detach().abs() for n, w in prunable_weights(network).items()}
        return global_top_masks(scores, ratio, context.masks)


@hookimpl
def robustprune_register_methods(register):
    register(Smallest())
'''

CLASHING = '''
"""A third-party method that takes the built-in's name."""

from robustprune import PruneMethod, hookimpl


class MyWT(PruneMethod):
    name = "wt"

    def prune(self, network, ratio, context):
        raise RuntimeError("never reached while the name clashes")


@hookimpl
def robustprune_register_methods(register):
    register(MyWT())
'''


def _work(pytester: pytest.Pytester) -> list[str]:
    """``kind what`` of every line of the work log (keys and times left out)."""
    return [" ".join(line.split()[2:3] + line.split()[4:]) for line in
            (pytester.path / "store" / "work.log").read_text().splitlines()]


def test_editing_a_plugin_recomputes_its_results_and_nothing_else(run_suite, pytester, monkeypatch):
    from robustprune.plugin import host

    pytester.makepyfile(my_method=OWN_METHOD)
    plugins = ("toy_plugin", "my_method")
    assert run_suite(NOMINAL_CHECK, methods=("smallest", "wt"), plugins=plugins).ret == ExitStatus.OK
    before = _work(pytester)
    assert run_suite(NOMINAL_CHECK, methods=("smallest", "wt"), plugins=plugins).ret == ExitStatus.OK
    assert _work(pytester) == before  # unchanged source: everything read back

    # a comment is enough: same version, other source
    (pytester.path / "my_method.py").write_text(OWN_METHOD + "\n# tuned the scores\n")
    monkeypatch.setattr(host, "_HASHES", {})  # a new run (this one is in-process) hashes the sources again
    assert run_suite(NOMINAL_CHECK, methods=("smallest", "wt"), plugins=plugins).ret == ExitStatus.OK
    new = _work(pytester)[len(before):]
    assert new and all(re.match(r"(network|eval|costs) smallest-toynet-toy ", line) for line in new), "\n".join(new)
    assert len([line for line in new if line.startswith("network")]) == 2  # its two ratios; no parent, no wt


def test_a_clash_fails_only_the_cases_that_use_the_name(run_suite, pytester):
    pytester.makepyfile(my_wt=CLASHING)
    result = run_suite(NOMINAL_CHECK, "-rA", methods=("wt", "erase"), plugins=("toy_plugin", "my_wt"))
    assert result.ret == ExitStatus.CHECKS_FAILED
    result.stdout.fnmatch_lines(["*PASSED suite_toy.py::test_nominal[[]erase-toynet-toy[]]*",
                                 "*ERROR suite_toy.py::test_nominal[[]wt-toynet-toy[]]*"])
    output = result.stdout.str()
    assert ("method 'wt' is registered by 2 plugins: 'wt' (robustprune 0.1.0) and 'my_wt' (local" in output
            and "disable one of them (robustprune run --disable NAME, pytest --rp-disable NAME" in output)


def test_disabling_a_first_party_plugin_lets_a_third_party_one_take_its_name(run_suite, pytester):
    pytester.makepyfile(my_wt=CLASHING)
    result = run_suite(NOMINAL_CHECK, "--rp-disable=wt", methods=("wt",), plugins=("toy_plugin", "my_wt"))
    # the suite's wt is now my_wt, whose prune raises: its checks fail with its own message, not a clash
    assert result.ret == ExitStatus.CHECKS_FAILED
    assert "never reached while the name clashes" in result.stdout.str()
    assert "registered by 2 plugins" not in result.stdout.str()


def test_disabling_an_unknown_plugin_is_a_configuration_error(pytester):
    pytester.makepyfile(suite_empty="")
    result = pytester.runpytest_subprocess("suite_empty.py", "--rp-disable=nosuch_plugin", "-p", "no:cacheprovider")
    assert result.ret == ExitStatus.CONFIGURATION_ERROR
    result.stderr.fnmatch_lines(["*--disable nosuch_plugin: no plugin of that name; installed plugins: *corruptions*"])


def test_the_plugins_command_marks_clashes_and_disabled_plugins(pytester, monkeypatch, capsys):
    from robustprune.cli import main

    pytester.makepyfile(my_wt=CLASHING)
    monkeypatch.chdir(pytester.path)
    assert main(["plugins", "--plugin", "my_wt", "--disable", "random"]) == ExitStatus.CONFIGURATION_ERROR
    out = capsys.readouterr().out
    assert re.search(r"^wt\s+robustprune 0\.1\.0\s+entry point\s+methods: wt \(clash\)", out, re.M), out
    assert re.search(r"^my_wt\s+local \S+\s+local module\s+methods: wt \(clash\)", out, re.M), out
    assert re.search(r"^random\s+disabled\s+\(not loaded\)", out, re.M), out
    assert "names registered by more than one plugin" in out and "ft" in out  # the rest is listed


def test_the_source_hash_covers_a_package_and_follows_its_files(tmp_path, monkeypatch):
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "plugin.py").write_text("X = 1\n")
    (package / "helpers.py").write_text("def helper():\n    return 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import importlib

    from robustprune.plugin import host

    module = importlib.import_module("pkg.plugin")
    first = source_hash(module)
    assert source_hash(module) == first  # cached: hashed once per run
    (package / "helpers.py").write_text("def helper():\n    return 2\n")
    monkeypatch.setattr(host, "_HASHES", {})  # a new run
    assert source_hash(module) != first  # a helper next to the plugin counts


def test_pruned_networks_are_keyed_by_the_pruning_library_they_were_made_with(tmp_path, monkeypatch):
    """An edit of the channel analysis or the allocation (robustprune.plugin, not the method's own plugin)
    changes what a method prunes: it must change the pruned networks' store keys."""
    import hashlib

    from robustprune.plugin import host

    monkeypatch.setattr(host, "_LIBRARY", {})
    first = host.prune_library_hash()
    assert first == host.prune_library_hash() and len(first) == 16
    # the same hash from the files, computed here
    digest = hashlib.sha256()
    for name in ("masks", "channels", "allocation", "layerwise", "sensitivity"):
        digest.update(name.encode() + b"\0" + (Path(host.__file__).parent / f"{name}.py").read_bytes())
    assert first == digest.hexdigest()[:16]
    # an edited copy of the library hashes differently
    copy = tmp_path / "plugin"
    copy.mkdir()
    for name in host.PRUNE_LIBRARY:
        (copy / f"{name}.py").write_bytes((Path(host.__file__).parent / f"{name}.py").read_bytes())
    (copy / "layerwise.py").write_text((copy / "layerwise.py").read_text() + "\n# edited\n")
    (copy / "host.py").write_text("")
    monkeypatch.setattr(host, "__file__", str(copy / "host.py"))
    monkeypatch.setattr(host, "_LIBRARY", {})
    assert host.prune_library_hash() != first
    # and the engine puts it in every pruned network's key
    from robustprune.engine import engine

    assert "prune_library_hash()" in Path(engine.__file__).read_text().split('"kind": "pruned"')[1].split("}")[0]


@pytest.mark.slow
def test_a_new_plugin_package_installs_and_its_generated_tests_pass(tmp_path):
    import subprocess
    import sys

    from suite_runner import run

    from robustprune.cli import main

    assert main(["new", "plugin", "demo", "--dir", str(tmp_path)]) == ExitStatus.OK
    package = tmp_path / "robustprune-demo"
    # the dependency line names where this environment's robustprune came from, so it resolves again
    from urllib.parse import urlparse

    import tomllib
    from packaging.requirements import Requirement

    from robustprune.scaffold import robustprune_requirement

    dependencies = tomllib.loads((package / "pyproject.toml").read_text())["project"]["dependencies"]
    expected = robustprune_requirement()
    assert dependencies == ([expected] if expected else [])
    if expected:
        requirement = Requirement(expected)
        assert requirement.name == "robustprune" and requirement.url
        if requirement.url.startswith("file://"):
            assert (Path(urlparse(requirement.url).path) / "pyproject.toml").is_file()
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--target", str(site), str(package)], check=True, capture_output=True, text=True)
    env = {"PYTHONPATH": str(site)}
    tests = run(["-m", "pytest", "-q", "-p", "no:cacheprovider"], cwd=package, env=env)
    assert tests.returncode == 0 and "3 passed" in tests.stdout, tests.stdout + tests.stderr
    listing = run(["-m", "robustprune.cli", "plugins"], cwd=tmp_path, env=env)
    assert re.search(r"^demo\s+robustprune-demo 0\.1\.0\s+entry point\s+methods: demo_magnitude; shifts: "
                     r"demo_darken", listing.stdout, re.M), listing.stdout


def test_a_new_suite_collects_and_names_are_checked(pytester, capsys):
    from robustprune.cli import main

    assert main(["new", "suite", "my_gate", "--dir", str(pytester.path)]) == ExitStatus.OK
    result = pytester.runpytest_subprocess("my_gate.py", "--collect-only", "-q", f"--rp-store={pytester.path / 's'}")
    assert result.ret == ExitStatus.OK
    result.stdout.fnmatch_lines(["4 tests collected*"])
    assert not (pytester.path / "s").exists()  # --collect-only computes nothing
    assert main(["new", "suite", "my_gate", "--dir", str(pytester.path)]) == ExitStatus.CONFIGURATION_ERROR
    assert main(["new", "plugin", "Bad-Name", "--dir", str(pytester.path)]) == ExitStatus.CONFIGURATION_ERROR
    assert "'Bad-Name' is not a usable name" in capsys.readouterr().err
    assert main(["new", "plugin", "random", "--dir", str(pytester.path)]) == ExitStatus.CONFIGURATION_ERROR
    assert "'random' is the name of an installed robustprune plugin" in capsys.readouterr().err
    assert main(["new", "plugin", "numpy", "--dir", str(pytester.path)]) == ExitStatus.CONFIGURATION_ERROR
    assert "'numpy' is the name of an importable module" in capsys.readouterr().err
    assert main(["new", "suite", "elsewhere", "--dir", str(pytester.path / "a" / "b")]) == ExitStatus.OK


BROKEN_SHIFTS = '''
"""Two broken shifts: a pixel shift returning floats, a noise shift that raises."""

import numpy as np

from robustprune import PixelShift, ShiftParam, TensorShift, hookimpl


def to_float(image, amount, seed):
    return image.astype(np.float32) * amount


def crash(batch, eps, seeds):
    raise RuntimeError("noise generator exploded")


@hookimpl
def robustprune_register_shifts(register):
    register(PixelShift("as_float", to_float, ShiftParam("amount", float, 0.0, 1.0)))
    register(TensorShift("exploding", crash))
'''

SHIFT_CHECKS = """
def test_nominal(case):
    assert case.prune_potential() >= 0.0


def test_each_shift(shift_case):
    assert shift_case.prune_potential >= 0.0
"""


def test_broken_shifts_fail_only_their_checks_and_each_is_named_with_its_plugin(run_suite, pytester, capsys):
    pytester.makepyfile(broken_shifts=BROKEN_SHIFTS)
    result = run_suite(SHIFT_CHECKS, "-rA", shifts=("darken@0.5", "as_float@0.5", "exploding@0.1"),
                       plugins=("toy_plugin", "broken_shifts"))
    assert result.ret == ExitStatus.CHECKS_FAILED
    result.stdout.fnmatch_lines_random([
        "*PASSED suite_toy.py::test_nominal[[]wt-toynet-toy[]]*",
        "*PASSED suite_toy.py::test_each_shift[[]wt-toynet-toy-darken@0.5[]]*",
        "*ERROR suite_toy.py::test_each_shift[[]wt-toynet-toy-as_float@0.5[]]*",
        "*ERROR suite_toy.py::test_each_shift[[]wt-toynet-toy-exploding@0.1[]]*",
    ])
    output = result.stdout.str()
    # every bad shift is reported, each with the plugin that registered it; the method is not blamed
    assert ("error: shift as_float@0.5 (registered by plugin 'broken_shifts', local src-" in output
            and "failed on toy: returned images of shape (8, 8, 3) and dtype float32; expected (8, 8, 3) uint8"
            in output)
    assert ("error: shift exploding@0.1 (registered by plugin 'broken_shifts', local src-" in output
            and "failed on toy: RuntimeError: noise generator exploded" in output)
    assert "error in wt" not in output
    table = output[output.index("toynet on toy"):]
    assert re.search(r"^wt\s.*\berror\b.*\berror\b", table, re.M)  # the two broken columns, not the row

    # the failures are stored: a rerun neither tries the broken shifts again nor recomputes anything
    log = (pytester.path / "store" / "work.log").read_text()
    assert log.count(" shiftfail ") == 2
    again = run_suite(SHIFT_CHECKS, "-rA", shifts=("darken@0.5", "as_float@0.5", "exploding@0.1"),
                      plugins=("toy_plugin", "broken_shifts"))
    assert again.ret == ExitStatus.CHECKS_FAILED and "error: shift exploding@0.1" in again.stdout.str()
    assert (pytester.path / "store" / "work.log").read_text() == log
    # and the store counts as complete for the suite: gc keeps its entries, the failures included
    from robustprune.cli import main

    capsys.readouterr()
    assert main(["store", "gc", "--store", str(pytester.path / "store"), "--dry-run", "suite_toy.py"]) == 0
    assert "would remove 0 entries" in capsys.readouterr().out


CLASHING_SHIFT = '''
"""Registers a shift under the toy plugin's name."""

import numpy as np

from robustprune import PixelShift, ShiftParam, hookimpl


def brighten(image, strength, seed):
    return np.clip(image.astype(np.float32) * (1 + strength), 0, 255).astype(np.uint8)


@hookimpl
def robustprune_register_shifts(register):
    register(PixelShift("darken", brighten, ShiftParam("strength", float, 0.0, 1.0)))
'''


def test_a_clashing_shift_fails_only_the_checks_that_need_it_and_the_gate_is_not_judged(run_suite, pytester):
    pytester.makepyfile(clashing_shift=CLASHING_SHIFT)
    result = run_suite(SHIFT_CHECKS, "-rA", shifts=("darken@0.5",), plugins=("toy_plugin", "clashing_shift"),
                       extra="gate=DeployGate(shifts=['nominal', 'darken@0.5'], max_accuracy_loss=0.5),")
    assert result.ret == ExitStatus.CHECKS_FAILED
    result.stdout.fnmatch_lines_random([
        "*PASSED suite_toy.py::test_nominal[[]wt-toynet-toy[]]*",
        "*ERROR suite_toy.py::test_each_shift[[]wt-toynet-toy-darken@0.5[]]*",
    ])
    output = result.stdout.str()
    assert "shift 'darken' is registered by 2 plugins: 'toy_plugin' (local" in output
    assert "not judged: shift 'darken' is registered by 2 plugins" in output  # the gate cannot pass


@pytest.mark.slow
def test_a_broken_shift_in_worker_processes_fails_only_its_checks(pytester, torch_warmed_up):
    from conftest import TOY_PLUGIN, TOY_SUITE_HEAD

    pytester.makepyfile(toy_plugin=TOY_PLUGIN, broken_shifts=BROKEN_SHIFTS, suite_toy=TOY_SUITE_HEAD.format(
        methods=["wt", "erase"], shifts=["darken@0.5", "as_float@0.5"], plugins=["toy_plugin", "broken_shifts"],
        extra="") + SHIFT_CHECKS)
    result = pytester.runpytest_subprocess("suite_toy.py", f"--rp-store={pytester.path / 'store'}",
                                           "--rp-workers=2", "-p", "no:cacheprovider", "-rA")
    assert result.ret == ExitStatus.CHECKS_FAILED
    result.stdout.fnmatch_lines_random([
        "*2 worker processes*",
        "*PASSED suite_toy.py::test_each_shift[[]erase-toynet-toy-darken@0.5[]]*",
        "*ERROR suite_toy.py::test_each_shift[[]erase-toynet-toy-as_float@0.5[]]*",
        "*ERROR suite_toy.py::test_each_shift[[]wt-toynet-toy-as_float@0.5[]]*",
        "error: shift as_float@0.5 (registered by plugin 'broken_shifts'*",
    ])
