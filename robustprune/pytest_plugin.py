"""The pytest plugin (``pytest11`` entry point): parametrizes suite checks, shares the heavy work, reports.

A suite module declares ``suite = Suite(...)``; its test functions take
``case``, ``shift_case`` or ``group_case`` and are parametrized over the grid
(ids like ``wt-small_cnn-digits-contrast@3``). The engine runs each case once
per session, on first use, and every check of the case reads the same curves.

This module loads in every pytest run of an environment where robustprune is
installed, so it imports no torch; the engine is imported on first use.
"""

from __future__ import annotations

import json
import os
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from .cases import Case, GroupCase, Measure, NotApplicable, ShiftCase
from .suite import Suite

_CASE_FIXTURES = ("case", "shift_case", "group_case")
DEVICE_ENV = "ROBUSTPRUNE_DEVICE"
DATA_ENV = "ROBUSTPRUNE_DATA"
THREADS_ENV = "ROBUSTPRUNE_THREADS"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("robustprune", "robustprune: robustness gates for pruned networks")
    group.addoption("--rp-store", metavar="DIR", default=None,
                    help="artifact store (default: $ROBUSTPRUNE_STORE or .robustprune/ in the working directory)")
    group.addoption("--rp-device", metavar="DEVICE", default=None,
                    help="torch device for training and evaluation: cpu (default, or $ROBUSTPRUNE_DEVICE), cuda, cuda:1")
    group.addoption("--rp-workers", metavar="N", type=int, default=None,
                    help="worker processes for shifted-set generation (default: all cores)")
    group.addoption("--rp-threads", metavar="N", type=int, default=None,
                    help="torch threads for training and evaluation (default 1, or $ROBUSTPRUNE_THREADS); results "
                         "depend on it, so it is part of every store key")
    group.addoption("--rp-report", metavar="DIR", default=None,
                    help="also write the report as JSON and Markdown into DIR, and its figures into DIR/figures "
                         "when matplotlib is installed")
    group.addoption("--rp-plugin", metavar="MODULE", action="append", default=[],
                    help="load a local plugin module (repeatable; also $ROBUSTPRUNE_PLUGINS, comma-separated)")
    group.addoption("--rp-data", metavar="DIR", default=None,
                    help="root folder for datasets read from disk (default: $ROBUSTPRUNE_DATA)")
    group.addoption("--rp-download", action="store_true", default=False,
                    help="let dataset plugins download missing data into the data root (CIFAR via torchvision)")
    group.addoption("--rp-executor", choices=("local", "ray"), default="local",
                    help="where parents and cascades run: in this process (default) or on Ray")
    group.addoption("--rp-ray-address", metavar="ADDRESS", default=None,
                    help="Ray cluster to use with --rp-executor ray (default: $RAY_ADDRESS, else a local instance)")
    group.addoption("--rp-export", metavar="DIR", default=None,
                    help="write the network of every case that passed (its deploy gate and every check) into "
                         "DIR/<case id>/ with a JSON sidecar; DIR is checked for writability before anything runs")


def pytest_configure(config: pytest.Config) -> None:
    # checks carry xdist_group marks (for --dist loadgroup); declared here too for runs without xdist
    config.addinivalue_line("markers", "xdist_group(name): run all checks of one case on one xdist worker")
    from .pytest_gate import check_export_option

    check_export_option(config)  # an unwritable export folder fails before any work
    _check_device(config.getoption("rp_device") or os.environ.get(DEVICE_ENV) or "cpu")  # likewise a missing GPU
    state = RunState(config)
    config.stash[_RUN] = state
    # registered as a plugin object: hooks that get no config (logreport) reach the state through self
    config.pluginmanager.register(state, "robustprune-run-state")
    _ACTIVE_CONFIGS.append(config)


def pytest_unconfigure(config: pytest.Config) -> None:
    if config in _ACTIVE_CONFIGS:
        _ACTIVE_CONFIGS.remove(config)


# The sessions running in this process (pytest.main can nest): suite-level helpers such as
# robustprune.skip_unless_data run at import time, where no fixture can hand them the options.
_ACTIVE_CONFIGS: list[pytest.Config] = []


def active_config() -> pytest.Config | None:
    """The innermost running pytest session's config, if any."""
    return _ACTIVE_CONFIGS[-1] if _ACTIVE_CONFIGS else None


