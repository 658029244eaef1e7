"""``robustprune store info|verify|gc`` and the attack that motivated them: a store whose evaluations were
forged by someone who can write it (a restored CI cache).

The toy suite of conftest.py runs in-process; the forger reads the store's own
audit trail (``work.log``) to find which evaluation belongs to which network,
as anyone with write access could, and writes with the store's code but
without the key.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest
import torch
from filelock import FileLock

from robustprune.cli import main
from robustprune.compute.store import KEY_ENV, Store, make_key
from robustprune.compute.storetools import collect_garbage, pruned_network_problem, store_info
from robustprune.harness.exitcodes import ExitStatus

# "erase" removes the largest weights first: at ratio 0.25 the toy network is ruined, so the gate fails
GATE = """
def test_gate(case):
    assert case.prune_potential() >= 0.5
"""


def _evaluations_by_network(store_root: Path) -> dict[tuple[str, str], str]:
    """``(network index, shift) -> eval key`` from the work log (the toy suite has one case)."""
    found = {}
    for line in (store_root / "work.log").read_text().splitlines():
        match = re.search(r" eval ([0-9a-f]{64}) \S+ network (\d+) (\S+)$", line)
        if match:
            found[(match.group(2), match.group(3))] = match.group(1)
    return found


def _forge_pruned_evaluations(store_root: Path) -> int:
    """Give every pruned network the parent's predictions under the same shift, written without the key."""
    plain = Store(store_root, auth_key=None)
    evaluations = _evaluations_by_network(store_root)
    forged = 0
    for (network, shift), key in evaluations.items():
        if network != "0":
            parent = plain.load_record("eval", evaluations[("0", shift)])
            assert parent is not None
            plain.save("eval", key, parent["value"], parent["spec"])
            forged += 1
    return forged


def _run_gate(run_suite) -> pytest.RunResult:
    return run_suite(GATE, "--rp-width=0", methods=("erase",))  # whole lines: the store line is matched


def test_without_a_key_a_forgery_passes_the_gate_but_verify_recomputes_and_names_it(run_suite, pytester, capsys):
    store_root = pytester.path / "store"
    assert _run_gate(run_suite).ret == ExitStatus.CHECKS_FAILED  # the honest verdict
    assert _forge_pruned_evaluations(store_root) == 4  # 2 ratios x (nominal, darken@0.5)

    forged_run = _run_gate(run_suite)
    assert forged_run.ret == ExitStatus.OK  # what the issue found: the verdict changed without a trace
    forged_run.stdout.fnmatch_lines(["store: *, unauthenticated: anyone who can write it can change these numbers*"])

    capsys.readouterr()
    status = main(["store", "verify", "--store", str(store_root), "--recompute-evaluations", "suite_toy.py"])
    out = capsys.readouterr().out
    assert status == ExitStatus.CHECKS_FAILED, out
    assert "not authenticated: no ROBUSTPRUNE_STORE_KEY set" in out
    assert "suite_toy.py: 6 stored evaluations re-derived from the stored networks, 4 differ" in out
    assert len(re.findall(r"erase-toynet-toy repeat 1 network [12] \(\w+\) under (nominal|darken@0.5): \d+ of 48 "
                          r"stored per-image evaluations differ", out)) == 4, out


def test_with_a_key_a_forgery_is_rejected_and_recomputed(run_suite, pytester, monkeypatch, capsys):
    monkeypatch.setenv(KEY_ENV, "a CI secret")
    store_root = pytester.path / "store"
    assert _run_gate(run_suite).ret == ExitStatus.CHECKS_FAILED
    _forge_pruned_evaluations(store_root)

    capsys.readouterr()
    assert main(["store", "verify", "--store", str(store_root)]) == ExitStatus.CHECKS_FAILED
    out = capsys.readouterr().out
    assert out.count("failed authentication") == 4, out

    rerun = _run_gate(run_suite)
    assert rerun.stdout.str().count("failed authentication with $ROBUSTPRUNE_STORE_KEY; it is not used") == 1
    assert rerun.ret == ExitStatus.CHECKS_FAILED  # recomputed from the stored networks: the honest verdict
    rerun.stdout.fnmatch_lines(["store: *, authenticated (ROBUSTPRUNE_STORE_KEY); 4 entries failed authentication "
                                "and were recomputed*"])
    assert main(["store", "verify", "--store", str(store_root)]) == ExitStatus.OK  # the forgeries are overwritten


