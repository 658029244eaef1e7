"""The report written to disk: ``robustprune-report.json``, ``.md``, ``.csv`` (tidy) and figures.

Files are written atomically (a temporary file renamed into place), so a
reader never sees half a report, with the permissions the umask gives any
new file (a shared report folder stays shared).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ..core.datasource import new_file_mode
from .build import REPORT_VERSION
from .tables import render_text
from .tidy import tidy_csv

__all__ = ["append_summary", "write_figures_or_hint", "write_report"]


def _write_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, new_file_mode())  # mkstemp makes 0600
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_report(reports: Iterable[dict[str, Any]], folder: Path, figures: bool = True) -> list[Path]:
    """Write ``robustprune-report.json`` (every curve point, achieved ratios, store keys; its schema is
    :func:`robustprune.report.tidy.report_schema`), ``.md``, ``.csv`` (one row per accuracy, for pandas) and,
    with matplotlib installed, the figures into ``figures/`` (linked from the Markdown)."""
    reports = list(reports)
    folder.mkdir(parents=True, exist_ok=True)
    json_path, md_path = folder / "robustprune-report.json", folder / "robustprune-report.md"
    csv_path = folder / "robustprune-report.csv"
    _write_atomic(json_path, json.dumps({"version": REPORT_VERSION, "suites": reports}, indent=1))
    _write_atomic(csv_path, tidy_csv(reports))
    drawn, hint = write_figures_or_hint(reports, folder / "figures") if figures else ([], None)
    links = [f"![{p.stem}](figures/{p.name})" for p in drawn] + ([f"(no figures: {hint})"] if hint else [])
    markdown = "\n\n".join(render_text(r, "github") for r in reports)
    if links:
        markdown += "\n\n## Figures\n\n" + "\n\n".join(links)
    _write_atomic(md_path, "# robustprune report\n\n" + markdown + "\n")
    return [json_path, md_path, csv_path, *drawn]


def append_summary(reports: Iterable[dict[str, Any]], path: Path, figures: Iterable[Path] = ()) -> None:
    """Append the report as Markdown to ``path`` (GitHub's ``$GITHUB_STEP_SUMMARY``: the run's page shows it).
    A summary cannot show the figures: they are named, with a link to the run's artifacts when run on GitHub."""
    markdown = "\n\n".join(render_text(r, "github") for r in reports)
    names = [p.name for p in figures]
    if names:
        server, repo, run = (os.environ.get(k) for k in ("GITHUB_SERVER_URL", "GITHUB_REPOSITORY", "GITHUB_RUN_ID"))
        where = (f"[the run's artifacts]({server}/{repo}/actions/runs/{run}#artifacts)" if server and repo and run
                 else "the report folder")
        markdown += f"\n\nFigures ({', '.join(names)}): in {where}."
    with path.open("a") as f:
        f.write("# robustprune report\n\n" + markdown + "\n")


def write_figures_or_hint(reports: Iterable[Mapping[str, Any]], folder: Path) -> tuple[list[Path], str | None]:
    """Write the figures into ``folder``; without matplotlib, write none and say how to get them."""
    try:
        from .figures import write_figures

        return write_figures(list(reports), folder), None
    except ImportError as exc:
        return [], str(exc)
