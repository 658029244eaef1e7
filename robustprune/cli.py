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
import contextlib
import os
import re
import sys
import warnings
from pathlib import Path
from typing import Any

from .core.datasource import ROOT_PARAM
from .core.results import CaseError, StoreError
from .harness.exitcodes import ExitStatus
from .harness.options import DATA_ENV, DEVICE_ENV, OPTIONS, THREADS_ENV
from .harness.options import run_help as options_help
from .plugin.errors import DataFileError, MissingDependencyError
from .version import __version__

RUN_USAGE = """\
usage: robustprune run [SUITE ...] [options] [pytest options]

Run evaluation suites (pytest modules, or folders of them) and gate on their
checks. With no SUITE, runs the built-in quickstart suite (small CNN on
digits, WT, SiPP, FT and PFP). A packaged suite can be named instead of a
path: quickstart, or segmentation (a small segmentation network on the
digits' strokes, gated on mean IoU).
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


PACKAGED_SUITES = ("quickstart", "segmentation")
"""The suites installed with the package, runnable by name (``robustprune run segmentation``)."""


def packaged_suite_path(name: str) -> Path:
    """A suite installed with the package (one of :data:`PACKAGED_SUITES`)."""
    return Path(__file__).parent / "suites" / f"{name}.py"


def quickstart_path() -> Path:
    """The built-in quickstart suite, installed with the package."""
    return packaged_suite_path("quickstart")


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
    packaged: list[str] = []
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
        elif arg in PACKAGED_SUITES and not Path(arg).exists() and (i == 0 or argv[i - 1] not in
                                                                    _PYTEST_VALUE_OPTIONS):
            packaged.append(str(packaged_suite_path(arg)))
        elif _is_suite_arg(arg, argv[i - 1] if i else None):
            if not Path(arg.split("::")[0]).exists():
                raise UsageError(f"suite file {arg!r} not found (working directory {os.getcwd()})")
            suites.append(arg)
        else:
            passthrough.append(arg)
        i += 1
    if not suites:
        # packaged suites live in site-packages: keep pytest's cache out of there
        suites = packaged or [str(quickstart_path())]
        passthrough = ["-p", "no:cacheprovider", f"--rootdir={quickstart_path().parent}", *passthrough]
    else:
        # a folder stands for the suites in it, named on pytest's command line: pytest collects (and rewrites
        # the assertions of) exactly those files, whatever its python_files says; widening python_files instead
        # made it rewrite every module the suites import (torch's included: 14.8 s of collection, not 2.6 s)
        suites = [*packaged, *(found for s in suites for found in (suite_files(Path(s)) if Path(s).is_dir() else [s]))]
    extra = []
    if os.environ.get("PYTEST_DISABLE_PLUGIN_AUTOLOAD"):
        extra = ["-p", PYTEST_PLUGIN]
    return [*extra, *suites, *passthrough]


_SUITE_DECLARATION = re.compile(r"^suite\s*(:[^=]*)?=", re.M)


_NOT_SUITES = {"__pycache__", "site-packages", "node_modules", "venv", "build", "dist"}


def suite_files(folder: Path) -> list[str]:
    """The suite modules in ``folder`` and below: each ``test_*.py`` / ``*_test.py``, and each module that
    declares ``suite = ...`` at its top level (local plugin modules next to them are not suites). Hidden
    folders, virtualenvs and build folders are not searched."""
    found = []
    for path in sorted(folder.rglob("*.py")):
        inside = path.relative_to(folder).parts[:-1]
        if any(part.startswith(".") or part in _NOT_SUITES for part in inside):
            continue
        if path.name.startswith("test_") or path.name.endswith("_test.py"):
            found.append(str(path))
            continue
        try:
            declares = _SUITE_DECLARATION.search(path.read_text(errors="replace")) is not None
        except OSError:  # a broken link, say: not a suite we can run
            continue
        if declares:
            found.append(str(path))
    if not found:
        raise UsageError(f"no suite in {folder}/: a suite is a module with a top-level `suite = Suite(...)` (or a "
                         "test_*.py file)")
    return found


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
    parser.add_argument("--disable", action="append", default=[], metavar="NAME",
                        help="do not load this plugin (also $ROBUSTPRUNE_DISABLE_PLUGINS, comma-separated)")
    args = parser.parse_args(argv)
    from tabulate import tabulate

    from .plugin.host import PluginWarning
    from .plugin.registry import load_registry

    with warnings.catch_warnings():  # listed below the table instead
        warnings.simplefilter("ignore", PluginWarning)
        registry = load_registry(args.plugin, search_path=Path.cwd(), disabled=args.disable)
    rows = []
    for name, info in sorted(registry.host.info.items()):
        registered = registry.registered_by(name)
        what = "; ".join(f"{kind}s: {', '.join(names)}" for kind, names in registered.items()) or "(nothing)"
        rows.append([name, f"{info.distribution} {info.version}", info.source, what])
    rows += [[name, "", "disabled", "(not loaded)"] for name in registry.host.disabled]
    print(tabulate(rows, headers=["plugin", "distribution", "from", "registers"], tablefmt="simple",
                   maxcolwidths=[None, None, None, 70]))
    if registry.clashes:
        print("\nnames registered by more than one plugin (unavailable: the cases that use them fail):")
        for kind, name in registry.clashes:
            print(f"  {registry.clash_message(kind, name)}")
    if registry.host.notes:
        print("\nplugins that load but look wrong:")
        for note in registry.host.notes:
            print(f"  {note}")
    if registry.failures:
        print("\nplugins that failed to load:")
        for failure in registry.failures:
            print(f"  {failure.describe()}")
    broken = registry.failures or registry.clashes
    return int(ExitStatus.CONFIGURATION_ERROR) if broken else int(ExitStatus.OK)


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
    parser.add_argument("--width", type=int, metavar="N",
                        help="fit the simple format into N columns (default: the terminal's, or 100 when output "
                             "is not a terminal; 0: the full table with every spread)")
    args = parser.parse_args(argv)
    import json

    from .report.tables import render_text, terminal_width

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
        print(render_text(report, args.format, terminal_width(args.width) if args.format == "simple" else None))
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


def cmd_store(argv: list[str]) -> int:
    """``robustprune store info|verify|gc``: look after a store (see docs/trusting-results.md)."""
    parser = argparse.ArgumentParser(
        prog="robustprune store", description="Inspect, verify and clean a store (docs/trusting-results.md).")
    commands = parser.add_subparsers(dest="what", required=True, metavar="{info,verify,gc}")
    info = commands.add_parser("info", help="entries and bytes by kind, networks by numerics, locks, temporary files")
    verify = commands.add_parser(
        "verify", help="read every entry back (digest, HMAC with a key) and check stored pruned networks against "
                       "their keys; with suites and --recompute-evaluations, re-derive their evaluations")
    verify.add_argument("suites", nargs="*", metavar="SUITE", help="suite files whose evaluations to re-derive")
    verify.add_argument("--recompute-evaluations", action="store_true",
                        help="recompute every stored evaluation of the suites' networks and compare (needs SUITE)")
    gc = commands.add_parser("gc", help="remove entries no suite given references (and/or written before a date), "
                                        "stale temporary files and unheld locks; run it when no run uses the store")
    gc.add_argument("suites", nargs="*", metavar="SUITE", help="keep what these suites reference")
    gc.add_argument("--older-than", metavar="YYYY-MM-DD", help="remove only entries written before this date")
    gc.add_argument("--dry-run", action="store_true", help="list what would be removed, remove nothing")
    for command in (info, verify, gc):
        command.add_argument("--store", metavar="DIR", help="the store (default: $ROBUSTPRUNE_STORE or .robustprune/)")
    for command in (verify, gc):
        command.add_argument("--plugin", action="append", default=[], metavar="MODULE",
                             help="also load a local plugin module")
        command.add_argument("--data", metavar="DIR", help="root folder of datasets read from disk")
        # part of every store key: the suites are looked up as the run that filled the store computed them
        command.add_argument("--device", default=os.environ.get(DEVICE_ENV) or "cpu",
                             help="the device of the runs that filled the store (default: $ROBUSTPRUNE_DEVICE or cpu)")
        command.add_argument("--threads", type=int, default=int(os.environ.get(THREADS_ENV) or 1),
                             help="their torch threads per process (default: $ROBUSTPRUNE_THREADS or 1)")
    args = parser.parse_args(argv)
    from .core.datasource import default_store_root

    root = Path(args.store).expanduser().resolve() if args.store else default_store_root()
    if args.what == "verify" and not root.exists():
        # a CI job verifies whatever its cache restored: no store (a cold cache) is nothing to distrust
        print(f"store {root}: no store there, nothing to verify")
        return int(ExitStatus.OK)
    if not root.is_dir():
        print(f"robustprune store: {root} is not a store folder (--store DIR, or $ROBUSTPRUNE_STORE)", file=sys.stderr)
        return int(ExitStatus.CONFIGURATION_ERROR)
    from .compute import storetools
    from .compute.store import Store

    store = Store(root)
    try:
        with store.inspecting():  # a damaged entry is reported here, never removed
            if args.what == "info":
                print("\n".join(storetools.store_info(store).lines()))
                return int(ExitStatus.OK)
            try:
                engines = [(Path(path), _suite_engine(Path(path), root, args)) for path in args.suites]
            except DataFileError:
                raise
            except Exception as exc:  # noqa: BLE001 - a suite that does not load: the user's to fix
                print(f"robustprune store: {type(exc).__name__}: {exc}", file=sys.stderr)
                return int(ExitStatus.CONFIGURATION_ERROR)
            with contextlib.ExitStack() as stack:
                for _, engine in engines:  # each engine has its own Store object: inspect through it too
                    stack.enter_context(engine.options.store.inspecting())
                if args.what == "verify":
                    return _verify(store, engines, args.recompute_evaluations)
                return _collect_garbage(store, engines, args.older_than, args.dry_run)
    except (StoreError, DataFileError, MissingDependencyError, OSError) as exc:
        print(f"robustprune store: {exc}", file=sys.stderr)
        return int(ExitStatus.ENVIRONMENT_ERROR)


def _suite_engine(path: Path, store_root: Path, args: argparse.Namespace) -> Any:
    """The engine of the suite declared in the module at ``path`` (imported, its checks not run)."""
    import runpy

    from .engine.factory import EngineJob

    if not path.is_file():
        raise OSError(f"suite file {str(path)!r} not found")
    namespace = runpy.run_path(str(path))
    suite = namespace.get("suite")
    from .core.suite import Suite

    if not isinstance(suite, Suite):
        raise ValueError(f"{path} declares no `suite = robustprune.Suite(...)`")
    job = EngineJob.for_suite(suite, str(path.resolve()), str(store_root), plugins=tuple(args.plugin),
                              device=args.device, threads=args.threads,
                              data_root=str(Path(args.data).expanduser().resolve()) if args.data else None)
    return job.build(lambda line: print(f"robustprune store: {line}", file=sys.stderr))


def _verify(store: Any, engines: list[tuple[Path, Any]], evaluations: bool) -> int:
    from .compute import storetools

    result = storetools.verify_entries(store)
    sound = result.checked - len(result.problems)
    keyed = (f"{result.authenticated} authenticated with ROBUSTPRUNE_STORE_KEY" if store.authenticated
             else "not authenticated: no ROBUSTPRUNE_STORE_KEY set, so a forged entry with a recomputed digest "
                  "passes this check; --recompute-evaluations catches forged evaluations")
    print(f"store {store.root}: {result.checked} entries read back, {sound} sound ({keyed})")
    problems = list(result.problems)
    if evaluations:
        if not engines:
            print("robustprune store: --recompute-evaluations needs the suites whose evaluations to re-derive",
                  file=sys.stderr)
            return int(ExitStatus.CONFIGURATION_ERROR)
        for path, engine in engines:
            checked, differ = engine.verify_evaluations(engine.cases())
            if not checked and not result.problems:
                print(f"robustprune store: no stored evaluation of {path.name} was found under {_numerics(engine)}: "
                      "nothing was checked; pass the --device and --threads of the runs that filled the store",
                      file=sys.stderr)
                return int(ExitStatus.CONFIGURATION_ERROR)
            print(f"{path.name}: {checked} stored evaluations re-derived from the stored networks, {len(differ)} "
                  "differ")
            problems += differ
    for problem in problems:
        print(f"  {problem}")
    return int(ExitStatus.CHECKS_FAILED) if problems else int(ExitStatus.OK)


def _collect_garbage(store: Any, engines: list[tuple[Path, Any]], older_than: str | None, dry_run: bool) -> int:
    import datetime

    from .compute import storetools

    cutoff = None
    if older_than:
        try:
            cutoff = datetime.datetime.strptime(older_than, "%Y-%m-%d").timestamp()
        except ValueError:
            print(f"robustprune store gc: --older-than {older_than!r} is not a date like 2026-12-01", file=sys.stderr)
            return int(ExitStatus.CONFIGURATION_ERROR)
    keep = None
    for path, engine in engines:
        # what an incomplete suite still needs lies beyond what it can reach: keep everything then
        plan = engine.work_plan(engine.cases())
        if plan.parents or plan.repeats or plan.measures:
            print(f"robustprune store gc: {path.name} is not complete in the store under {_numerics(engine)} "
                  f"({len(plan.parents)} parents, {len(plan.repeats)} cascades, {len(plan.measures)} measures "
                  "missing): run it first, or pass the --device and --threads of the runs that filled the store; "
                  "nothing was removed", file=sys.stderr)
            return int(ExitStatus.CONFIGURATION_ERROR)
    if engines:
        keep = set().union(*(engine.referenced_entries(engine.cases()) for _, engine in engines))
    report = storetools.collect_garbage(store, keep=keep, older_than=cutoff, dry_run=dry_run)
    verb = "would remove" if dry_run else "removed"
    print(f"store {store.root}: {verb} {len(report.entries)} entries, {len(report.temporary)} stale temporary "
          f"files and {len(report.locks)} unheld locks ({report.freed / (1 << 20):.1f} MiB)")
    return int(ExitStatus.OK)


def _numerics(engine: Any) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(engine.numerics.items()))


def cmd_new(argv: list[str]) -> int:
    """``robustprune new plugin NAME`` / ``robustprune new suite NAME``: a plugin package or a suite to start from."""
    parser = argparse.ArgumentParser(prog="robustprune new",
                                     description="Write a plugin package or a suite to start from.")
    parser.add_argument("what", choices=("plugin", "suite"))
    parser.add_argument("name", help="lower-case letters, digits and _ (a module and entry-point name)")
    parser.add_argument("--dir", default=".", help="where to write it (default: here)")
    args = parser.parse_args(argv)
    from . import scaffold

    try:
        make = scaffold.new_plugin if args.what == "plugin" else scaffold.new_suite
        written = make(args.name, Path(args.dir))
    except (ValueError, OSError) as exc:
        print(f"robustprune new: {exc}", file=sys.stderr)
        return int(ExitStatus.CONFIGURATION_ERROR)
    if args.what == "plugin":
        print(f"wrote {written}/: pyproject.toml (entry point {args.name!r}), src/{args.name}/__init__.py (a method "
              f"and a shift), tests/test_contract.py, README.md\nnext: pip install -e '{written}[test]' && "
              f"pytest {written}/tests")
    else:
        print(f"wrote {written}\nnext: robustprune run {written}")
    return int(ExitStatus.OK)


def _param_value(text: str) -> Any:
    """A command-line parameter value as a suite would write it: ``1000``, ``0.1``, ``False``, ``None``; anything
    that is not a Python literal is text (``/data/cifar``)."""
    import ast

    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def cmd_shifts(argv: list[str]) -> int:
    """``robustprune shifts preview SHIFT ... --dataset NAME -o FILE.png``: see what a network must survive."""
    parser = argparse.ArgumentParser(prog="robustprune shifts", description="Look at shifts before running them.")
    commands = parser.add_subparsers(dest="what", required=True, metavar="{preview}")
    preview = commands.add_parser(
        "preview", help="draw a grid of test images under each shift (rows) as a PNG",
        description="Draw a grid of test images (columns: the first of each class) under each shift (rows, the "
                    "first clean), as a suite with the same seed and shift_family would evaluate them.")
    preview.add_argument("shifts", nargs="+", metavar="SHIFT",
                         help="shifts as suites write them: fog@3, fog@1,3,5, noise@3, uniform_noise@0.2")
    preview.add_argument("--dataset", default="digits", help="a registered dataset (default: digits)")
    preview.add_argument("-o", "--output", required=True, metavar="FILE.png", help="where to write the PNG")
    preview.add_argument("--images", type=int, default=6, metavar="N", help="test images per row (default 6)")
    preview.add_argument("--seed", type=int, default=0, help="the suite seed whose draws to show (default 0)")
    preview.add_argument("--family", default="auto", metavar="NAME",
                         help="parameter family of the corruptions: auto (by image size), cifar10-c, imagenet-c")
    preview.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                         help="a dataset parameter, as a suite's dataset_params gives it (repeatable), e.g. "
                              "test_subset=1000: the data, and so the images' seeds, depend on them")
    preview.add_argument("--plugin", action="append", default=[], metavar="MODULE", help="also load a local plugin")
    preview.add_argument("--data", metavar="DIR", help=f"root folder of datasets read from disk (default: ${DATA_ENV})")
    preview.add_argument("--download", action="store_true", help="let the dataset plugin download missing data")
    args = parser.parse_args(argv)
    output = Path(args.output).expanduser()
    problem = None
    if not 1 <= args.images <= 64:
        problem = f"--images must be from 1 to 64, got {args.images}"
    elif output.suffix.lower() != ".png":
        problem = f"--output {output} must end in .png"
    elif not output.parent.is_dir():
        problem = f"--output {output}: the folder {output.parent} does not exist"
    params: dict[str, Any] = {}
    for item in args.param:
        key, equals, value = item.partition("=")
        if not equals or not key:
            problem = f"--param {item!r}: write KEY=VALUE, e.g. test_subset=1000"
            break
        params[key] = _param_value(value)
    if problem:
        print(f"robustprune shifts preview: {problem}", file=sys.stderr)
        return int(ExitStatus.CONFIGURATION_ERROR)
    from .engine.preview import preview_rows, write_preview
    from .plugin.api import DatasetRequest
    from .plugin.registry import load_registry

    registry = load_registry(args.plugin, search_path=Path.cwd())
    failed = [f for f in registry.failures if f.name in args.plugin]
    if failed:
        for failure in failed:
            print(f"robustprune shifts preview: {failure.describe()}", file=sys.stderr)
        return int(ExitStatus.CONFIGURATION_ERROR)
    # a dataset's own root (as in a suite's dataset_params), else --data, else $ROBUSTPRUNE_DATA, as a run finds it
    root = params.pop(ROOT_PARAM, None) or args.data or os.environ.get(DATA_ENV)
    data_root = Path(str(root)).expanduser().resolve() if root else None
    request = DatasetRequest(seed=args.seed, root=data_root, download=args.download, params=params)
    try:
        rows = preview_rows(registry, args.shifts, args.dataset, count=args.images, seed=args.seed,
                            family=args.family, request=request)
        write_preview(rows, output)
    except (DataFileError, MissingDependencyError, OSError) as exc:
        print(f"robustprune shifts preview: {exc}", file=sys.stderr)
        return int(ExitStatus.ENVIRONMENT_ERROR)
    except (ValueError, LookupError) as exc:  # an unknown shift, dataset or family
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"robustprune shifts preview: {message}", file=sys.stderr)
        return int(ExitStatus.CONFIGURATION_ERROR)
    except CaseError as exc:  # a shift's code failed, or it cannot be previewed
        print(f"robustprune shifts preview: {exc}", file=sys.stderr)
        return int(ExitStatus.CHECKS_FAILED)
    print(f"wrote {output}: {len(rows) - 1} shift(s) x {rows[0].images.shape[0]} images of {args.dataset} "
          f"(rows: {', '.join(r.label for r in rows)})")
    return int(ExitStatus.OK)


COMMANDS = {"new": cmd_new, "run": cmd_run, "plugins": cmd_plugins, "report": cmd_report, "store": cmd_store,
            "shifts": cmd_shifts}

MAIN_HELP = f"""\
usage: robustprune COMMAND [...]

robustprune {__version__}: gate pruned networks on robustness beyond test accuracy.

commands:
  run [SUITE ...] [options]   run suites (default: the built-in quickstart); see `robustprune run --help`
  plugins                     list plugins with their versions and what they register
  report RESULTS.json         re-render a JSON report's tables and figures (computes nothing)
  store info|verify|gc        inspect, verify (authentication, pruned networks, evaluations) and clean a store
  new plugin|suite NAME       write a plugin package (method, shift, contract tests) or a suite to start from
  shifts preview SHIFT ...    draw test images under shifts as a PNG (-o FILE.png, --dataset NAME)
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


def run_main() -> int:
    """The console entry point: :func:`main`, quiet when its reader goes away (``robustprune plugins | head``)."""
    try:
        status = main()
        sys.stdout.flush()  # a closed pipe shows here rather than at interpreter exit
    except BrokenPipeError:
        # the reader stopped reading: no traceback, and nothing more is written at exit
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 128 + 13  # what a shell reports for a process stopped by SIGPIPE
    return status


if __name__ == "__main__":
    raise SystemExit(run_main())
