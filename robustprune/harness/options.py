"""robustprune's run options: one table for pytest's ``--rp-NAME`` and ``robustprune run --NAME``.

Each option is declared once, with its help text; :func:`add_options`
registers them with pytest and :func:`run_help` writes the CLI's help from
the same table, so the two never drift apart. pytest itself is imported only
where it is used, so that ``robustprune --version`` or ``robustprune report``
do not pay for it. Defaults that come from the
environment (``$ROBUSTPRUNE_DEVICE``, ``$ROBUSTPRUNE_THREADS``,
``$ROBUSTPRUNE_DATA``) are read here too.
"""

from __future__ import annotations

import os
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..core.datasource import default_store_root

if TYPE_CHECKING:  # pragma: no cover
    import pytest

__all__ = ["DATA_ENV", "DEVICE_ENV", "OPTIONS", "THREADS_ENV", "Option", "add_options", "data_options",
           "device_option", "run_help", "store_root", "threads_option"]

DEVICE_ENV = "ROBUSTPRUNE_DEVICE"
DATA_ENV = "ROBUSTPRUNE_DATA"
THREADS_ENV = "ROBUSTPRUNE_THREADS"


@dataclass(frozen=True)
class Option:
    """One run option: ``--rp-NAME`` under pytest, ``--NAME`` under ``robustprune run``."""

    name: str
    help: str
    metavar: str | None = None  # None: a flag without a value
    type: type = str
    choices: tuple[str, ...] | None = None
    default: Any = None
    repeatable: bool = False  # may be given several times: a list (default: empty)

    @property
    def pytest_flag(self) -> str:
        return f"--rp-{self.name}"

    @property
    def cli_flag(self) -> str:
        return f"--{self.name}"

    @property
    def dest(self) -> str:
        """The name ``config.getoption`` reads it by."""
        return "rp_" + self.name.replace("-", "_")


OPTIONS: tuple[Option, ...] = (
    Option("store", "artifact store (default: $ROBUSTPRUNE_STORE or .robustprune/ in the working directory)", "DIR"),
    Option("device", f"torch device for training and evaluation: cpu (default, or ${DEVICE_ENV}), cuda, cuda:1",
           "DEVICE"),
    Option("workers", "worker processes for independent work (parents, each repeat's cascade, shifted sets; "
                      "default: every core); 1 computes everything in this process", "N", int),
    Option("threads", f"torch threads per process (default 1, or ${THREADS_ENV}): results depend on it, so it is "
                      "part of every store key; with 1 they are the same serially, with -n N and on Ray", "N", int),
    Option("report", "also write the report as JSON and Markdown into DIR, and its figures into DIR/figures when "
                     "matplotlib is installed (pip install 'robustprune[plots]')", "DIR"),
    Option("plugin", "load a local plugin module (repeatable; also $ROBUSTPRUNE_PLUGINS, comma-separated)", "MODULE",
           repeatable=True),
    Option("select", "keep only the checks of matching cases: method=NAME, model=NAME, dataset=NAME or shift=LABEL "
                     "(a shift, or a shift entry such as corruptions@3); repeatable: values of one key add up, "
                     "different keys must all match; unlike -k, names are matched whole", "KEY=VALUE",
           repeatable=True),
    Option("disable", "do not load this plugin: an entry point's name (`robustprune plugins` lists them, the "
                      "first-party ones included) or a local module's (repeatable; also "
                      "$ROBUSTPRUNE_DISABLE_PLUGINS, comma-separated)", "NAME", repeatable=True),
    Option("data", f"root folder of datasets read from disk (default: ${DATA_ENV})", "DIR"),
    Option("download", "let dataset plugins download missing data into the data root (CIFAR via torchvision)",
           default=False),
    Option("executor", "where parents and cascades run: process (default: --workers processes on this machine), "
                       "local (this process, each case when its first check runs) or ray", "NAME",
           choices=("process", "local", "ray"), default="process"),
    Option("ray-address", "Ray cluster to use with the ray executor (default: $RAY_ADDRESS, else a local instance)",
           "ADDRESS"),
    Option("summary", "also append the report as Markdown to FILE: in GitHub Actions \"$GITHUB_STEP_SUMMARY\" "
                      "puts it on the run's page (figures, when --report writes them, linked to the artifacts)",
           "FILE"),
    Option("width", "fit the terminal report into N columns: a main table, a details table, gate outcomes as lines "
                    "(default: the terminal's width, or 100 when output is not a terminal; below about 50 a wide "
                    "table may run over); 0 prints the full table with every spread, as the Markdown report has "
                    "it", "N", int),
    Option("no-latency", "skip timing the speed-up of structured methods' networks (minutes for large networks on a "
                         "CPU): parameters and MACs are still counted, the speed-up cells read \"not timed\"; the "
                         "same as Suite(latency=False) for this run", default=False),
    Option("export", "write the network of every case that passed (its deploy gate and every check) into "
                     "DIR/<case id>/ with a JSON sidecar; DIR is checked for writability before anything runs "
                     "(see docs/ci-recipe.md)", "DIR"),
)


