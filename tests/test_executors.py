"""One suite, four ways to run it: serially, in worker processes (the default), with pytest-xdist, and on Ray.

Each run gets its own store; the tables (and the JSON report's numbers) must
be identical and no piece of work may be computed twice (the store's
work.log lists every computation). The suite has two repeats, so the worker
pool gets independent parents and cascades to spread.
"""

from __future__ import annotations

import collections
import json
import re
from pathlib import Path

import pytest
from suite_runner import run, write_suite

pytestmark = pytest.mark.slow


def report_table(stdout: str) -> list[str]:
    """The report's lines, up to pytest's next section line.

    The runs print the full-width table (``--rp-width=0``): one line per method. A structured row's speed-ups
    (batch 1 and 64) are CPU latencies measured in each store (cached by network and machine):
    independent stores measure them independently, so those two cells are masked (and the padding the
    columns get from them); the store line names each run's
    own store, so it is left out; everything else must match.
    """
    lines = stdout[stdout.index("robustprune report"):].splitlines()[1:]
    end = next(i for i, line in enumerate(lines) if line.startswith("="))
    verdict = r"(pass|FAIL \(.*\)|error|skipped|not checked)"
    speedup = r"\d+\.\d\dx (\(\d+\.\d\d-\d+\.\d\d\)|within noise)"
    # measured cells differ in width too: columns are compared with their padding collapsed
    table = [re.sub(r"\s+", " ", re.sub(rf"{speedup}(\s+){speedup}(\s+){verdict}$", r"<measured> <measured> \5",
                                        line))
             for line in lines[:end]
             if line.strip() and not line.startswith(("report written to", "figures written to", "store: "))
             and set(line) != {"-", " "}]  # the rule under the header: as wide as the columns
    assert any(line.startswith("wt ") for line in table) and any(line.startswith("ft ") for line in table)
    return table


def computed_keys(store: Path) -> list[str]:
    return [line.split()[3] for line in (store / "work.log").read_text().splitlines()]


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("executors")
    write_suite(folder, methods=("wt", "ft"), shifts=("contrast@3", "uniform_noise@0.2"),
                fields="repeats=2, noise_draws=2, bootstrap=200,")
    return folder


@pytest.fixture(scope="module")
def serial(folder):
    result = run(["-m", "pytest", "suite_tiny.py", "--rp-width=0", "--rp-store=serial", "--rp-executor=local",
                  "--rp-report=serial-report"], cwd=folder)
    assert result.returncode == 0, result.stdout[-3000:]
    return result


def numbers(report: Path) -> dict:
    """The JSON report without what measures time (case seconds, latencies and speed-ups) or names the run's
    own store."""
    data = json.loads((report / "robustprune-report.json").read_text())

    def strip(value):
        if isinstance(value, dict):
            left_out = ("seconds", "latency", "speedup", "timing", "speedups", "suite", "store")
            return {k: strip(v) for k, v in value.items() if k not in left_out}
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value

    return strip(data)


def test_worker_processes_match_serial_to_the_bit_and_repeat_nothing(folder, serial):
    result = run(["-m", "pytest", "suite_tiny.py", "--rp-width=0", "--rp-store=process", "--rp-workers=2",
                  "--rp-report=process-report"], cwd=folder)
    assert result.returncode == 0, result.stdout[-3000:]
    assert "2 worker processes: 2 parents, 4 cascades, 0 measures" in result.stdout
    assert "[wt-small_cnn-digits] ratio 0.3 (1/2) repeat 2/2: pruning" in result.stdout  # progress from a worker
    assert report_table(result.stdout) == report_table(serial.stdout)
    assert numbers(folder / "process-report") == numbers(folder / "serial-report")
    assert sorted(computed_keys(folder / "process")) == sorted(computed_keys(folder / "serial"))


def test_serial_run_computes_each_piece_once(folder, serial):
    keys = computed_keys(folder / "serial")
    assert keys and not [k for k, n in collections.Counter(keys).items() if n > 1]
    log = (folder / "serial" / "work.log").read_text()
    # one parent per repeat, shared by both methods
    assert log.count(" parent small_cnn-digits\n") == 1 and log.count(" parent small_cnn-digits-seed1\n") == 1


def test_xdist_matches_serial_and_repeats_nothing(folder, serial):
    result = run(["-m", "pytest", "suite_tiny.py", "--rp-width=0", "--rp-store=xdist", "-n", "2", "--dist", "load"],
                 cwd=folder)
    assert result.returncode == 0, result.stdout[-3000:]
    assert report_table(result.stdout) == report_table(serial.stdout)
    keys = computed_keys(folder / "xdist")
    assert sorted(keys) == sorted(computed_keys(folder / "serial"))  # same work, none of it twice


def test_ray_matches_serial_and_repeats_nothing(folder, serial):
    pytest.importorskip("ray")
    result = run(["-m", "pytest", "suite_tiny.py", "--rp-width=0", "--rp-store=ray", "--rp-executor=ray"], cwd=folder,
                 env={"RAY_ADDRESS": "", "RAY_USAGE_STATS_ENABLED": "0"})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert re.search(r"ray: \d+ CPUs, 2 parents, 4 cascades, 0 measures", result.stdout)
    assert report_table(result.stdout) == report_table(serial.stdout)
    keys = computed_keys(folder / "ray")
    assert sorted(keys) == sorted(computed_keys(folder / "serial"))
