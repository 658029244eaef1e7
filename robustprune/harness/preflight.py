"""Everything about the environment a run can check before it starts working, checked then.

A broken environment must not look like a failed gate: each problem stops
the session once, with one message that names the input and the fix, and
an exit status of its own (:class:`~robustprune.harness.exitcodes.ExitStatus`):
``CONFIGURATION_ERROR`` for what the user wrote (an option value, a plugin
name), ``ENVIRONMENT_ERROR`` for what the machine lacks (a writable store or
folder, a device). The options are checked at ``pytest_configure``; the store when the first
suite is collected, so that pytest sessions without suites never touch it.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import re
import shutil
import warnings
from pathlib import Path
from typing import NoReturn

import pytest

from ..core.datasource import STORE_ENV, can_write
from ..plugin.host import ENTRY_POINT_GROUP, local_modules_from_env
from .exitcodes import ExitStatus
from .options import device_option, store_root, threads_option

__all__ = ["DISK_MARGIN", "SELECT_KEYS", "check_options", "configuration_error", "environment_error",
           "parse_selectors", "store_and_plugin_problem", "warn_if_disk_short"]

DISK_MARGIN = 1.5  # the estimate leaves out measures, logs and temporary copies: ask for half as much again
_DEVICE = re.compile(r"^(cpu|cuda(:\d+)?|mps)$")


def configuration_error(message: str) -> NoReturn:
    """Stop the session: what the user wrote is wrong (exit status 2)."""
    pytest.exit(f"robustprune: {message}", returncode=int(ExitStatus.CONFIGURATION_ERROR))


def environment_error(message: str) -> NoReturn:
    """Stop the session: the machine cannot do the work (exit status 6)."""
    pytest.exit(f"robustprune: {message}", returncode=int(ExitStatus.ENVIRONMENT_ERROR))


def check_options(config: pytest.Config) -> None:
    """Check the robustprune options given on the command line (at ``pytest_configure``, in any session: only
    what was asked for is checked, so a project's unrelated tests are left alone)."""
    _check_counts(config)
    if config.getoption("rp_device") or os.environ.get("ROBUSTPRUNE_DEVICE"):
        _check_device(device_option(config))
    report = config.getoption("rp_report")
    if report:
        _check_folder(Path(report).expanduser(), "--report")
    summary = config.getoption("rp_summary")
    if summary:
        path = Path(summary).expanduser()
        if path.is_dir():
            environment_error(f"--summary {path} is a folder; name a file to append the Markdown report to")
        _check_folder(path.parent, "--summary (its folder)")
    _check_plugins(config, config.getoption("rp_plugin"), "--plugin")
    _check_disabled(config, config.getoption("rp_disable") or [])
    parse_selectors(config.getoption("rp_select") or [])


def store_and_plugin_problem(config: pytest.Config) -> tuple[ExitStatus, str] | None:
    """What is wrong with the store or the plugin modules named in ``$ROBUSTPRUNE_PLUGINS`` (checked when the
    first suite is collected: a session without suites never touches the store), with its exit status."""
    try:
        _check_store(store_root(config))
        _check_plugins(config, local_modules_from_env(), "$ROBUSTPRUNE_PLUGINS")
    except pytest.exit.Exception as stop:
        return ExitStatus(stop.returncode or ExitStatus.ENVIRONMENT_ERROR), str(stop.msg)
    return None


SELECT_KEYS = ("method", "model", "dataset", "shift")


def parse_selectors(texts: list[str]) -> dict[str, set[str]]:
    """``["method=wt", "shift=contrast@3"]`` -> ``{"method": {"wt"}, "shift": {"contrast@3"}}``; a bad selector
    is a configuration error."""
    wanted: dict[str, set[str]] = {}
    for text in texts:
        key, sep, value = text.partition("=")
        if not sep or key.strip() not in SELECT_KEYS or not value.strip():
            configuration_error(f"--select {text!r}: write KEY=VALUE with KEY one of {', '.join(SELECT_KEYS)}, "
                                "e.g. --select method=wt --select shift=contrast@3")
        wanted.setdefault(key.strip(), set()).add(value.strip())
    return wanted


def _check_counts(config: pytest.Config) -> None:
    workers = config.getoption("rp_workers")
    if workers is not None and workers < 1:
        configuration_error(f"--workers {workers}: give at least 1 worker process (the default is every core)")
    threads = config.getoption("rp_threads")
    if threads is not None and threads < 1:
        configuration_error(f"--threads {threads}: give at least 1 torch thread per process (the default is 1)")
    try:
        threads_option(config)
    except ValueError:
        configuration_error(f"$ROBUSTPRUNE_THREADS={os.environ.get('ROBUSTPRUNE_THREADS')!r} is not a whole number")


def _check_device(device: str) -> None:
    if not _DEVICE.match(device):
        configuration_error(f"device {device!r} is not one robustprune runs on: use cpu, cuda, cuda:N or mps "
                            "(--device / --rp-device, or $ROBUSTPRUNE_DEVICE)")
    if device == "cpu":
        return
    import torch  # only when an accelerator is asked for

    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            environment_error(
                f"device {device!r} was asked for, but torch sees no CUDA device (torch {torch.__version__}); run on "
                "the CPU with --device cpu, or install a CUDA build of torch")
        index = int(device.split(":")[1]) if ":" in device else 0
        if index >= torch.cuda.device_count():
            environment_error(f"device {device!r} was asked for, but this machine has {torch.cuda.device_count()} "
                              f"CUDA device(s): cuda:0 to cuda:{torch.cuda.device_count() - 1}")
    elif device == "mps" and not torch.backends.mps.is_available():
        environment_error("device 'mps' was asked for, but torch sees no Apple GPU here; run with --device cpu")


def _check_store(root: Path) -> None:
    where = f"--store / ${STORE_ENV}"
    if root.exists() and not root.is_dir():
        environment_error(f"the store {root} is a file, not a folder; point {where} at a folder (it is created "
                          "if missing)")
    if not root.exists():
        # not created here: a run stopped by a later configuration error leaves no empty store behind
        ancestor = _nearest_existing(root)
        if not ancestor.is_dir():
            environment_error(f"the store {root} cannot be created: {ancestor} is a file, not a folder; point "
                              f"{where} at a folder you can write")
        if not can_write(ancestor):
            environment_error(f"the store {root} cannot be created: {ancestor} is not writable; point {where} at "
                              "a folder you can write")
        root = ancestor
    elif not can_write(root):
        # allowed: a run that finds everything there reads it; anything to compute stops it (see the plugin)
        warnings.warn(pytest.PytestWarning(
            f"the store {root} is read-only: results are read from it, and the run stops if anything must be "
            "computed"), stacklevel=2)


def warn_if_disk_short(store_root: Path, planned: int) -> None:
    """Warn (once, before any work) when the disk of the store has less room than the ``planned`` bytes the run
    is about to store (:meth:`~robustprune.engine.engine.Engine.planned_bytes`), with some margin."""
    free = shutil.disk_usage(_nearest_existing(store_root)).free
    if free < planned * DISK_MARGIN:
        warnings.warn(pytest.PytestWarning(
            f"the run is about to store about {_mib(planned)} in {store_root}, but only {_mib(free)} are free on "
            f"its disk: it may stop with a full disk (what is finished is kept); free some space, remove old "
            f"entries (robustprune store gc), or point --store / ${STORE_ENV} at a larger disk"), stacklevel=2)


def _mib(count: int) -> str:
    return f"{count / (1 << 20):.0f} MiB"


def _nearest_existing(path: Path) -> Path:
    """The path itself or its closest ancestor that exists."""
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _check_folder(folder: Path, option: str) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        environment_error(f"{option} {folder} cannot be created: {exc.strerror or exc}; choose a folder you can "
                          "write")
    if not can_write(folder):
        environment_error(f"{option} {folder} is not writable; choose a folder you can write")


def _check_plugins(config: pytest.Config, named: list[str], source: str) -> None:
    """Every local plugin module named must be importable: next to a suite named on the command line, in the
    working directory, or on ``sys.path``."""
    if not named:
        return
    for name in dict.fromkeys(named):
        if not _local_module_exists(config, name):
            configuration_error(
                f"plugin module {name!r} (named by {source}) was not found next to the suites, in "
                f"{Path.cwd()} or on sys.path; fix the name, or install the package that provides it")


def _check_disabled(config: pytest.Config, names: list[str]) -> None:
    """A plugin named to be disabled must exist: a typo would leave the plugin on without a word."""
    installed = sorted({ep.name for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)})
    for name in names:
        if name not in installed and not _local_module_exists(config, name):
            configuration_error(f"--disable {name}: no plugin of that name; installed plugins: "
                                f"{', '.join(installed)} (`robustprune plugins` lists them)")


def _local_module_exists(config: pytest.Config, name: str) -> bool:
    folders = {Path.cwd()}
    for arg in config.args:
        path = Path(str(arg).split("::")[0])
        folders.add(path if path.is_dir() else path.parent)
    top = name.split(".")[0]
    return any((folder / f"{top}.py").exists() or (folder / top).is_dir() for folder in folders) \
        or _find_spec(name) is not None


def _find_spec(name: str) -> object | None:
    try:
        return importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
