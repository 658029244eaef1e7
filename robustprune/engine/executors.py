"""Where the heavy work runs: worker processes on this machine (default), this process, or a Ray cluster.

The engine is lazy: each case is computed the first time a check needs it.
An executor may *prefetch* the collected cases before the checks run: it
sends the independent pieces of work (:meth:`Engine.work_plan`: parents,
each repeat's cascade with its evaluations once its parent is there, the
measures beyond accuracy once their first repeat is there) to other
processes, which compute them into the shared store; the checks then read everything from the store. Store claims make
sure no piece is done twice, whoever runs it.

Every process runs torch with the same fixed thread count, and every piece
of work is a pure function of its store key, so a run gives the same
numbers serially and in parallel, bit for bit.

- ``process``: a pool of ``--workers`` processes on this machine (default:
  every core). Progress lines come back to this process.
- ``local``: nothing is prefetched; each case is computed in this process
  when its first check runs (what ``-k`` selection and xdist workers want).
- ``ray``: Ray tasks on a local instance or a cluster; the store must be
  reachable from every node at the same path (a shared filesystem).
"""

from __future__ import annotations

import functools
import multiprocessing
import os
import pickle
import queue
import time
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, TypeVar

from ..compute.processes import die_with_parent
from ..core.results import CaseError, CaseKey
from .factory import EngineJob

if TYPE_CHECKING:  # pragma: no cover
    from .engine import Engine, WorkPlan

__all__ = [
    "EXECUTORS", "ExecutorUnavailable", "LocalExecutor", "Piece", "ProcessExecutor", "RayExecutor", "make_executor",
    "pieces_of", "run_pieces",
]

EXECUTORS = ("process", "local", "ray")

ProgressFn = Callable[[str], None]
H = TypeVar("H", bound=Hashable)  # a running piece's handle: a future, a Ray object reference

# --------------------------------------------------------------------------- the work, in any process

_ENGINES: dict[bytes, Engine] = {}  # per worker process: one engine per job
_PROGRESS: Any = None  # per worker process: where progress lines go (a queue back to the main process)


def _engine(job: EngineJob) -> Engine:
    key = pickle.dumps(job)
    if key not in _ENGINES:
        if job.numerics is not None:
            from ..compute.numerics import apply_numerics  # torch: only in a worker, never at pytest start

            apply_numerics(job.numerics)
        engine = job.build(_PROGRESS.put if _PROGRESS is not None else None)
        if job.numerics is not None and engine.numerics != job.numerics:
            # its results would be stored under keys the main process never reads
            raise CaseError(f"this worker process computes with numerics {engine.numerics}, the main process "
                            f"with {job.numerics}; run with --executor local")
        _ENGINES[key] = engine
    return _ENGINES[key]


PieceOutcome = tuple[str | None, tuple[str, ...]]  # the error text (None: done), the entries the store rejected


def _run(piece: Callable[[Engine], object], job: EngineJob) -> PieceOutcome:
    """Do one piece of work; any failure comes back as text: the checks of the cases it concerns report it
    when they compute them, and nothing else stops. The store entries this piece found failing
    authentication come back too, so that the main process's report counts them."""
    engine: Engine | None = None
    before, error = 0, None
    try:
        engine = _engine(job)
        before = len(engine.options.store.rejected)
        piece(engine)
    except CaseError as exc:
        error = str(exc)
    except Exception as exc:  # noqa: BLE001 - a plugin or torch error fails only the pieces that meet it
        error = f"{type(exc).__name__}: {exc}"
    return error, tuple(engine.options.store.rejected[before:]) if engine is not None else ()


def _parent(job: EngineJob, model: str, dataset: str, seed: int | None) -> PieceOutcome:
    return _run(lambda engine: engine.parent_of(model, dataset, seed), job)


def _repeat(job: EngineJob, case: CaseKey, repeat: int) -> PieceOutcome:
    return _run(lambda engine: engine.compute_repeat(case, repeat), job)


def _measures(job: EngineJob, case: CaseKey) -> PieceOutcome:
    return _run(lambda engine: engine.compute_measures(case), job)


@dataclass(frozen=True)
class Piece:
    """One unit of work for a worker: ``function(job, *args)``, started once every piece in ``after`` is done."""

    name: Hashable
    function: Callable[..., PieceOutcome]
    args: tuple[Any, ...]
    what: str
    after: tuple[Hashable, ...] = ()


