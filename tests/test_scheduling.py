"""The executors' scheduler: each piece starts as soon as what it waits for is done, never before, at most
``slots`` at a time; and the plan's pieces wait on the right things."""

from __future__ import annotations

import re

from robustprune.core.results import CaseKey
from robustprune.engine.engine import WorkPlan
from robustprune.engine.executors import Piece, pieces_of, run_pieces


def _noop(*args: object) -> None:
    return None


def simulate(pieces: list[Piece], slots: int, durations: dict[str, int], errors: dict[str, str] | None = None):
    """Run the scheduler on a fake clock: a piece named N takes durations[N] ticks.

    Returns each piece's (start, end) tick and the progress lines.
    """
    clock = 0
    running: dict[str, int] = {}  # handle -> end tick
    spans: dict[str, tuple[int, int]] = {}
    lines: list[str] = []

    def start(piece: Piece) -> str:
        name = str(piece.name)
        assert all(str(after) in spans and spans[str(after)][1] <= clock for after in piece.after), name
        running[name] = clock + durations[name]
        spans[name] = (clock, running[name])
        return name

    def finished(handles: list[str]) -> list[tuple[str, str | None]]:
        nonlocal clock
        assert len(handles) <= slots
        clock = min(running[h] for h in handles)
        done = [h for h in handles if running[h] == clock]
        for h in done:
            del running[h]
        return [(h, (errors or {}).get(h)) for h in done]

    run_pieces(pieces, slots, start, finished, lines.append)
    return spans, lines


def piece(name: str, *after: str) -> Piece:
    return Piece(name, _noop, (), f"piece {name}", after=after)


def test_a_piece_starts_when_its_own_dependency_is_done_not_at_a_stage_boundary():
    # three parents on two slots: the first parent's cascade must not wait for the third parent
    pieces = [piece("p0"), piece("p1"), piece("p2"), piece("c0", "p0"), piece("c1", "p1"), piece("c2", "p2")]
    spans, lines = simulate(pieces, slots=2, durations={"p0": 2, "p1": 3, "p2": 2, "c0": 5, "c1": 5, "c2": 5})
    assert spans["p0"] == (0, 2) and spans["p1"] == (0, 3)
    assert spans["p2"] == (2, 4)  # parents are preferred over ready cascades: they unblock more work
    assert spans["c0"] == (3, 8)  # ready since 2, started when a slot frees; a stage barrier would hold it to 4
    assert spans["c1"] == (4, 9) and spans["c2"] == (8, 13)
    assert len(lines) == 6 and lines[-1].startswith("6/6 piece c2 done")


def test_never_more_than_slots_and_everything_runs_once():
    pieces = [piece(f"p{i}") for i in range(5)] + [piece(f"c{i}", f"p{i}") for i in range(5)]
    spans, _ = simulate(pieces, slots=3, durations={p.name: 1 + i % 3 for i, p in enumerate(pieces)})
    assert sorted(spans) == sorted(p.name for p in pieces)
    for tick in range(max(end for _, end in spans.values())):
        assert sum(start <= tick < end for start, end in spans.values()) <= 3


def test_a_failed_piece_is_reported_and_what_waits_for_it_is_skipped():
    # the cascade and the measures of a failed parent would meet the same failure: they are not started,
    # and work that does not depend on it goes on
    pieces = [piece("p0"), piece("p1"), piece("c0", "p0"), piece("m0", "c0"), piece("c1", "p1")]
    spans, lines = simulate(pieces, slots=2, durations={"p0": 1, "p1": 2, "c0": 1, "m0": 1, "c1": 1},
                            errors={"p0": "parent: diverged\nmore"})
    assert "c0" not in spans and "m0" not in spans and "c1" in spans
    assert re.fullmatch(r"1/5 piece p0 failed: parent: diverged \(\d+ s\)", lines[0])  # the first line only
    assert re.fullmatch(r"2/5 piece c0 skipped: piece p0 failed \(\d+ s\)", lines[1])
    assert re.fullmatch(r"3/5 piece m0 skipped: piece p0 failed \(\d+ s\)", lines[2])
    assert lines[-1].startswith("5/5 piece c1 done")


