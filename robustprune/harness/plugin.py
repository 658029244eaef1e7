"""The pytest plugin (``pytest11`` entry point): parametrizes suite checks, shares the heavy work, reports.

A suite module declares ``suite = Suite(...)``; its test functions take
``case``, ``shift_case`` or ``group_case`` and are parametrized over the grid
(ids like ``wt-small_cnn-digits-contrast@3``). The engine runs each case once
per session, on first use, and every check of the case reads the same curves.

This module loads in every pytest run of an environment where robustprune is
installed, so it imports no torch; the engine is built when the first suite
is collected.
"""

from __future__ import annotations

import json
from collections.abc import Generator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from ..core.cases import Case, GroupCase, Measure, NotApplicable, ShiftCase
from ..core.machine import available_cores
from ..core.results import CaseKey, StoreError
from ..core.suite import Suite
from ..engine.executors import ExecutorUnavailable, make_executor
from ..plugin.errors import DataFileError, MissingDependencyError
from ..report.files import append_summary, write_report
from ..report.tables import render_text, terminal_width
from .exitcodes import ExitStatus
from .exports import check_export_option, run_exports
from .gate_items import DeployGateItem, gate_items
from .options import add_options
from .preflight import (
    SELECT_KEYS,
    check_options,
    configuration_error,
    environment_error,
    parse_selectors,
    store_and_plugin_problem,
    warn_if_disk_short,
)
from .session import CaseParam, RunState, count_case_checks, mark_case_item, run_state

if TYPE_CHECKING:  # the engine imports torch: not at pytest start
    from ..engine.engine import Engine, WorkPlan

CASE_FIXTURES = ("case", "shift_case", "group_case")


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser)


def pytest_configure(config: pytest.Config) -> None:
    # checks carry xdist_group marks (for --dist loadgroup); declared here too for runs without xdist
    config.addinivalue_line("markers", "xdist_group(name): run all checks of one case on one xdist worker")
    if getattr(config, "workerinput", None) is None:  # the controller checks once, for every xdist worker
        check_options(config)  # options, device, folders, plugin names: one message each, before any work
        check_export_option(config)
        if getattr(config.option, "numprocesses", None):
            # an xdist controller collects nothing, and its workers leave the store to it: check it now
            # (without creating anything, so a session without suites is not changed by it)
            problem = store_and_plugin_problem(config)
            if problem is not None:
                status, message = problem
                pytest.exit(message, returncode=int(status))
    RunState.start(config)


def pytest_unconfigure(config: pytest.Config) -> None:
    RunState.stop(config)


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


# --------------------------------------------------------------------------- collection


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    wanted = [name for name in CASE_FIXTURES if name in metafunc.fixturenames]
    if not wanted:
        return
    suite = getattr(metafunc.module, "suite", None)
    if not isinstance(suite, Suite):
        return  # the fixture explains the problem at setup
    module_file = str(metafunc.module.__file__)
    engine = run_state(metafunc.config).engine_for_collection(module_file, suite)
    for name in wanted:
        params: list[CaseParam] = []
        for key in engine.cases():
            if name == "case":
                params.append(CaseParam(module_file, key))
            elif name == "shift_case":
                params += [CaseParam(module_file, key, shift.label) for shift in engine.shifts if not shift.is_nominal]
            else:
                params += [CaseParam(module_file, key, entry.label) for entry in engine.shift_entries]
        metafunc.parametrize(name, params, ids=[repr(p) for p in params], indirect=True)


@pytest.hookimpl(tryfirst=True)
def pytest_pycollect_makeitem(collector: pytest.Collector, name: str, obj: object) -> Any:
    """A suite with a deploy gate gets one generated check per case: ``deploy_gate[<case id>]``."""
    if name != "suite" or not isinstance(obj, Suite) or obj.gate is None or not isinstance(collector, pytest.Module):
        return None
    return gate_items(collector, obj)


@pytest.hookimpl(tryfirst=True)  # before -k and -m deselect: every check of a case is counted
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        param = _case_param(item)
        if param is not None and not isinstance(item, DeployGateItem):  # a generated gate check marks itself
            mark_case_item(item, param)
    count_case_checks(items)
    selectors = config.getoption("rp_select") or []
    if selectors:
        _select(config, items, selectors)