def test_verify_checks_each_pruned_network_against_its_key(run_suite, pytester, capsys):
    store_root = pytester.path / "store"
    assert run_suite(GATE).ret == ExitStatus.OK
    store = Store(store_root, auth_key=None)
    pruned = [(key, record) for kind, key, _ in store.entries() if kind == "network"
              for record in [store.load_record(kind, key)] if record and record["spec"].get("kind") == "pruned"]
    assert len(pruned) == 2 and all(pruned_network_problem(record) is None for _, record in pruned)

    key, record = pruned[0]
    name, mask = next(iter(record["value"]["masks"].items()))
    record["value"]["state"][name][~mask.bool()] = 1.0  # weights back under the mask: a denser network
    store.save("network", key, record["value"], record["spec"])
    capsys.readouterr()
    assert main(["store", "verify", "--store", str(store_root)]) == ExitStatus.CHECKS_FAILED
    assert f"network {key[:12]}: weight {name} is not zero where its mask removes it" in capsys.readouterr().out


def test_a_pruned_network_whose_masks_miss_its_ratio_is_named():
    masks = {"w": torch.tensor([1.0, 1.0, 1.0, 0.0])}
    state = {"w": torch.tensor([0.3, -0.2, 0.1, 0.0])}
    record = {"spec": {"kind": "pruned", "ratio": 0.5}, "value": {"masks": masks, "state": state, "achieved": 0.25}}
    assert pruned_network_problem(record) == ("its masks remove 0.2500 of the weights, but its key asks for 0.5 "
                                              "(tolerance 0.5% relative)")
    record["value"]["achieved"] = 0.5
    assert pruned_network_problem(record) == "its masks remove 0.2500 of the weights, but it records 0.5"


def test_info_counts_entries_by_kind_and_networks_by_numerics(run_suite, pytester, capsys):
    store_root = pytester.path / "store"
    assert run_suite(GATE).ret == ExitStatus.OK
    info = store_info(Store(store_root, auth_key=None))
    assert info.entries["network"] == 3 and info.entries["eval"] == 6  # a parent and two pruned; 3 x 2 shifts
    assert sum(info.numerics.values()) == 3 and all("cpu_capability" in line for line in info.numerics)
    capsys.readouterr()
    assert main(["store", "info", "--store", str(store_root)]) == ExitStatus.OK
    out = capsys.readouterr().out
    assert re.search(r"network\s+3 entries", out) and re.search(r"eval\s+6 entries", out), out


def test_gc_keeps_what_suites_reference_and_removes_the_rest(run_suite, pytester, capsys):
    store_root = pytester.path / "store"
    assert run_suite(GATE).ret == ExitStatus.OK
    store = Store(store_root, auth_key=None)
    unused = make_key({"kind": "eval", "left": "by an older suite"})
    store.save("eval", unused, torch.zeros(3, dtype=torch.long))
    kept = sorted(key for _, key, _ in store.entries())

    capsys.readouterr()
    assert main(["store", "gc", "--store", str(store_root), "--dry-run", "suite_toy.py"]) == ExitStatus.OK
    assert "would remove 1 entries" in capsys.readouterr().out and store.contains("eval", unused)
    assert main(["store", "gc", "--store", str(store_root), "suite_toy.py"]) == ExitStatus.OK
    assert "removed 1 entries" in capsys.readouterr().out
    assert sorted(key for _, key, _ in store.entries()) == [k for k in kept if k != unused]

    log_before = (store_root / "work.log").read_text()
    assert run_suite(GATE).ret == ExitStatus.OK
    assert (store_root / "work.log").read_text() == log_before  # nothing the suite needs was removed


