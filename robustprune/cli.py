"""The ``robustprune`` command: ``run`` suites through pytest, list ``plugins``, re-render a ``report``.

``robustprune run [SUITE ...] [options] [pytest options]`` is ``pytest SUITE ...``
with robustprune's options spelled short; with no suite it runs the built-in
quickstart. Exit statuses (the same for every command, see
:class:`robustprune.harness.exitcodes.ExitStatus`): 0 every check passed, 1 a
check or gate failed, 2 configuration error, 3 internal error, 5 no check
collected, 6 environment error, 130 interrupted.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from .harness.exitcodes import ExitStatus
from .harness.options import OPTIONS
from .harness.options import run_help as options_help
from .version import __version__

RUN_USAGE = """\
usage: robustprune run [SUITE ...] [options] [pytest options]

Run evaluation suites (pytest modules, or folders of them) and gate on their
checks. With no SUITE, runs the built-in quickstart suite (small CNN on
digits, WT, SiPP, FT and PFP).
"""

RUN_EPILOG = """\
Any other option goes to pytest: -k EXPR, -x, -q, --junitxml=FILE, -n 2, ...
Each option is also a pytest option: --store DIR is pytest's --rp-store DIR.
Exit status: 0 every check passed, 1 a check or gate failed, 2 configuration error
(command line, suite, plugin names), 3 internal error, 5 no check collected,
6 environment error (store, folders, device, disk), 130 interrupted.
"""


def run_help() -> str:
    """``robustprune run --help``: the options come from the same table as pytest's ``--rp-*`` options."""
    return f"{RUN_USAGE}\noptions:\n{options_help()}\n\n{RUN_EPILOG}"


# robustprune option -> pytest option
_VALUE_OPTIONS = {option.cli_flag: option.pytest_flag for option in OPTIONS if option.metavar is not None}
_FLAG_OPTIONS = {option.cli_flag: option.pytest_flag for option in OPTIONS if option.metavar is None}


PYTEST_PLUGIN = "robustprune.harness.plugin"
"""The pytest plugin's module (the ``pytest11`` entry point), for ``-p`` when plugin autoloading is off."""


def quickstart_path() -> Path:
    """The built-in quickstart suite, installed with the package."""
    return Path(__file__).parent / "suites" / "quickstart.py"


def _is_suite_arg(arg: str, previous: str | None) -> bool:
    """A suite is a ``.py`` path (optionally ``::test``) or a directory, wherever it stands.

    Values of pytest options (``-k wt``, ``--junitxml out.xml``) are neither,
    except a directory after an option that takes one (``--rootdir DIR``).
    """
    if arg.startswith("-"):
        return False
    path = arg.split("::")[0]
    if path.endswith(".py"):
        return True
    return Path(path).is_dir() and previous not in _PYTEST_VALUE_OPTIONS


# pytest options whose value is the next argument (a directory there is not a suite)
_PYTEST_VALUE_OPTIONS = {
    "-k", "-m", "-p", "-c", "-o", "-n", "-W", "-r", "--rootdir", "--basetemp", "--confcutdir", "--ignore",
    "--ignore-glob", "--deselect", "--junitxml", "--junit-xml", "--override-ini", "--dist", "--log-file",
}


def pytest_args_for_run(argv: list[str]) -> list[str]:
    """Translate ``run`` arguments to pytest's: our options renamed, suites found, the rest passed on."""
    suites: list[str] = []
    passthrough: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        name, eq, value = arg.partition("=")
        if name in _VALUE_OPTIONS:
            if not eq:
                if i + 1 >= len(argv):
                    raise UsageError(f"{name} needs a value")
                value = argv[i + 1]
                i += 1
            passthrough.append(f"{_VALUE_OPTIONS[name]}={value}")
        elif arg in _FLAG_OPTIONS:
            passthrough.append(_FLAG_OPTIONS[arg])
        elif _is_suite_arg(arg, argv[i - 1] if i else None):
            if not Path(arg.split("::")[0]).exists():
                raise UsageError(f"suite file {arg!r} not found (working directory {os.getcwd()})")
            suites.append(arg)
        else:
            passthrough.append(arg)
        i += 1
    if not suites:
        # the packaged quickstart lives in site-packages: keep pytest's cache out of there
        suites = [str(quickstart_path())]
        passthrough = ["-p", "no:cacheprovider", f"--rootdir={quickstart_path().parent}", *passthrough]
    elif any(Path(s).is_dir() for s in suites):
        # every module in a suite folder is a suite, whatever pytest's python_files says
        passthrough = ["-o", "python_files=*.py", *passthrough]
    extra = []
    if os.environ.get("PYTEST_DISABLE_PLUGIN_AUTOLOAD"):
        extra = ["-p", PYTEST_PLUGIN]
    return [*extra, *suites, *passthrough]