def test_plan_pieces_wait_for_their_own_parent_and_measures_for_the_first_repeat():
    wt, ft = CaseKey("wt", "small_cnn", "digits"), CaseKey("ft", "small_cnn", "digits")
    parent = ("small_cnn", "digits", 0), ("small_cnn", "digits", 1)
    plan = WorkPlan(
        parents=parent,
        repeats=((wt, 0, parent[0]), (wt, 1, parent[1]), (ft, 0, parent[0]), (ft, 1, parent[1])),
        measures=((wt, (parent[1],)), (ft, ())),
    )
    pieces = {p.name: p for p in pieces_of(plan)}
    assert [name[0] for name in pieces] == ["parent"] * 2 + ["repeat"] * 4 + ["measures"] * 2
    assert pieces[("repeat", wt, 1)].after == (("parent", parent[1]),)
    assert pieces[("measures", wt)].after == (("repeat", wt, 0), ("parent", parent[1]))
    assert pieces[("measures", ft)].after == (("repeat", ft, 0),)
    assert pieces[("parent", parent[0])].what == "parent small_cnn-digits seed 0"


# --------------------------------------------------------------------------- a worker's side


class _FakeStore:
    def __init__(self) -> None:
        self.rejected: list[str] = []


class _FakeOptions:
    def __init__(self) -> None:
        self.store = _FakeStore()


class _FakeEngine:
    def __init__(self, numerics: dict) -> None:
        self.numerics, self.options = numerics, _FakeOptions()


class _FakeJob:
    """What a worker receives: ``build`` makes its engine; ``numerics`` are the main process's."""

    def __init__(self, built: dict, expected: dict | None) -> None:
        self.built, self.numerics = built, expected

    def build(self, progress=None) -> _FakeEngine:
        return _FakeEngine(self.built)


def test_any_error_in_a_piece_comes_back_as_text(monkeypatch):
    from robustprune.engine import executors

    monkeypatch.setattr(executors, "_ENGINES", {})
    job = _FakeJob({"threads": 1}, None)

    def crash(engine):
        raise RuntimeError("CUDA out of memory")

    assert executors._run(crash, job) == ("RuntimeError: CUDA out of memory", ())
    assert executors._run(lambda engine: None, job) == (None, ())


def test_a_piece_reports_the_store_entries_it_rejected(monkeypatch):
    from robustprune.engine import executors

    monkeypatch.setattr(executors, "_ENGINES", {})
    job = _FakeJob({"threads": 1}, None)
    executors._run(lambda engine: engine.options.store.rejected.append("eval/old"), job)

    def rejects(engine):
        engine.options.store.rejected.append("eval/forged")
        raise RuntimeError("and then failed")

    # only what this piece rejected, even when it failed afterwards
    assert executors._run(rejects, job) == ("RuntimeError: and then failed", ("eval/forged",))


def test_a_worker_refuses_to_compute_under_other_numerics(monkeypatch):
    from robustprune.engine import executors

    monkeypatch.setattr(executors, "_ENGINES", {})
    main = {"device": "cpu", "threads": 1, "cpu_capability": "AVX2", "deterministic": False}
    worker = {**main, "cpu_capability": "AVX512"}
    error, _ = executors._run(lambda engine: None, _FakeJob(worker, main))
    assert error is not None and "this worker process computes with numerics" in error
    assert "run with --executor local" in error
    assert executors._run(lambda engine: None, _FakeJob(main, main)) == (None, ())


def test_a_worker_takes_the_main_process_deterministic_flag():
    import torch

    from robustprune.compute.numerics import apply_numerics, numerics

    before = torch.are_deterministic_algorithms_enabled()
    try:
        apply_numerics({"deterministic": True})
        assert numerics("cpu", 1)["deterministic"] is True
        apply_numerics({"deterministic": False})
        assert numerics("cpu", 1)["deterministic"] is False
    finally:
        torch.use_deterministic_algorithms(before)