def test_gc_by_date_and_of_stale_temporary_files_and_unheld_locks(tmp_path):
    store = Store(tmp_path / "store", auth_key=None)
    old, new = make_key({"n": 1}), make_key({"n": 2})
    store.save("eval", old, [1])
    store.save("eval", new, [2])
    a_week_ago = time.time() - 7 * 86400
    os.utime(store.path("eval", old), (a_week_ago, a_week_ago))
    stale, fresh = store.path("eval", old).parent / ".tmp-dead.pt", store.path("eval", new).parent / ".tmp-live.pt"
    stale.write_bytes(b"half")
    fresh.write_bytes(b"being written")
    os.utime(stale, (a_week_ago, a_week_ago))
    locks = store.root / "locks" / "eval"
    locks.mkdir(parents=True)
    (locks / f"{old}.lock").write_text("")
    held = FileLock(str(locks / f"{new}.lock"))

    with held:
        report = collect_garbage(store, older_than=time.time() - 86400, dry_run=True)
        assert (report.entries, report.temporary, report.locks) == ([store.path("eval", old)], [stale],
                                                                    [locks / f"{old}.lock"])
        assert store.contains("eval", old) and stale.exists()  # a dry run removes nothing
        collect_garbage(store, older_than=time.time() - 86400)
    assert not store.contains("eval", old) and store.contains("eval", new)
    assert not stale.exists() and fresh.exists()  # a temporary file may belong to a write in progress
    assert not (locks / f"{old}.lock").exists() and (locks / f"{new}.lock").exists()  # held: kept


def test_store_commands_name_a_missing_store_and_a_bad_date(tmp_path, capsys):
    assert main(["store", "info", "--store", str(tmp_path / "nowhere")]) == ExitStatus.CONFIGURATION_ERROR
    assert "nowhere is not a store folder" in capsys.readouterr().err
    assert main(["store", "verify", "--store", str(tmp_path / "nowhere")]) == ExitStatus.OK  # a cold CI cache
    assert "no store there, nothing to verify" in capsys.readouterr().out
    (tmp_path / "store").mkdir()
    assert main(["store", "gc", "--store", str(tmp_path / "store"), "--older-than", "last week"]) \
        == ExitStatus.CONFIGURATION_ERROR
    assert "--older-than 'last week' is not a date like 2026-12-01" in capsys.readouterr().err
    assert main(["store", "verify", "--store", str(tmp_path / "store"), "--recompute-evaluations"]) \
        == ExitStatus.CONFIGURATION_ERROR
    assert "--recompute-evaluations needs the suites" in capsys.readouterr().err


@pytest.mark.slow
def test_rejections_in_worker_processes_reach_the_report(run_suite, pytester, monkeypatch):
    monkeypatch.setenv(KEY_ENV, "a CI secret")
    store_root = pytester.path / "store"
    assert _run_gate(run_suite).ret == ExitStatus.CHECKS_FAILED
    _forge_pruned_evaluations(store_root)
    # with the first pruned network gone, the main process's look-up stops there and never reads the forgeries:
    # only the worker process that recomputes the cascade meets them, in a store the report does not read
    first_pruned = re.search(r" network ([0-9a-f]{64}) erase-toynet-toy ratio 0.25 ",
                             (store_root / "work.log").read_text())
    assert first_pruned is not None
    Store(store_root).path("network", first_pruned.group(1)).unlink()
    result = pytester.runpytest_subprocess("suite_toy.py", "--rp-width=0", f"--rp-store={store_root}", "--rp-workers=2",
                                           "-p", "no:cacheprovider")
    assert result.ret == ExitStatus.CHECKS_FAILED
    result.stdout.fnmatch_lines(["*2 worker processes*", "store: *, authenticated (ROBUSTPRUNE_STORE_KEY); 4 entries "
                                 "failed authentication and were recomputed*"])


