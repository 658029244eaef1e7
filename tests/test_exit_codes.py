"""Exit statuses and the checks before any work: each bad input or environment gives one message and its code.

Runs in-process through pytester (the toy suite of conftest.py) and through
``robustprune.cli.main``; every failing case asserts that nothing was trained
(the store holds no work log).
"""

from __future__ import annotations

import errno

import pytest
from conftest import TOY_PLUGIN, TOY_SUITE_HEAD

from robustprune.cli import main
from robustprune.harness.exitcodes import ExitStatus

CHECKS = """
def test_nominal(case):
    assert case.prune_potential() >= 0.0
"""


def test_the_documented_table():
    assert {s.name: int(s) for s in ExitStatus} == {
        "OK": 0, "CHECKS_FAILED": 1, "CONFIGURATION_ERROR": 2, "INTERNAL_ERROR": 3, "NO_CHECKS": 5,
        "ENVIRONMENT_ERROR": 6, "INTERRUPTED": 130}


def _nothing_ran(pytester: pytest.Pytester) -> bool:
    return not (pytester.path / "store" / "work.log").exists()


def _one_message(result: pytest.RunResult, text: str) -> None:
    output = result.stdout.str() + result.stderr.str()
    assert output.count(text) == 1, output[-3000:]


@pytest.fixture
def run_in_subprocess(pytester: pytest.Pytester):
    """Options are checked at pytest_configure, before the session pytester's in-process runs can record:
    these runs go through a real ``pytest`` process, as a user's would."""
    pytester.makepyfile(toy_plugin=TOY_PLUGIN, suite_toy=TOY_SUITE_HEAD.format(
        methods=["wt"], shifts=["darken@0.5"], plugins=["toy_plugin"], extra="") + CHECKS)

    def run(*args: str) -> pytest.RunResult:
        return pytester.runpytest_subprocess("suite_toy.py", f"--rp-store={pytester.path / 'store'}",
                                             "-p", "no:cacheprovider", *args)

    return run


@pytest.mark.parametrize(("args", "status", "message"), [
    (["--rp-workers=0"], ExitStatus.CONFIGURATION_ERROR, "--workers 0: give at least 1 worker process"),
    (["--rp-threads=0"], ExitStatus.CONFIGURATION_ERROR, "--threads 0: give at least 1 torch thread"),
    (["--rp-device=gpu"], ExitStatus.CONFIGURATION_ERROR, "device 'gpu' is not one robustprune runs on"),
    (["--rp-plugin=nosuch_plugin_module"], ExitStatus.CONFIGURATION_ERROR,
     "plugin module 'nosuch_plugin_module' (named by --plugin) was not found"),
])
def test_bad_options_stop_before_any_work(run_in_subprocess, pytester, args, status, message):
    result = run_in_subprocess(*args)
    assert result.ret == status
    _one_message(result, message)
    assert _nothing_ran(pytester)


def test_a_missing_gpu_is_an_environment_error(run_in_subprocess, pytester):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device")
    result = run_in_subprocess("--rp-device=cuda:0")
    assert result.ret == ExitStatus.ENVIRONMENT_ERROR
    _one_message(result, "device 'cuda:0' was asked for, but torch sees no CUDA device")
    assert _nothing_ran(pytester)


def test_a_report_folder_that_cannot_be_made(run_in_subprocess, pytester):
    (pytester.path / "taken").write_text("a file where the folder should go")
    result = run_in_subprocess(f"--rp-report={pytester.path / 'taken' / 'report'}")
    assert result.ret == ExitStatus.ENVIRONMENT_ERROR
    _one_message(result, f"--report {pytester.path / 'taken' / 'report'} cannot be created")
    assert _nothing_ran(pytester)


def test_pytest_sessions_without_suites_are_left_alone(pytester):
    pytester.makepyfile(test_plain="def test_plain():\n    assert True\n")
    result = pytester.runpytest_subprocess("test_plain.py", "-p", "no:cacheprovider")
    assert result.ret == 0
    assert not (pytester.path / ".robustprune").exists()  # no store made where no suite ran


def test_a_store_that_is_a_file(run_suite, pytester):
    (pytester.path / "a_file").write_text("not a folder")
    result = run_suite(CHECKS, f"--rp-store={pytester.path / 'a_file'}")
    assert result.ret == ExitStatus.ENVIRONMENT_ERROR
    _one_message(result, f"the store {pytester.path / 'a_file'} is a file, not a folder")


def test_a_read_only_store_lacking_work_stops_before_computing(run_suite, pytester, monkeypatch):
    from robustprune.compute import store as store_module
    from robustprune.harness import preflight

    (pytester.path / "store").mkdir()
    monkeypatch.setattr(preflight, "can_write", lambda folder: folder.name != "store")
    monkeypatch.setattr(store_module, "can_write", lambda folder: folder.name != "store")
    result = run_suite(CHECKS)
    assert result.ret == ExitStatus.ENVIRONMENT_ERROR
    _one_message(result, "is read-only and lacks 2 piece(s) of work of suite_toy.py")
    assert _nothing_ran(pytester)


def test_a_read_only_store_holding_everything_serves_the_run(run_suite, pytester, monkeypatch):
    from robustprune.compute import store as store_module
    from robustprune.harness import preflight

    assert run_suite(CHECKS).ret == ExitStatus.OK
    monkeypatch.setattr(preflight, "can_write", lambda folder: folder.name != "store")
    monkeypatch.setattr(store_module, "can_write", lambda folder: folder.name != "store")
    result = run_suite(CHECKS)
    assert result.ret == ExitStatus.OK
    assert "is read-only: results are read from it" in result.stdout.str()