def data_options(config: pytest.Config) -> tuple[Path | None, bool]:
    """The data root (``--rp-data``, else ``$ROBUSTPRUNE_DATA``) and the download switch of a session."""
    root = config.getoption("rp_data") or os.environ.get(DATA_ENV)
    return (Path(root).expanduser().resolve() if root else None), bool(config.getoption("rp_download"))


def pytest_assertrepr_compare(config: pytest.Config, op: str, left: object, right: object) -> list[str] | None:
    """``prune potential 0.50 under contrast@3 < required 0.80 (delta 0.5 %)`` instead of ``0.5 >= 0.8``."""
    if isinstance(left, Measure):
        line = left.explain(op, right)
        return [line] if line else None
    if isinstance(right, Measure) and op in _MIRRORED:  # `assert 0.8 <= case.prune_potential()`
        line = right.explain(_MIRRORED[op], left)
        return [line] if line else None
    return None


_MIRRORED = {"<=": ">=", "<": ">", ">=": "<=", ">": "<"}


@dataclass(frozen=True)
class CaseParam:
    """What a parametrized check carries: which suite and which point of its grid."""

    suite_file: str
    method: str
    model: str
    dataset: str
    shift: str | None = None  # shift label (shift_case) or entry label (group_case)

    @property
    def case_id(self) -> str:
        return f"{self.method}-{self.model}-{self.dataset}"

    def __repr__(self) -> str:  # shown by pytest in some messages
        return self.case_id + (f"-{self.shift}" if self.shift else "")


_RUN = pytest.StashKey["RunState"]()


class RunState:
    """One pytest session's engines (one per suite module) and the outcome of every check."""

    def __init__(self, config: pytest.Config):
        self.config = config
        self.engines: dict[str, Any] = {}
        self.jobs: dict[str, Any] = {}  # per suite file: what a remote executor needs to rebuild its engine
        self.outcomes: dict[tuple[str, str], list[str]] = {}  # (suite file, case id) -> outcomes
        self.worker_reports: list[dict[str, Any]] = []  # xdist controller: parts sent by workers
        self.export_lines: list[str] = []  # what --rp-export wrote (printed in the terminal summary)
        self.started = time.monotonic()

    # -------------------------------------------------------------- hooks

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """Record each check's outcome for its case (in xdist's controller too: user_properties travel)."""
        props = dict(report.user_properties)
        if "robustprune_case" not in props or (report.when != "call" and report.outcome == "passed"):
            return
        key = (props["robustprune_suite"], props["robustprune_case"])
        self.outcomes.setdefault(key, []).append(report.outcome)

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: Any) -> None:
        """xdist controller: collect the report parts each worker sent."""
        parts = getattr(node, "workeroutput", {}).get("robustprune_reports")
        if parts:
            self.worker_reports += json.loads(parts)

    # -------------------------------------------------------------- options

    def run_options(self):
        from .data import default_workers
        from .engine import RunOptions
        from .store import Store

        opt = self.config.getoption
        device = opt("rp_device") or os.environ.get(DEVICE_ENV) or "cpu"
        _check_device(device)
        data_root, download = data_options(self.config)
        return RunOptions(
            store=Store(opt("rp_store")),
            device=device,
            threads=opt("rp_threads") or int(os.environ.get(THREADS_ENV) or 1),
            workers=opt("rp_workers") or default_workers(),
            data_root=data_root,
            download=download,
            progress=self.progress,
        )

    def progress(self, message: str) -> None:
        """Long work says what it is doing, even while pytest captures output."""
        line = f"robustprune {time.monotonic() - self.started:6.1f}s {message}"
        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        capture = self.config.pluginmanager.get_plugin("capturemanager")
        if reporter is None:
            return
        if capture is not None:
            with capture.global_and_fixture_disabled():
                reporter.write_line(line)
        else:
            reporter.write_line(line)

    # -------------------------------------------------------------- engines

    def engine_for_collection(self, module_file: str, suite: Suite):
        """:meth:`engine_for`, with a bad suite (unknown names, malformed shifts) as a clean collection error."""
        try:
            return self.engine_for(module_file, suite)
        except (LookupError, ValueError, RuntimeError) as exc:
            raise pytest.Collector.CollectError(f"suite {Path(module_file).name}: {exc}") from exc

    def engine_for(self, module_file: str, suite: Suite):
        if module_file not in self.engines:
            from .engine import Engine
            from .plugins import create_host
            from .registry import Registry

            from .datasource import with_resolved_paths

            # data roots and checkpoints written relative to the suite file mean just that, wherever it runs
            suite = with_resolved_paths(suite, Path(module_file).parent)
            local_modules = (*self.config.getoption("rp_plugin"), *suite.plugins)
            host = create_host(local_modules, search_path=Path(module_file).parent)
            engine = Engine(suite, Registry(host), self.run_options())
            self.engines[module_file] = engine
            self.jobs[module_file] = self._job(suite, local_modules, module_file, engine.options)
        return self.engines[module_file]

    @staticmethod
    def _job(suite: Suite, local_modules, module_file: str, options):
        from .executors import EngineJob
        from .plugins import local_modules_from_env

        return EngineJob(
            suite=suite, local_modules=(*local_modules_from_env(), *local_modules),
            search_path=str(Path(module_file).parent), store_root=str(options.store.root), device=options.device,
            threads=options.threads,
            data_root=str(options.data_root) if options.data_root else None, download=options.download,
        )

    def case_view(self, param: CaseParam) -> Case:
        engine = self.engines[param.suite_file]
        from .engine import CaseError, CaseKey

        key = CaseKey(param.method, param.model, param.dataset)
        failure = None
        try:
            engine.result(key)
        except CaseError as exc:
            failure = _describe_case_error(exc)
        if failure is not None:  # raised outside the except block: no "during handling" chain in the output
            pytest.fail(failure, pytrace=False)
        return Case(lambda: engine.result(key), engine.suite, engine.shift_entries,
                    param.method, param.model, param.dataset)