def test_info_and_verify_report_a_damaged_entry_and_leave_it_in_place(run_suite, pytester, capsys):
    store_root = pytester.path / "store"
    assert run_suite(GATE).ret == ExitStatus.OK
    store = Store(store_root, auth_key=None)
    damaged = next(path for kind, key, path in store.entries() if kind == "network"
                   and store.load_record(kind, key)["spec"]["kind"] == "pruned")
    damaged.write_bytes(damaged.read_bytes()[:-10])
    evaluation = next(path for kind, _, path in store.entries() if kind == "eval")
    evaluation.write_bytes(evaluation.read_bytes()[:-10])
    before = sorted(path.name for _, _, path in store.entries())

    assert main(["store", "info", "--store", str(store_root)]) == ExitStatus.OK
    assert main(["store", "verify", "--store", str(store_root), "suite_toy.py", "--recompute-evaluations"]) \
        == ExitStatus.CHECKS_FAILED
    out = capsys.readouterr().out
    assert f"{damaged.stem[:12]}: checksum mismatch" in out and f"{evaluation.stem[:12]}: checksum mismatch" in out
    assert sorted(path.name for _, _, path in store.entries()) == before  # verify reports, the next run repairs


def test_verify_names_a_pruned_network_whose_spec_was_edited(run_suite, pytester, capsys):
    store_root = pytester.path / "store"
    assert run_suite(GATE).ret == ExitStatus.OK
    store = Store(store_root, auth_key=None)
    key, record = next((key, record) for kind, key, _ in store.entries() if kind == "network"
                       for record in [store.load_record(kind, key)] if record["spec"].get("kind") == "pruned")
    # a forger who makes a denser network look right edits the ratio its record names, too
    record["spec"]["ratio"] = record["value"]["achieved"] = 0.0
    store.save("network", key, {**record["value"], "masks": {n: torch.ones_like(m)
                                                             for n, m in record["value"]["masks"].items()}},
               record["spec"])
    assert main(["store", "verify", "--store", str(store_root)]) == ExitStatus.CHECKS_FAILED
    assert f"network {key[:12]}: its recorded spec does not hash to its key" in capsys.readouterr().out


def test_store_commands_look_suites_up_under_the_numerics_given(run_suite, pytester, capsys):
    store_root = pytester.path / "store"
    assert run_suite(GATE).ret == ExitStatus.OK
    entries = sorted(key for _, key, _ in Store(store_root, auth_key=None).entries())
    capsys.readouterr()
    # the run used one thread: under two, nothing of the suite is stored, so nothing may be judged unused
    assert main(["store", "gc", "--store", str(store_root), "--threads", "2", "suite_toy.py"]) \
        == ExitStatus.CONFIGURATION_ERROR
    assert "suite_toy.py is not complete in the store under" in capsys.readouterr().err
    assert sorted(key for _, key, _ in Store(store_root, auth_key=None).entries()) == entries
    assert main(["store", "verify", "--store", str(store_root), "--threads", "2", "--recompute-evaluations",
                 "suite_toy.py"]) == ExitStatus.CONFIGURATION_ERROR
    assert "no stored evaluation of suite_toy.py was found under" in capsys.readouterr().err
    assert main(["store", "verify", "--store", str(store_root), "--threads", "1", "--recompute-evaluations",
                 "suite_toy.py"]) == ExitStatus.OK


def test_a_suite_that_does_not_load_is_a_configuration_error(pytester, capsys):
    (pytester.path / "store").mkdir()
    pytester.makepyfile(suite_broken="import no_such_module\n")
    assert main(["store", "gc", "--store", str(pytester.path / "store"), "suite_broken.py"]) \
        == ExitStatus.CONFIGURATION_ERROR
    assert "ModuleNotFoundError: No module named 'no_such_module'" in capsys.readouterr().err


def test_xdist_workers_rejections_are_merged_once_each():
    from robustprune.report.build import merge_reports

    def part(method: str, rejected: list[str]) -> dict:
        row = {"case": f"{method}-m-d", "method": method}
        return {"suite": "s.py", "methods": ["a", "b"], "cases": [], "tables": [{"model": "m", "dataset": "d",
                                                                                   "rows": [row]}],
                "store": {"root": "/s", "authenticated": True, "rejected": len(rejected),
                          "rejected_entries": rejected}}

    (merged,) = merge_reports([part("a", ["eval/1", "eval/2"]), part("b", ["eval/2", "eval/3"])])
    assert merged["store"]["rejected"] == 3 and merged["store"]["rejected_entries"] == ["eval/1", "eval/2", "eval/3"]