def pieces_of(plan: WorkPlan) -> list[Piece]:
    """The plan as pieces in the order they are preferred: parents, then cascades, then measures.

    A cascade waits only for its own parent and measures only for their first
    repeat and the parents they compare with, so the workers never idle at a
    stage boundary while other work is ready.
    """
    pieces = [Piece(("parent", p), _parent, p, f"parent {p[0]}-{p[1]}" + (f" seed {p[2]}" if p[2] is not None else ""))
              for p in plan.parents]
    pieces += [Piece(("repeat", case, r), _repeat, (case, r), f"{case.id} repeat {r + 1}", after=(("parent", parent),))
               for case, r, parent in plan.repeats]
    pieces += [Piece(("measures", case), _measures, (case,), f"{case.id} similarity and features",
                     after=(("repeat", case, 0), *(("parent", p) for p in compared)))
               for case, compared in plan.measures]
    planned = {piece.name for piece in pieces}  # what the plan leaves out is in the store already
    return [replace(piece, after=tuple(a for a in piece.after if a in planned)) for piece in pieces]


def run_pieces(pieces: Sequence[Piece], slots: int, start: Callable[[Piece], H],
               finished: Callable[[list[H]], list[tuple[H, str | None]]], progress: ProgressFn) -> None:
    """Keep up to ``slots`` pieces running, each started as soon as what it waits for is done.

    ``start`` launches a piece and returns a handle; ``finished`` waits a while
    for the running handles and returns those that are done, with the error
    text their piece returned (``None`` when it succeeded). A piece that waits
    for a failed one is not started: it would meet the same failure (the
    checks report it when they compute the case).
    """
    waiting = list(pieces)
    done: set[Hashable] = set()
    failed: dict[Hashable, str] = {}
    running: dict[H, Piece] = {}
    began = time.monotonic()

    def report(piece: Piece, status: str) -> None:
        progress(f"{len(done)}/{len(pieces)} {piece.what} {status} ({time.monotonic() - began:.0f} s)")

    while waiting or running:
        blocked = [p for p in waiting if any(name in failed for name in p.after)]
        while blocked:  # what waits for a skipped piece is skipped too
            for piece in blocked:
                waiting.remove(piece)
                done.add(piece.name)
                failed[piece.name] = cause = next(failed[name] for name in piece.after if name in failed)
                report(piece, f"skipped: {cause}")
            blocked = [p for p in waiting if any(name in failed for name in p.after)]
        ready = [p for p in waiting if all(name in done for name in p.after)]
        for piece in ready[: max(0, slots - len(running))]:
            waiting.remove(piece)
            running[start(piece)] = piece
        if not running:
            if waiting:  # pragma: no cover - pieces_of only waits on pieces it plans
                raise RuntimeError(f"work waits on pieces that are not planned: {[p.after for p in waiting]}")
            break
        for handle, error in finished(list(running)):
            piece = running.pop(handle)
            done.add(piece.name)
            if error:
                failed[piece.name] = f"{piece.what} failed"
                report(piece, f"failed: {error.splitlines()[0]}")
            else:
                report(piece, "done")


def _initialise(progress: Any, parent: int) -> None:
    """A worker's start: die with the main process (kill -9 included), leave Ctrl-C to it, report through
    ``progress``."""
    global _PROGRESS
    die_with_parent(parent)
    _PROGRESS = progress


# --------------------------------------------------------------------------- executors


class ExecutorUnavailable(RuntimeError):
    """The executor asked for cannot start here (Ray not installed, say): a configuration problem."""


class LocalExecutor:
    """Compute each case in this process, when a check first needs it."""

    name = "local"

    def prefetch(self, job: EngineJob, engine: Engine, cases: Sequence[CaseKey], progress: ProgressFn,
                 plan: WorkPlan | None = None) -> None:
        return None