def test_a_full_disk_mid_run_stops_with_one_message_naming_the_store(run_suite, pytester, monkeypatch):
    from robustprune.compute import store as store_module

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(store_module.os, "fsync", full)
    result = run_suite(CHECKS + """

def test_again(case):
    assert case.prune_potential() >= 0.0
""")
    assert result.ret == ExitStatus.ENVIRONMENT_ERROR
    _one_message(result, f"cannot write to the store {pytester.path / 'store'}: No space left on device")
    assert "free space on that disk" in result.stdout.str() + result.stderr.str()


def test_a_disk_too_small_for_the_planned_work_is_warned_before_it_starts(run_suite, pytester, monkeypatch):
    import shutil

    from robustprune.harness import preflight

    monkeypatch.setattr(preflight.shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(10**9, 10**9 - 512, 512))
    result = run_suite(CHECKS)
    assert result.ret == ExitStatus.OK  # a warning: the estimate is rough, and what is finished is kept
    _one_message(result, "but only 0 MiB are free on its disk: it may stop with a full disk")
    monkeypatch.undo()
    assert "are free on its disk" not in run_suite(CHECKS).stdout.str()  # everything stored: nothing to warn


def test_the_planned_bytes_are_about_what_a_cold_run_stores(pytester, torch_warmed_up):
    from robustprune.compute.store import Store
    from robustprune.core.suite import Suite
    from robustprune.engine.factory import EngineJob

    pytester.makepyfile(toy_plugin=TOY_PLUGIN)
    suite = Suite(models=["toynet"], datasets=["toy"], methods=["wt", "erase"], shifts=["darken@0.5", "darken@0.9"],
                  ratios=[0.25, 0.5, 0.75], retrain_epochs=1, plugins=["toy_plugin"])
    job = EngineJob.for_suite(suite, str(pytester.path / "suite_toy.py"), str(pytester.path / "store"), workers=1)
    engine = job.build()
    cases = engine.cases()
    planned = engine.planned_bytes(cases, engine.work_plan(cases))
    for case in cases:
        engine.result(case)
    store = Store(pytester.path / "store")
    stored = sum(path.stat().st_size for kind, _, path in store.entries() if kind in ("network", "eval", "shifted"))
    assert 0.5 * stored <= planned <= 2 * stored, (planned, stored)


def test_missing_data_stops_the_run_once_before_any_work(pytester, torch_warmed_up):
    pytester.makepyfile(suite_cifar=f"""
from robustprune import Suite

suite = Suite(models=["small_cnn"], datasets=["cifar10"], methods=["wt", "ft"], ratios=[0.5],
              dataset_params={{"cifar10": {{"root": {str(pytester.path / "no-data")!r}}}}})
""" + CHECKS)
    result = pytester.runpytest_inprocess("suite_cifar.py", f"--rp-store={pytester.path / 'store'}", "--rp-workers=1",
                                          "-p", "no:cacheprovider")
    assert result.ret == ExitStatus.ENVIRONMENT_ERROR
    _one_message(result, f"CIFAR-10 not found (data_batch_1, data_batch_2, data_batch_3, data_batch_4, data_batch_5, "
                         f"test_batch missing): {pytester.path / 'no-data' / 'cifar-10-batches-py'}")
    assert not (pytester.path / "store").exists()


def test_ctrl_c_is_interrupted_not_a_collection_error(run_suite):
    result = run_suite("""
def test_stop(case):
    raise KeyboardInterrupt
""")
    assert result.ret == ExitStatus.INTERRUPTED
    assert run_suite(CHECKS, "-k", "nothing_matches").ret == ExitStatus.NO_CHECKS
    bad = run_suite(CHECKS, methods=("wtt",))
    assert bad.ret == ExitStatus.CONFIGURATION_ERROR  # pytest's 2: the suite did not collect


def test_the_command_line_gives_the_same_codes(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["run", "missing_suite.py"]) == ExitStatus.CONFIGURATION_ERROR
    assert "suite file 'missing_suite.py' not found" in capsys.readouterr().err
    assert main(["nosuch"]) == ExitStatus.CONFIGURATION_ERROR
    assert main(["report", "missing.json"]) == ExitStatus.CONFIGURATION_ERROR
    (tmp_path / "suite_empty.py").write_text("")
    assert main(["run", "suite_empty.py", "--no-such-option"]) == ExitStatus.CONFIGURATION_ERROR  # pytest's 4


def test_under_xdist_the_store_is_checked_before_the_workers_start(run_in_subprocess, pytester):
    pytest.importorskip("xdist")
    (pytester.path / "a_file").write_text("")
    result = run_in_subprocess("-n", "2", f"--rp-store={pytester.path / 'a_file'}")
    assert result.ret == ExitStatus.ENVIRONMENT_ERROR
    _one_message(result, f"the store {pytester.path / 'a_file'} is a file, not a folder")


def test_a_store_path_with_a_tilde_is_expanded(run_suite, pytester, monkeypatch, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    result = run_suite(CHECKS, "--rp-store=~/rp-store")  # as a shell leaves `--store=~/rp-store`
    assert result.ret == ExitStatus.OK
    assert (home / "rp-store" / "work.log").exists() and not (pytester.path / "~").exists()