def _describe_case_error(exc: BaseException) -> str:
    message = str(exc)
    cause = exc.__cause__
    if cause is not None and not isinstance(cause, ValueError):
        # a plugin crashed: its traceback is what its author needs
        message += "\n\n" + "".join(traceback.format_exception(type(cause), cause, cause.__traceback__)[-6:])
    return message


def _check_device(device: str) -> None:
    if device == "cpu":
        return
    import torch

    if device.startswith("cuda") and not torch.cuda.is_available():
        raise pytest.UsageError(
            f"device {device!r} was asked for, but torch sees no CUDA device (torch {torch.__version__}); "
            "run on the CPU with `robustprune run --device cpu` / `pytest --rp-device cpu`, or install a CUDA "
            "build of torch"
        )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    wanted = [name for name in _CASE_FIXTURES if name in metafunc.fixturenames]
    if not wanted:
        return
    suite = getattr(metafunc.module, "suite", None)
    if not isinstance(suite, Suite):
        return  # the fixture explains the problem at setup
    state: RunState = metafunc.config.stash[_RUN]
    module_file = str(metafunc.module.__file__)
    engine = state.engine_for_collection(module_file, suite)
    cases = engine.cases()
    for name in wanted:
        params: list[CaseParam] = []
        for key in cases:
            base = (module_file, key.method, key.model, key.dataset)
            if name == "case":
                params.append(CaseParam(*base))
            elif name == "shift_case":
                params += [CaseParam(*base, shift.label) for shift in engine.shifts if shift.label != "nominal"]
            else:
                params += [CaseParam(*base, entry.label) for entry in engine.shift_entries]
        metafunc.parametrize(name, params, ids=[repr(p) for p in params], indirect=True)


def _param(request: pytest.FixtureRequest, name: str) -> CaseParam:
    param = getattr(request, "param", None)
    if not isinstance(param, CaseParam):
        pytest.fail(
            f"the {name!r} fixture needs a suite: declare `suite = robustprune.Suite(models=..., datasets=..., "
            f"methods=...)` at the top level of {request.node.fspath.basename}",
            pytrace=False,
        )
    return param


@pytest.fixture
def case(request: pytest.FixtureRequest) -> Case:
    """One method x model x dataset of the suite's grid, with its curves on every shift."""
    return request.config.stash[_RUN].case_view(_param(request, "case"))