def _select(config: pytest.Config, items: list[pytest.Item], texts: list[str]) -> None:
    """Deselect the checks whose case does not match every ``--select`` key (after the checks were counted, so a
    case left with some of its checks reads "incomplete", as with -k)."""
    wanted = parse_selectors(texts)
    state = run_state(config)
    seen: dict[str, set[str]] = {key: set() for key in SELECT_KEYS}  # every value the collected checks have

    def values(param: CaseParam) -> dict[str, set[str]]:
        shifts: set[str] = set()
        if param.shift is not None:
            engine = state.engines.get(param.suite_file)
            entry = next((e for e in engine.shift_entries if e.label == param.shift), None) if engine else None
            shifts = {param.shift, *(m.label for m in entry.members)} if entry is not None else {param.shift}
        return {"method": {param.key.method}, "model": {param.key.model}, "dataset": {param.key.dataset},
                "shift": shifts}

    keep: list[pytest.Item] = []
    drop: list[pytest.Item] = []
    for item in items:
        param = _case_param(item)
        if param is None:
            keep.append(item)  # not a suite check: --select leaves the project's own tests alone
            continue
        have = values(param)
        for key, found in have.items():
            seen[key] |= found
        (keep if all(have[key] & names for key, names in wanted.items()) else drop).append(item)
    for key, names in wanted.items():
        unknown = sorted(names - seen[key])
        if unknown and getattr(config, "workerinput", None) is None:  # an xdist worker may see a part only
            configuration_error(f"--select {key}={unknown[0]}: no collected check has that {key}; the suites' "
                                f"{key}s: {', '.join(sorted(seen[key])) or '(none)'}")
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


def _case_param(item: pytest.Item) -> CaseParam | None:
    """The case a check belongs to: its own (a generated gate check) or its parametrized fixture's."""
    own = getattr(item, "param", None)
    if isinstance(own, CaseParam):
        return own
    callspec = getattr(item, "callspec", None)
    if callspec is None:
        return None
    return next((p for name in CASE_FIXTURES if isinstance(p := callspec.params.get(name), CaseParam)), None)


def pytest_collection_finish(session: pytest.Session) -> None:
    """Before the checks run: find the collected cases' work the store lacks, warn when the disk looks too small
    for it, stop when the store is read-only; with the process or ray executor, send the work out."""
    config = session.config
    if getattr(config, "workerinput", None) is not None:
        return  # under pytest-xdist every worker is a process already: each computes what its checks need
    if config.option.collectonly:
        return  # --collect-only lists the checks: nothing is computed
    state = run_state(config)
    executor = make_executor(config.getoption("rp_executor"), config.getoption("rp_workers") or available_cores(),
                             config.getoption("rp_ray_address"))
    wanted: dict[str, dict[str, CaseKey]] = {}
    for item in session.items:
        param = _case_param(item)
        if param is not None:
            wanted.setdefault(param.suite_file, {})[param.case_id] = param.key
    for suite_file, cases in wanted.items():
        engine = state.engines[suite_file]
        missing = engine.work_plan(list(cases.values()))  # what it reads is kept: the checks read it again
        count = len(missing.parents) + len(missing.repeats) + len(missing.measures)
        if count:
            try:
                engine.check_shifts_ready(list(cases.values()))
            except (DataFileError, MissingDependencyError) as exc:
                environment_error(str(exc))
            except Exception:  # noqa: BLE001 - a plugin failing here fails its checks, which say so
                pass
            planned = _planned_bytes(engine, list(cases.values()), missing)
            if planned is not None:
                warn_if_disk_short(engine.options.store.root, planned)
            if engine.options.store.read_only:
                environment_error(
                    f"the store {engine.options.store.root} is read-only and lacks {count} piece(s) of work of "
                    f"{Path(suite_file).name} (parents, cascades, measures); make it writable, or run with "
                    "--store pointing at a writable folder (a copy of it)")
        if config.getoption("rp_executor") == "local":
            continue  # each case is computed when a check first needs it
        try:
            executor.prefetch(state.jobs[suite_file], engine, list(cases.values()), state.progress, missing)
        except (StoreError, DataFileError, MissingDependencyError) as exc:
            environment_error(str(exc))
        except ExecutorUnavailable as exc:  # Ray missing, say
            configuration_error(str(exc))
        except Exception as exc:  # noqa: BLE001 - a plugin failing in shifted-set generation, say: the checks
            # that need what failed compute it themselves and report the failure, the others run
            state.progress(f"could not compute ahead in worker processes ({type(exc).__name__}: {exc}); each "
                           "check computes what it needs")


