"""One suite, three ways to run it: serially, with pytest-xdist, and on a local Ray instance.

Each run gets its own store; the tables must be identical and no piece of
work may be computed twice (the store's work.log lists every computation).
"""

from __future__ import annotations

import collections
import re
from pathlib import Path

import pytest
from suite_runner import run, write_suite

pytestmark = pytest.mark.slow


def report_table(stdout: str) -> list[str]:
    """The report's lines, up to pytest's next section line.

    A structured row's speed-up is a CPU latency measured in each store (cached by network and machine):
    independent stores measure it independently, so that one cell is masked; everything else must match.
    """
    lines = stdout[stdout.index("robustprune report"):].splitlines()[1:]
    end = next(i for i, line in enumerate(lines) if line.startswith("="))
    verdict = r"(pass|FAIL \(.*\)|error|skipped|not checked)"
    table = [re.sub(rf"\d+\.\d\dx(\s+){verdict}$", r"<measured>\1\2", line) for line in lines[:end] if line.strip()]
    assert any(line.startswith("wt ") for line in table) and any(line.startswith("ft ") for line in table)
    return table


def computed_keys(store: Path) -> list[str]:
    return [line.split()[3] for line in (store / "work.log").read_text().splitlines()]


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("executors")
    write_suite(folder, methods=("wt", "ft"), shifts=("contrast@3", "uniform_noise@0.2"))
    return folder


@pytest.fixture(scope="module")
def serial(folder):
    result = run(["-m", "pytest", "suite_tiny.py", "--rp-store=serial"], cwd=folder)
    assert result.returncode == 0, result.stdout[-3000:]
    return result


def test_serial_run_computes_each_piece_once(folder, serial):
    keys = computed_keys(folder / "serial")
    assert keys and not [k for k, n in collections.Counter(keys).items() if n > 1]
    log = (folder / "serial" / "work.log").read_text()
    assert log.count(" parent small_cnn-digits") == 1  # one parent shared by both methods


def test_xdist_matches_serial_and_repeats_nothing(folder, serial):
    result = run(["-m", "pytest", "suite_tiny.py", "--rp-store=xdist", "-n", "2", "--dist", "load"], cwd=folder)
    assert result.returncode == 0, result.stdout[-3000:]
    assert report_table(result.stdout) == report_table(serial.stdout)
    keys = computed_keys(folder / "xdist")
    assert sorted(keys) == sorted(computed_keys(folder / "serial"))  # same work, none of it twice


def test_ray_matches_serial_and_repeats_nothing(folder, serial):
    pytest.importorskip("ray")
    result = run(["-m", "pytest", "suite_tiny.py", "--rp-store=ray", "--rp-executor=ray"], cwd=folder,
                 env={"RAY_ADDRESS": "", "RAY_USAGE_STATS_ENABLED": "0"})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "ray: training 1 parent(s)" in result.stdout
    assert report_table(result.stdout) == report_table(serial.stdout)
    keys = computed_keys(folder / "ray")
    assert sorted(keys) == sorted(computed_keys(folder / "serial"))