@pytest.fixture
def shift_case(request: pytest.FixtureRequest) -> ShiftCase:
    """One case under one concrete shift of the suite (every member of every group)."""
    param = _param(request, "shift_case")
    return request.config.stash[_RUN].case_view(param).shift(param.shift)


@pytest.fixture
def group_case(request: pytest.FixtureRequest) -> GroupCase:
    """One case over one entry of the suite's shifts (a group such as corruptions@3, or a single shift)."""
    param = _param(request, "group_case")
    return request.config.stash[_RUN].case_view(param).group(param.shift)


@pytest.hookimpl(tryfirst=True)
def pytest_pycollect_makeitem(collector: pytest.Collector, name: str, obj: object) -> Any:
    """A suite with a deploy gate gets one generated check per case: ``deploy_gate[<case id>]``."""
    if name != "suite" or not isinstance(obj, Suite) or obj.gate is None or not isinstance(collector, pytest.Module):
        return None
    from .pytest_gate import gate_items

    return gate_items(collector, obj)


@pytest.hookimpl(wrapper=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> Any:
    """A number that does not exist for a case (prune potential of a single pruned network) skips the check."""
    try:
        return (yield)
    except NotApplicable as exc:
        raise pytest.skip.Exception(str(exc), _use_item_location=True) from None


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        callspec = getattr(item, "callspec", None)
        if callspec is None:
            continue
        for name in _CASE_FIXTURES:
            param = callspec.params.get(name)
            if isinstance(param, CaseParam):
                # carried on every report, so the verdict can be made where reports arrive (xdist's controller)
                item.user_properties += [("robustprune_suite", param.suite_file), ("robustprune_case", param.case_id)]
                # with `-n N --dist loadgroup`, all checks of a case go to one worker
                item.add_marker(pytest.mark.xdist_group(param.case_id))
                break


def pytest_collection_finish(session: pytest.Session) -> None:
    """With a remote executor, send the collected cases' work out before the checks run."""
    config = session.config
    if config.getoption("rp_executor") == "local" or getattr(config, "workerinput", None) is not None:
        return
    state: RunState = config.stash[_RUN]
    from .engine import CaseKey
    from .executors import make_executor

    executor = make_executor(config.getoption("rp_executor"), config.getoption("rp_ray_address"))
    wanted: dict[str, dict[str, Any]] = {}
    for item in session.items:
        props = dict(item.user_properties)
        if "robustprune_case" in props:
            param = getattr(item, "param", None)  # a generated deploy_gate check carries its own
            if not isinstance(param, CaseParam):
                callspec = item.callspec  # type: ignore[attr-defined]
                param = next(p for p in callspec.params.values() if isinstance(p, CaseParam))
            wanted.setdefault(param.suite_file, {})[param.case_id] = CaseKey(param.method, param.model, param.dataset)
    for suite_file, cases in wanted.items():
        try:
            executor.prefetch(state.jobs[suite_file], list(cases.values()), state.progress)
        except RuntimeError as exc:
            raise pytest.UsageError(str(exc)) from exc


def pytest_sessionfinish(session: pytest.Session) -> None:
    state: RunState = session.config.stash[_RUN]
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None and state.engines:  # an xdist worker: send our part to the controller
        from .report import build_report

        workeroutput["robustprune_reports"] = json.dumps(
            [build_report(engine, file) for file, engine in state.engines.items()]
        )
    if workeroutput is None and session.config.getoption("rp_export"):
        from .pytest_gate import run_exports

        state.export_lines = run_exports(session, state)


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    state: RunState = config.stash[_RUN]
    from .report import apply_verdicts, build_report, merge_reports, render_text, write_report

    parts = [build_report(engine, file) for file, engine in state.engines.items()] + state.worker_reports
    reports = [apply_verdicts(r, state.outcomes) for r in merge_reports(parts)]
    if not reports:
        return
    terminalreporter.write_sep("=", "robustprune report")
    for report in reports:
        terminalreporter.write_line(render_text(report))
    folder = config.getoption("rp_report")
    if folder:
        for path in write_report(reports, Path(folder)):
            terminalreporter.write_line(f"report written to {path}")
    if state.export_lines:
        terminalreporter.write_sep("=", "robustprune export")
        for line in state.export_lines:
            terminalreporter.write_line(line)
