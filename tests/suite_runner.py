"""Shared helpers for tests that run real suites in a subprocess, as a user would."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

# A suite small enough to run in seconds on a CPU: one parent epoch, two ratios.
TINY_SUITE = """
from robustprune import Suite

suite = Suite(
    models=["small_cnn"],
    datasets=["digits"],
    methods={methods!r},
    shifts={shifts!r},
    ratios=[0.3, 0.6],
    gate_ratio=0.3,
    recipe={{"epochs": 2}},
    retrain_epochs=1,
    plugins={plugins!r},{fields}
)


def test_nominal(case):
    assert case.prune_potential() >= {nominal_gate}


def test_shift(shift_case):
    assert shift_case.delta_excess_error <= 1.0


def test_group(group_case):
    assert group_case.min_prune_potential >= 0.0
"""


def write_suite(folder: Path, name: str = "suite_tiny.py", *, methods=("wt",), shifts=("contrast@3",),
                plugins=(), nominal_gate: float = 0.0, extra: str = "", fields: str = "") -> Path:
    """``fields``: more ``Suite`` arguments, e.g. ``"repeats=2,"``; ``extra``: more module text."""
    path = folder / name
    path.write_text(
        TINY_SUITE.format(methods=list(methods), shifts=list(shifts), plugins=list(plugins),
                          nominal_gate=nominal_gate, fields=("\n    " + fields) if fields else "")
        + textwrap.dedent(extra)
    )
    return path


def run(args: list[str], cwd: Path, env: dict[str, str] | None = None,
        timeout: int = 600) -> subprocess.CompletedProcess:
    """Run ``python -m ARGS`` in a subprocess with a clean robustprune environment."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("ROBUSTPRUNE_", "PYTEST_"))}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout
    )


def run_shrunk_suite(suite_file: Path, folder: Path, fields: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run a real suite file as ``robustprune run`` would, its ``Suite`` shrunk by ``dataclasses.replace(suite,
    FIELDS)``: written into ``folder`` (as ``<name>_shrunk.py``) and run there with ``data/``, ``store/``,
    ``report/`` and ``junit.xml`` in ``folder``; ``args`` are more run options."""
    shrunk = folder / f"{suite_file.stem}_shrunk.py"
    shrunk.write_text(suite_file.read_text() + f"\nimport dataclasses\nsuite = dataclasses.replace(suite, {fields})\n")
    return run(["-m", "robustprune.cli", "run", shrunk.name, "--data", "data", "--store", "store", "--report",
                "report", "--junitxml=junit.xml", *args, "-p", "no:cacheprovider"], cwd=folder)


def skip_without_data(suite_file: Path, folder: Path) -> tuple[Path, str, str]:
    """Run a suite file under pytest with an empty data root, as a CI gate without its data would: pytest's
    "no tests collected" (exit 5, so the gate never passes silently) and nothing computed. Returns the empty
    root, pytest's output and the skip reason (from "SKIPPED" on)."""
    empty = folder / "empty"
    empty.mkdir()
    result = run(["-m", "pytest", str(suite_file), "-rs", "-p", "no:cacheprovider"], cwd=folder,
                 env={"ROBUSTPRUNE_DATA": str(empty)})
    assert result.returncode == 5, result.stdout[-3000:]
    assert not (folder / ".robustprune").exists()  # nothing was computed
    return empty, result.stdout, result.stdout[result.stdout.index("SKIPPED"):]
