"""``--rp-export DIR``: checked before anything runs, done where the verdicts are known.

The export itself (what is written, how it is verified) is
:mod:`robustprune.engine.export`'s; this module decides when and for which
cases, from the session's verdicts.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from ..core.results import CaseKey
from ..core.suite import Suite
from ..engine.export import ExportError, case_folder, check_export_dir, export_case, remove_earlier_exports
from ..report.build import deployable
from .preflight import environment_error
from .session import RunState

if TYPE_CHECKING:  # pragma: no cover
    from ..engine.engine import Engine

__all__ = ["check_export_option", "run_exports"]


def check_export_option(config: pytest.Config) -> None:
    """``--rp-export DIR`` must be writable before anything runs (an environment error otherwise)."""
    folder = config.getoption("rp_export", None)
    if not folder or getattr(config, "workerinput", None) is not None:
        return
    try:
        check_export_dir(Path(folder))
    except ExportError as exc:
        environment_error(f"--export: {exc}; nothing was run")


def run_exports(session: pytest.Session, state: RunState) -> list[str]:
    """Export every deployable case (see :mod:`robustprune.engine.export`); returns the lines to print.

    Runs where the verdicts are known: in the only process, or in xdist's
    controller, which rebuilds each suite's engine to read the networks from the
    store (nothing is recomputed: the workers stored everything). Earlier
    exports of this session's suites that were not exported again are removed,
    so the folder only ever holds networks that passed in this run.
    """
    root = Path(session.config.getoption("rp_export")).expanduser().resolve()
    reports = state.final_reports()
    suites = {*state.engines, *(r["suite"] for r in reports)}
    lines: list[str] = []
    exported_folders: set[Path] = set()
    not_exported: set[Path] = set()  # where a case of this run would have gone: no older export may sit there
    failed = False
    stopped = session.shouldstop or session.shouldfail
    if stopped or session.exitstatus in (pytest.ExitCode.INTERRUPTED, pytest.ExitCode.INTERNAL_ERROR):
        # a case whose remaining checks never ran is not known to pass: export nothing rather than guess
        why = stopped if isinstance(stopped, str) else f"exit status {int(session.exitstatus)}"
        lines.append(f"nothing exported: the session stopped early ({why}); every selected check must run")
        reports = []
    several = len(reports) > 1
    for report in reports:
        suite_file = report["suite"]
        for table in report["tables"]:
            for row in table["rows"]:
                folder = case_folder(root, row["case"], suite_file if several else None)
                if "error" in row or not deployable(row):
                    gate = row.get("gate")
                    reason = gate["summary"] if gate and not gate["passed"] else f"verdict {row['verdict']}"
                    lines.append(f"not exported: {row['case']} ({reason})")
                    not_exported.add(folder)
                    continue
                key = CaseKey(row["method"], table["model"], table["dataset"])
                try:
                    engine = state.engines.get(suite_file) or _rebuild_engine(state, suite_file)
                    exported = export_case(engine, key, folder, suite_file=suite_file, gate=row.get("gate"))
                except Exception as exc:  # noqa: BLE001 - reported, and the session fails
                    failed = True
                    lines.append(f"export of {row['case']} FAILED: {type(exc).__name__}: {exc}")
                    not_exported.add(folder)
                    continue
                exported_folders.add(exported.folder)
                names = ", ".join(p.name for p in exported.files)
                lines.append(f"exported {row['case']} to {exported.folder} ({names})"
                             + (f"; {exported.note}" if exported.note else ""))
    for folder, case_id in remove_earlier_exports(root, suites, keep=exported_folders, occupied=not_exported):
        lines.append(f"removed the earlier export {folder}: {case_id} was not exported in this run")
    if failed and session.exitstatus == 0:
        # the gate passed but the artifact a deployment needs is missing: the job must not look green
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    return lines


def _rebuild_engine(state: RunState, suite_file: str) -> Engine:
    """The engine of a suite this process did not run (xdist's controller): import the suite module for its Suite."""
    path = Path(suite_file)
    spec = importlib.util.spec_from_file_location(f"_robustprune_export_{abs(hash(suite_file))}", path)
    if spec is None or spec.loader is None:
        raise RuntimeError(f"cannot import suite {suite_file}")
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(path.parent))  # suites may import their neighbours, as under pytest
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(path.parent))
    suite = getattr(module, "suite", None)
    if not isinstance(suite, Suite):
        raise RuntimeError(f"suite {suite_file} has no top-level `suite = Suite(...)`")
    return state.engine_for(suite_file, suite)