def add_options(parser: pytest.Parser) -> None:
    """Register every option with pytest, as ``--rp-NAME``."""
    group = parser.getgroup("robustprune", "robustprune: robustness gates for pruned networks")
    for option in OPTIONS:
        if option.metavar is None:
            group.addoption(option.pytest_flag, action="store_true", default=option.default, help=option.help)
        elif option.repeatable:
            group.addoption(option.pytest_flag, metavar=option.metavar, action="append", default=[],
                            help=option.help)
        elif option.choices:  # pytest shows the choices themselves: --rp-executor={local,ray}
            group.addoption(option.pytest_flag, choices=option.choices, default=option.default, help=option.help)
        else:
            group.addoption(option.pytest_flag, metavar=option.metavar, type=option.type, default=option.default,
                            help=option.help)


def run_help(width: int = 88) -> str:
    """The options part of ``robustprune run --help``, from the same table as pytest's."""
    lines = []
    for option in OPTIONS:
        flag = f"  {option.cli_flag}" + (f" {option.metavar}" if option.metavar else "")
        body = textwrap.wrap(option.help, width - 20)
        first, rest = (body[0], body[1:]) if body else ("", [])
        lines.append(f"{flag:<19}{first}" if len(flag) < 19 else f"{flag}\n{'':19}{first}")
        lines += [f"{'':19}{line}" for line in rest]
    return "\n".join(lines)


def device_option(config: pytest.Config) -> str:
    """``--rp-device``, else ``$ROBUSTPRUNE_DEVICE``, else ``cpu``."""
    return str(config.getoption("rp_device") or os.environ.get(DEVICE_ENV) or "cpu")


def threads_option(config: pytest.Config) -> int:
    """``--rp-threads``, else ``$ROBUSTPRUNE_THREADS``, else 1."""
    return int(config.getoption("rp_threads") or int(os.environ.get(THREADS_ENV) or 1))


def data_options(config: pytest.Config | None) -> tuple[Path | None, bool]:
    """The data root (``--rp-data``, else ``$ROBUSTPRUNE_DATA``) and the download switch of a session
    (without a session: the environment's root, no download)."""
    root = (config.getoption("rp_data") if config is not None else None) or os.environ.get(DATA_ENV)
    download = bool(config.getoption("rp_download")) if config is not None else False
    return (Path(root).expanduser().resolve() if root else None), download


def store_root(config: pytest.Config) -> Path:
    """The store folder of this session: ``--rp-store``, ``$ROBUSTPRUNE_STORE`` or ``.robustprune/``, ``~``
    expanded (a shell leaves ``--store=~/x`` as it is)."""
    option = config.getoption("rp_store")
    return Path(option).expanduser().resolve() if option else default_store_root()
