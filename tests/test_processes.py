"""Worker processes die with the run (kill -9 included); Ctrl-C stops within 2 s and keeps what is finished.

Real processes and real signals, as a user's terminal or CI sends them.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from conftest import TOY_PLUGIN, TOY_SUITE_HEAD

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")]


def children_of(pid: int) -> list[int]:
    """The live (not zombie) processes whose parent is ``pid``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            state, ppid = stat.rsplit(")", 1)[1].split()[:2]
            if int(ppid) == pid and state != "Z":
                found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def wait_until(condition, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


GENERATE = """
import os, sys, time

import numpy as np

from robustprune.compute.data import ShiftJob, generate_pixel_shifts


def slow(image, param, seed):
    time.sleep(120)
    return image


images = np.zeros((200, 4, 4, 3), np.uint8)  # four chunks: the pool is used
print("started", flush=True)
generate_pixel_shifts(images, [ShiftJob("slow@1", slow, 1, list(range(200)))], 2)
"""


def kill_9_and_expect_its_children_gone(process: subprocess.Popen, what: str) -> None:
    """Wait for at least two children of ``process``, kill -9 it, and expect every child gone within 5 s."""
    assert wait_until(lambda: len(children_of(process.pid)) >= 2, 30), f"{what} never started"
    children = children_of(process.pid)
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=10)
    assert wait_until(lambda: not any(alive(c) for c in children), 5), \
        f"{what} {[c for c in children if alive(c)]} outlived the killed process"


def test_kill_9_leaves_no_worker_behind(tmp_path):
    script = tmp_path / "generate.py"
    script.write_text(GENERATE)
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None and parent.stdout.readline().strip() == "started"
        kill_9_and_expect_its_children_gone(parent, "the pool's workers")
    finally:
        if parent.poll() is None:
            parent.kill()


SLOW_PLUGIN = TOY_PLUGIN + '''

import os
import time


def quick(image, strength, seed):
    return (image * (1 - strength / 2)).astype(np.uint8)


def slow(image, strength, seed):
    if not os.environ.get("RP_TEST_FAST"):
        time.sleep(120)
    return (image * (1 - strength / 3)).astype(np.uint8)


@hookimpl
def robustprune_register_shifts(register):  # replaces the toy plugin's hook of the same name: darken again
    register(PixelShift("darken", darken, ShiftParam("strength", float, 0.0, 1.0), "scale towards black"))
    register(PixelShift("quick", quick, ShiftParam("strength", float, 0.0, 1.0), "fast"))
    register(PixelShift("slow", slow, ShiftParam("strength", float, 0.0, 1.0), "sleeps unless RP_TEST_FAST"))
'''


def test_ctrl_c_exits_within_2_s_and_a_rerun_recomputes_nothing_finished(tmp_path):
    (tmp_path / "slow_plugin.py").write_text(SLOW_PLUGIN)
    (tmp_path / "suite_slow.py").write_text(TOY_SUITE_HEAD.format(
        methods=["wt"], shifts=["darken@0.5", "quick@0.5", "slow@0.5"], plugins=["slow_plugin"], extra="")
        + textwrap.dedent("""
        def test_nominal(case):
            assert case.prune_potential() >= 0.0
        """))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ROBUSTPRUNE_", "PYTEST_", "RP_TEST"))}
    env["PYTHONUNBUFFERED"] = "1"
    command = [sys.executable, "-m", "robustprune.cli", "run", "suite_slow.py", "--store", "store", "--workers", "2",
               "-p", "no:cacheprovider"]
    # a session of its own: Ctrl-C in a terminal reaches the whole process group, workers included
    run = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True, start_new_session=True)
    lines = []
    try:
        assert run.stdout is not None
        for line in run.stdout:
            lines.append(line)
            if "shifted sets 2/3" in line:
                break
        else:
            pytest.fail("".join(lines[-30:]))
        workers = children_of(run.pid)
        pressed = time.monotonic()
        os.killpg(run.pid, signal.SIGINT)
        lines += run.stdout.readlines()
        status = run.wait(timeout=30)
        seconds = time.monotonic() - pressed
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
    output = "".join(lines)
    assert status == 130, output[-3000:]
    assert seconds < 2, f"Ctrl-C took {seconds:.1f} s to exit"
    assert not any(alive(w) for w in workers)
    log = (tmp_path / "store" / "work.log").read_text()
    finished = sorted(line.split()[-1] for line in log.splitlines() if " shifted " in line)
    assert finished == ["darken@0.5", "quick@0.5"]  # the two that were done are stored

    rerun = subprocess.run(command, cwd=tmp_path, env={**env, "RP_TEST_FAST": "1"}, capture_output=True, text=True,
                           timeout=300)
    assert rerun.returncode == 0, rerun.stdout[-3000:]
    log = (tmp_path / "store" / "work.log").read_text()
    shifted = sorted(line.split()[-1] for line in log.splitlines() if " shifted " in line)
    assert shifted == ["darken@0.5", "quick@0.5", "slow@0.5"]  # only the unfinished one was made again


def test_kill_9_of_a_run_takes_its_worker_processes_with_it(tmp_path):
    (tmp_path / "slow_plugin.py").write_text(SLOW_PLUGIN)
    (tmp_path / "suite_slow.py").write_text(TOY_SUITE_HEAD.format(
        methods=["wt", "erase"], shifts=["darken@0.5"], plugins=["slow_plugin"], extra="repeats=2,")
        + "\n\ndef test_nominal(case):\n    assert case.prune_potential() >= 0.0\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ROBUSTPRUNE_", "PYTEST_", "RP_TEST"))}
    env["PYTHONUNBUFFERED"] = "1"
    run = subprocess.Popen([sys.executable, "-m", "robustprune.cli", "run", "suite_slow.py", "--store", "store",
                            "--workers", "2", "-p", "no:cacheprovider"], cwd=tmp_path, env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        assert run.stdout is not None
        for line in run.stdout:
            if "2 worker processes:" in line:
                break
        kill_9_and_expect_its_children_gone(run, "the run's worker processes")
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
