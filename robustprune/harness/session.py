"""One pytest session's robustprune state: an engine per suite module, and the outcome of every check.

The engines are built from :class:`~robustprune.engine.factory.EngineJob`\\ s
when a suite is first collected; each check asks for its case's view; each
check's report is recorded for its case, in the process that runs it and in
pytest-xdist's controller alike, so the report's verdicts can be made where
all reports arrive.
"""

from __future__ import annotations

import json
import logging
import time
import traceback
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from ..core.cases import Case
from ..core.results import CaseError, CaseKey, StoreError
from ..core.suite import Suite
from ..engine.factory import EngineJob
from ..report.build import apply_verdicts, build_report, merge_reports
from . import progress as progress_display
from .exitcodes import ExitStatus
from .options import data_options, device_option, store_root, threads_option
from .preflight import store_and_plugin_problem

if TYPE_CHECKING:  # pragma: no cover
    from ..engine.engine import Engine

__all__ = ["CaseParam", "RunState", "active_config", "count_case_checks", "mark_case_item", "run_state"]

SUITE_PROPERTY = "robustprune_suite"
CASE_PROPERTY = "robustprune_case"
CHECKS_PROPERTY = "robustprune_case_checks"  # how many checks the case has in the session, deselected ones too


@dataclass(frozen=True)
class CaseParam:
    """What a parametrized check carries: which suite and which point of its grid."""

    suite_file: str
    key: CaseKey
    shift: str | None = None  # shift label (shift_case) or entry label (group_case)

    @property
    def case_id(self) -> str:
        return self.key.id

    def __repr__(self) -> str:  # the test id, and what pytest shows in some messages
        return self.key.id_under(self.shift)


def mark_case_item(item: pytest.Item, param: CaseParam) -> None:
    """Tag a check with its case: its reports carry the case (for the verdict, made where reports arrive,
    xdist's controller included), and with ``-n N --dist loadgroup`` all checks of a case go to one worker."""
    item.user_properties += [(SUITE_PROPERTY, param.suite_file), (CASE_PROPERTY, param.case_id)]
    item.add_marker(pytest.mark.xdist_group(param.case_id))


def count_case_checks(items: list[pytest.Item]) -> None:
    """Tag every check with how many checks its case has (before ``-k`` deselects any): a case whose checks did
    not all run is reported incomplete, in xdist's controller too (the count travels with the reports)."""
    counts: dict[tuple[str, str], int] = {}
    for item in items:
        case = case_of_report(item.user_properties)
        if case is not None:
            counts[case] = counts.get(case, 0) + 1
    for item in items:
        case = case_of_report(item.user_properties)
        if case is not None:
            item.user_properties.append((CHECKS_PROPERTY, counts[case]))


def case_of_report(user_properties: list[tuple[str, Any]]) -> tuple[str, str] | None:
    """The (suite file, case id) a test report belongs to, if it is a robustprune check's."""
    props = dict(user_properties)
    if CASE_PROPERTY not in props:
        return None
    return str(props[SUITE_PROPERTY]), str(props[CASE_PROPERTY])


_RUN = pytest.StashKey["RunState"]()

# The sessions running in this process (pytest.main can nest): suite-level helpers such as
# robustprune.skip_unless_data run at import time, where no fixture can hand them the options.
_ACTIVE_CONFIGS: list[pytest.Config] = []


def active_config() -> pytest.Config | None:
    """The innermost running pytest session's config, if any."""
    return _ACTIVE_CONFIGS[-1] if _ACTIVE_CONFIGS else None


def run_state(config: pytest.Config) -> RunState:
    """The session's :class:`RunState`."""
    return config.stash[_RUN]


