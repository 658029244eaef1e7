"""Repeats end to end, as a user meets them: raising repeats trains only the new ones, a warm run starts no
worker, and a run under another CPU instruction set recomputes everything and agrees within its intervals."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from suite_runner import run, write_suite

pytestmark = pytest.mark.slow


def work_log(store: Path) -> list[tuple[str, str, str]]:
    """(kind, key, what) of every computation in the store's work log, in order."""
    lines = (store / "work.log").read_text().splitlines() if (store / "work.log").exists() else []
    return [(parts[2], parts[3], " ".join(parts[4:])) for parts in (line.split() for line in lines)]


def test_raising_repeats_trains_only_the_new_ones_and_a_warm_run_starts_no_worker(tmp_path):
    write_suite(tmp_path, fields="repeats=1, bootstrap=100,")
    first = run(["-m", "pytest", "suite_tiny.py", "--rp-store=store", "--rp-workers=2"], cwd=tmp_path)
    assert first.returncode == 0, first.stdout[-3000:]
    before = work_log(tmp_path / "store")

    write_suite(tmp_path, fields="repeats=2, bootstrap=100,")
    second = run(["-m", "pytest", "suite_tiny.py", "--rp-store=store", "--rp-workers=2"], cwd=tmp_path)
    assert second.returncode == 0, second.stdout[-3000:]
    added = work_log(tmp_path / "store")[len(before):]
    networks = [what for kind, _, what in added if kind == "network"]
    # one new parent (seed 1) and its cascade of two ratios; nothing of the first repeat again
    assert len([w for w in networks if w.startswith("parent")]) == 1, networks
    assert len([w for w in networks if "repeat 2/2" in w]) == 2, networks
    assert not {key for _, key, _ in added} & {key for _, key, _ in before}
    assert "2 worker processes: 1 parents, 1 cascades, 0 measures" in second.stdout

    third = run(["-m", "pytest", "suite_tiny.py", "--rp-store=store", "--rp-workers=2"], cwd=tmp_path)
    assert third.returncode == 0, third.stdout[-3000:]
    assert work_log(tmp_path / "store") == before + added  # nothing computed
    assert "worker processes" not in third.stdout  # everything was read: no pool started
    assert "numbers are means over 2 repeats" in third.stdout


def _capability(env: dict[str, str]) -> str:
    code = "import torch; print(torch.backends.cpu.get_cpu_capability())"
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          check=True).stdout.strip()


def _estimates(report: Path) -> dict[str, dict]:
    data = json.loads((report / "robustprune-report.json").read_text())
    return {case["id"]: case["estimates"] for suite in data["suites"] for case in suite["cases"]}


def test_another_instruction_set_recomputes_and_agrees_within_the_intervals(tmp_path):
    """The issue's experiment on a tiny suite: the default CPU capability and another one (AVX2, or no
    vectorization where AVX2 is the default) give different store keys, the same verdicts, and means that
    each lie inside the other run's interval."""
    base = {k: v for k, v in os.environ.items() if k != "ATEN_CPU_CAPABILITY"}
    default = _capability(base)
    other = "default" if default == "AVX2" else "avx2"
    if _capability({**base, "ATEN_CPU_CAPABILITY": other}) == default:
        pytest.skip(f"this CPU dispatches to {default} whatever ATEN_CPU_CAPABILITY says (no second instruction set)")

    write_suite(tmp_path, shifts=("contrast@3", "uniform_noise@0.2"),
                fields="repeats=3, noise_draws=2, bootstrap=400,")
    runs = {}
    for name, env in (("default", {}), ("other", {"ATEN_CPU_CAPABILITY": other})):
        result = run(["-m", "pytest", "suite_tiny.py", "-v", "--rp-store=store", f"--rp-report=report-{name}"],
                     cwd=tmp_path, env=env)
        assert result.returncode == 0, result.stdout[-3000:]
        runs[name] = result
    log = work_log(tmp_path / "store")
    parents = [what for kind, _, what in log if kind == "network" and what.startswith("parent")]
    assert len(parents) == 6, parents  # three per run: the second run reused none of the first run's
    assert f"CPU capability {_capability({**base, 'ATEN_CPU_CAPABILITY': other})}" in runs["other"].stdout

    def verdicts(stdout: str) -> dict[str, str]:
        return dict(re.findall(r"::(test_\w+\[[^\]]+\]) (PASSED|FAILED|SKIPPED)", stdout))

    assert verdicts(runs["default"].stdout) and verdicts(runs["default"].stdout) == verdicts(runs["other"].stdout)

    mine, theirs = _estimates(tmp_path / "report-default"), _estimates(tmp_path / "report-other")
    compared = 0
    for case, estimates in mine.items():
        pairs = []
        for kind in ("prune_potential", "parent_accuracy"):
            pairs += [(estimates[kind][s], theirs[case][kind][s]) for s in estimates[kind]]
        for entry, group in estimates["group_prune_potential"].items():
            pairs += [(group[k], theirs[case]["group_prune_potential"][entry][k]) for k in ("mean", "min")]
        for kind in ("accuracy", "group_delta_excess_error"):  # one estimate per ratio
            for label, per_ratio in estimates[kind].items():
                pairs += list(zip(per_ratio, theirs[case][kind][label]))
        for one, two in pairs:
            for a, b in ((one, two), (two, one)):
                low, high = b["interval"]
                assert low - 1e-9 <= a["mean"] <= high + 1e-9, (case, a, b)
            compared += 1
    assert compared >= 20