class ProcessExecutor:
    """A pool of worker processes on this machine, each piece started when what it needs is done."""

    name = "process"

    def __init__(self, workers: int):
        self.workers = workers

    def prefetch(self, job: EngineJob, engine: Engine, cases: Sequence[CaseKey], progress: ProgressFn,
                 plan: WorkPlan | None = None) -> None:
        """``plan``: the cases' work the store lacks, when the caller found it already."""
        if self.workers < 2:
            return  # nothing to spread: the checks compute in this process
        plan = plan if plan is not None else engine.work_plan(cases)
        if not plan.parents and not plan.repeats and not plan.measures:
            return  # everything is in the store
        engine.prepare_shifted_sets(cases)  # with every core, before the pool wants them
        pieces = pieces_of(plan)
        # spawn, not fork: this process has torch's thread pools running, which a fork would copy broken
        context = multiprocessing.get_context("spawn")
        # a worker never starts a pool of its own, and computes with this process's numerics
        job = replace(job.with_workers(1), numerics=engine.numerics)
        progress(f"{self.workers} worker processes: {len(plan.parents)} parents, {len(plan.repeats)} cascades, "
                 f"{len(plan.measures)} measures")
        lines = context.Queue()
        others = set(multiprocessing.active_children())  # a plugin's own processes are left alone
        pool = ProcessPoolExecutor(max_workers=self.workers, mp_context=context, initializer=_initialise,
                                   initargs=(lines, os.getpid()))

        def start(piece: Piece) -> Future[PieceOutcome]:
            return pool.submit(piece.function, job, *piece.args)

        def finished(running: list[Future[PieceOutcome]]) -> list[tuple[Future[PieceOutcome], str | None]]:
            done, _ = wait(running, timeout=0.2, return_when=FIRST_COMPLETED)
            _drain(lines, progress)
            return [(future, _outcome(future.result, engine)) for future in done]

        try:
            run_pieces(pieces, self.workers, start, finished, progress)
            _drain(lines, progress)
        except BaseException:
            # Ctrl-C (or an error here): what the workers finished is stored; stop the rest now, do not wait
            pool.shutdown(wait=False, cancel_futures=True)
            _terminate([child for child in multiprocessing.active_children() if child not in others])
            raise
        pool.shutdown()
        lines.close()


def _terminate(children: list[Any]) -> None:
    for child in children:
        child.terminate()
    for child in children:
        child.join(timeout=1)


def _outcome(result: Callable[[], PieceOutcome], engine: Engine) -> str | None:
    """A finished piece's error text (a worker that died, killed for memory say, is an error too); the store
    entries it rejected are counted in this process's store."""
    try:
        error, rejected = result()
    except Exception as exc:  # noqa: BLE001 - BrokenProcessPool and the like: report, let the checks recompute
        return f"{type(exc).__name__}: {exc}"
    engine.options.store.note_rejected(rejected)
    return error


def _drain(lines: Any, progress: ProgressFn) -> None:
    while True:
        try:
            progress(lines.get_nowait())
        except queue.Empty:
            return


class RayExecutor:
    """Send parents, then cascades, then measures to Ray tasks (a local instance, or the cluster at ``address``)."""

    name = "ray"

    def __init__(self, address: str | None = None):
        self.address = address

    def _connect(self, progress: ProgressFn) -> Any:
        try:
            import ray
        except ImportError:
            raise ExecutorUnavailable(
                "the ray executor needs Ray: pip install 'robustprune[ray]' (or pip install ray)"
            ) from None
        if not ray.is_initialized():
            progress(f"connecting to Ray at {self.address}" if self.address else "starting a local Ray instance")
            ray.init(address=self.address, include_dashboard=False, log_to_driver=False)
        return ray

    def prefetch(self, job: EngineJob, engine: Engine, cases: Sequence[CaseKey], progress: ProgressFn,
                 plan: WorkPlan | None = None) -> None:
        plan = plan if plan is not None else engine.work_plan(cases)
        if not plan.parents and not plan.repeats and not plan.measures:
            return
        # a task generates shifted sets in its own process, and computes with this process's numerics
        job = replace(job.with_workers(1), numerics=engine.numerics)
        ray = self._connect(progress)
        cpus = int(ray.cluster_resources().get("CPU", 0))
        progress(f"ray: {cpus} CPUs, {len(plan.parents)} parents, {len(plan.repeats)} cascades, "
                 f"{len(plan.measures)} measures")

        def start(piece: Piece) -> Any:
            # each task asks for as many CPUs as it runs torch threads: no oversubscription
            return ray.remote(num_cpus=job.threads)(piece.function).remote(job, *piece.args)

        def finished(running: list[Any]) -> list[tuple[Any, str | None]]:
            done, _ = ray.wait(running, num_returns=1)
            # a task that died comes back as its error: reported, and the checks recompute
            return [(ref, _outcome(functools.partial(ray.get, ref), engine)) for ref in done]

        # Ray queues tasks on its own resources: every ready piece goes out at once
        run_pieces(pieces_of(plan), len(plan.parents) + len(plan.repeats) + len(plan.measures), start, finished,
                   lambda line: progress(f"ray: {line}"))


def make_executor(name: str, workers: int, address: str | None = None) -> LocalExecutor | ProcessExecutor | RayExecutor:
    """The executor called ``name`` (one of :data:`EXECUTORS`); ``workers`` sizes the ``process`` pool."""
    if name == "local":
        return LocalExecutor()
    if name == "process":
        return ProcessExecutor(workers)
    if name == "ray":
        return RayExecutor(address)
    raise ValueError(f"unknown executor {name!r}; choose one of {', '.join(EXECUTORS)}")