class UsageError(ValueError):
    """A command line robustprune cannot run: the message says what to change."""


def cmd_run(argv: list[str]) -> int:
    if argv and argv[0] in ("-h", "--help"):
        print(run_help())
        return 0
    try:
        args = pytest_args_for_run(argv)
    except UsageError as exc:
        print(f"robustprune run: {exc}", file=sys.stderr)
        return int(ExitStatus.CONFIGURATION_ERROR)
    import pytest

    status = int(pytest.main(args))
    # pytest's own usage errors (an unknown option) are configuration errors, as everywhere in robustprune
    return int(ExitStatus.CONFIGURATION_ERROR) if status == int(pytest.ExitCode.USAGE_ERROR) else status


def cmd_plugins(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="robustprune plugins", description="List plugins and what they register.")
    parser.add_argument("--plugin", action="append", default=[], metavar="MODULE",
                        help="also load a local plugin module")
    args = parser.parse_args(argv)
    from tabulate import tabulate

    from .plugin.registry import PluginConflictError, load_registry

    try:
        registry = load_registry(args.plugin, search_path=Path.cwd())
    except PluginConflictError as exc:
        print(f"robustprune plugins: {exc}", file=sys.stderr)
        return int(ExitStatus.CONFIGURATION_ERROR)
    rows = []
    for name, info in sorted(registry.host.info.items()):
        registered = registry.registered_by(name)
        what = "; ".join(f"{kind}s: {', '.join(names)}" for kind, names in registered.items()) or "(nothing)"
        rows.append([name, f"{info.distribution} {info.version}", info.source, what])
    print(tabulate(rows, headers=["plugin", "distribution", "from", "registers"], tablefmt="simple",
                   maxcolwidths=[None, None, None, 70]))
    if registry.failures:
        print("\nplugins that failed to load:")
        for failure in registry.failures:
            print(f"  {failure.describe()}")
    return int(ExitStatus.CONFIGURATION_ERROR) if registry.failures else int(ExitStatus.OK)


def cmd_report(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="robustprune report",
        description="Re-render the tables and figures of a JSON report (robustprune-report.json) without "
                    "recomputing anything.")
    parser.add_argument("results", type=Path, metavar="RESULTS.json", help="a report written by --report DIR")
    parser.add_argument("--figures", type=Path, default=None, metavar="DIR",
                        help="folder for the figures (default: figures/ next to RESULTS.json)")
    parser.add_argument("--no-figures", action="store_true", help="print the tables only")
    parser.add_argument("--format", default="simple", metavar="FMT",
                        help="table format: simple (default), github (Markdown), or any other tabulate format")
    args = parser.parse_args(argv)
    import json

    from .report.tables import render_text

    try:
        data = json.loads(args.results.read_text())
        reports = data["suites"]
    except FileNotFoundError:
        print(f"robustprune report: {args.results} not found", file=sys.stderr)
        return int(ExitStatus.CONFIGURATION_ERROR)
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        print(f"robustprune report: {args.results} is not a robustprune JSON report ({type(exc).__name__}: {exc})",
              file=sys.stderr)
        return int(ExitStatus.CONFIGURATION_ERROR)
    for report in reports:
        for table in report["tables"]:
            for row in table["rows"]:
                row.setdefault("verdict", "not checked")
        print(render_text(report, args.format))
    if args.no_figures:
        return 0
    from .report.files import write_figures_or_hint

    folder = args.figures or args.results.parent / "figures"
    written, hint = write_figures_or_hint(reports, folder)
    if hint:  # matplotlib is not installed: the machine, not the report
        print(f"robustprune report: no figures: {hint}", file=sys.stderr)
        return int(ExitStatus.ENVIRONMENT_ERROR)
    for path in written:
        print(f"figure written to {path}")
    return 0


COMMANDS = {"run": cmd_run, "plugins": cmd_plugins, "report": cmd_report}

MAIN_HELP = f"""\
usage: robustprune COMMAND [...]

robustprune {__version__}: gate pruned networks on robustness beyond test accuracy.

commands:
  run [SUITE ...] [options]   run suites (default: the built-in quickstart); see `robustprune run --help`
  plugins                     list plugins with their versions and what they register
  report RESULTS.json         re-render a JSON report's tables and figures (computes nothing)
"""


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(MAIN_HELP)
        return 0
    if argv[0] == "--version":
        print(f"robustprune {__version__}")
        return 0
    command = COMMANDS.get(argv[0])
    if command is None:
        print(f"robustprune: unknown command {argv[0]!r}; commands: {', '.join(COMMANDS)}", file=sys.stderr)
        return int(ExitStatus.CONFIGURATION_ERROR)
    return command(argv[1:])


if __name__ == "__main__":
    raise SystemExit(main())