class RunState:
    """One pytest session's engines (one per suite module) and the outcome of every check.

    Registered as a pytest plugin object by :meth:`start`, so hooks that get no
    config (``pytest_runtest_logreport``) reach the state through ``self``.
    """

    def __init__(self, config: pytest.Config):
        self.config = config
        self.engines: dict[str, Engine] = {}
        self.jobs: dict[str, EngineJob] = {}  # per suite file: what an executor needs to rebuild its engine
        self.outcomes: dict[tuple[str, str], dict[str, str]] = {}  # (suite file, case id) -> {check: outcome}
        self.totals: dict[tuple[str, str], int] = {}  # (suite file, case id) -> its checks in the session
        self.worker_reports: list[dict[str, Any]] = []  # xdist controller: parts sent by workers
        self.export_lines: list[str] = []  # what --rp-export wrote (printed in the terminal summary)
        self.interrupted = False  # Ctrl-C stopped the session
        self.stop_status: ExitStatus | None = None  # a problem found while collecting sets the exit status
        self._checked = False  # the store and the plugin modules, before the first engine
        self.started = time.monotonic()
        self.progress_handler: logging.Handler | None = None  # shows the robustprune logger's progress

    @classmethod
    def start(cls, config: pytest.Config) -> RunState:
        state = cls(config)
        config.stash[_RUN] = state
        config.pluginmanager.register(state, "robustprune-run-state")
        _ACTIVE_CONFIGS.append(config)
        return state

    @staticmethod
    def stop(config: pytest.Config) -> None:
        if config in _ACTIVE_CONFIGS:
            _ACTIVE_CONFIGS.remove(config)
        state = config.stash.get(_RUN, None)
        if state is not None:
            progress_display.uninstall(state.progress_handler)
            state.progress_handler = None

    # -------------------------------------------------------------- hooks (this object is a plugin)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """Record each check's outcome for its case (in xdist's controller too: user_properties travel): its
        worst phase, once per check."""
        case = case_of_report(report.user_properties)
        if case is None or (report.when != "call" and report.outcome == "passed"):
            return
        checks = self.outcomes.setdefault(case, {})
        if checks.get(report.nodeid) != "failed":
            checks[report.nodeid] = report.outcome
        total = dict(report.user_properties).get(CHECKS_PROPERTY)
        if total is not None:
            self.totals[case] = int(str(total))

    def pytest_keyboard_interrupt(self, excinfo: pytest.ExceptionInfo[BaseException]) -> None:
        # pytest calls this for collection errors (Session.Interrupted) and pytest.exit too: only Ctrl-C counts
        value = excinfo.value
        if isinstance(value, KeyboardInterrupt) and not isinstance(value, pytest.Session.Interrupted):
            self.interrupted = True
        if isinstance(self.progress_handler, progress_display.TerminalProgress):
            self.progress_handler.close_bar()  # pytest's own lines follow: not on the end of the bar's line

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: Any) -> None:
        """xdist controller: collect the report parts each worker sent."""
        parts = getattr(node, "workeroutput", {}).get("robustprune_reports")
        if parts:
            self.worker_reports += json.loads(parts)

    # -------------------------------------------------------------- progress

    def progress(self, message: str) -> None:
        """Long work says what it is doing: an INFO record of the ``robustprune`` logger (see
        :mod:`robustprune.harness.progress` for how it is shown)."""
        progress_display.LOGGER.info(message)

    # -------------------------------------------------------------- engines

    def job_for(self, module_file: str, suite: Suite) -> EngineJob:
        """The engine job of a suite module under this session's options."""
        opt = self.config.getoption
        data_root, download = data_options(self.config)
        if opt("rp_no_latency"):
            suite = replace(suite, latency=False)
        return EngineJob.for_suite(
            suite, module_file, str(store_root(self.config)), plugins=tuple(opt("rp_plugin")),
            disabled=tuple(opt("rp_disable")),
            device=device_option(self.config), threads=threads_option(self.config), workers=opt("rp_workers"),
            data_root=str(data_root) if data_root else None, download=download,
        )

    def engine_for(self, module_file: str, suite: Suite) -> Engine:
        """The engine of a suite module, built once per session (the store is checked before the first)."""
        if self.stop_status is not None:
            raise RuntimeError("not collected: the store or a plugin failed its check (the first suite says why)")
        if not self._checked and getattr(self.config, "workerinput", None) is None:
            problem = store_and_plugin_problem(self.config)
            if problem is not None:
                # during collection pytest turns an exit into a collection error: keep the status to set it at
                # the end (one message: the collection error's), and collect no suite
                self.stop_status, message = problem
                raise RuntimeError(message.removeprefix("robustprune: "))
            self._checked = True
        if self.progress_handler is None and not self.engines:
            # shown from the first suite on: a pytest session without suites prints nothing of robustprune's
            self.progress_handler = progress_display.install(self.config, self.started)
        if module_file not in self.engines:
            job = self.job_for(module_file, suite)
            self.engines[module_file] = job.build(self.progress)
            self.jobs[module_file] = job
        return self.engines[module_file]

    def engine_for_collection(self, module_file: str, suite: Suite) -> Engine:
        """:meth:`engine_for`, with a bad suite (unknown names, malformed shifts) as a clean collection error."""
        try:
            return self.engine_for(module_file, suite)
        except (LookupError, ValueError, RuntimeError) as exc:
            raise pytest.Collector.CollectError(f"suite {Path(module_file).name}: {exc}") from exc

    def case_view(self, param: CaseParam) -> Case:
        """The view a check of ``param`` receives; fails the check (without a traceback) if its case failed."""
        engine = self.engines[param.suite_file]
        failure = None
        try:
            engine.result(param.key)
        except StoreError as exc:  # the machine's problem, the same for every check: stop once
            pytest.exit(f"robustprune: {exc}", returncode=int(ExitStatus.ENVIRONMENT_ERROR))
        except CaseError as exc:
            failure = _describe_case_error(exc)
        if failure is not None:  # raised outside the except block: no "during handling" chain in the output
            pytest.fail(failure, pytrace=False)
        return engine.view(param.key)

    # -------------------------------------------------------------- reports

    def report_parts(self) -> list[dict[str, Any]]:
        """This process's part of the report: one per suite it ran."""
        return [build_report(engine.suite_run(), file) for file, engine in self.engines.items()]

    def final_reports(self) -> list[dict[str, Any]]:
        """Every suite's report, merged across xdist workers, with each row's verdict from its checks."""
        parts = self.report_parts() + self.worker_reports
        outcomes = {case: list(checks.values()) for case, checks in self.outcomes.items()}
        return [apply_verdicts(r, outcomes, self.totals) for r in merge_reports(parts)]


def _describe_case_error(exc: BaseException) -> str:
    message = str(exc)
    cause = exc.__cause__
    if cause is not None and not isinstance(cause, ValueError):
        # a plugin crashed: its traceback is what its author needs
        message += "\n\n" + "".join(traceback.format_exception(type(cause), cause, cause.__traceback__)[-6:])
    return message