def _planned_bytes(engine: Engine, cases: list[CaseKey], plan: WorkPlan) -> int | None:
    """What the plan will store, for the disk check; ``None`` when a plugin fails while it is estimated (its
    checks report that failure). Data files that are missing or broken, and libraries a shift needs that are
    missing, stop the run here, once."""
    try:
        return engine.planned_bytes(cases, plan)
    except (DataFileError, MissingDependencyError) as exc:
        environment_error(str(exc))
    except Exception:  # noqa: BLE001 - a model or dataset plugin that raises: the checks meet it and say so
        return None


# --------------------------------------------------------------------------- fixtures


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
    return run_state(request.config).case_view(_param(request, "case"))


@pytest.fixture
def shift_case(request: pytest.FixtureRequest) -> ShiftCase:
    """One case under one concrete shift of the suite (every member of every group)."""
    param = _param(request, "shift_case")
    assert param.shift is not None
    return run_state(request.config).case_view(param).shift(param.shift)


@pytest.fixture
def group_case(request: pytest.FixtureRequest) -> GroupCase:
    """One case over one entry of the suite's shifts (a group such as corruptions@3, or a single shift)."""
    param = _param(request, "group_case")
    assert param.shift is not None
    return run_state(request.config).case_view(param).group(param.shift)


@pytest.hookimpl(wrapper=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> Generator[None, object, object]:
    """A number that does not exist for a case (prune potential of a single pruned network) skips the check."""
    try:
        return (yield)
    except NotApplicable as exc:
        raise pytest.skip.Exception(str(exc), _use_item_location=True) from None


# --------------------------------------------------------------------------- the end of the session


def pytest_sessionfinish(session: pytest.Session) -> None:
    state = run_state(session.config)
    if state.interrupted:  # Ctrl-C: "interrupted" (130), not pytest's 2, which means a suite that did not collect
        session.exitstatus = int(ExitStatus.INTERRUPTED)
    elif state.stop_status is not None:  # the store (say) failed its check while the first suite was collected
        session.exitstatus = int(state.stop_status)
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None and state.engines:  # an xdist worker: send our part to the controller
        workeroutput["robustprune_reports"] = json.dumps(state.report_parts())
    if workeroutput is None and session.config.getoption("rp_export"):
        state.export_lines = run_exports(session, state)


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    if getattr(config, "workerinput", None) is not None:
        return  # an xdist worker: the controller prints and writes the merged report
    state = run_state(config)
    reports = state.final_reports()
    if not reports:
        return
    terminalreporter.write_sep("=", "robustprune report")
    width = terminal_width(config.getoption("rp_width"), bool(getattr(terminalreporter, "isatty", False)))
    for report in reports:
        terminalreporter.write_line(render_text(report, width=width))
    folder = config.getoption("rp_report")
    written: list[Path] = []
    if folder:
        written = write_report(reports, Path(folder))
        for path in written:
            terminalreporter.write_line(f"report written to {path}")
    summary = config.getoption("rp_summary")
    if summary:
        try:
            append_summary(reports, Path(summary).expanduser(), [p for p in written if p.suffix == ".png"])
            terminalreporter.write_line(f"report appended to {summary}")
        except OSError as exc:  # the checks ran: say it, do not turn the run into an internal error
            terminalreporter.write_line(f"robustprune: --summary {summary} could not be written: "
                                        f"{exc.strerror or exc}")
    if state.export_lines:
        terminalreporter.write_sep("=", "robustprune export")
        for line in state.export_lines:
            terminalreporter.write_line(line)
