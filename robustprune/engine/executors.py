"""Where the heavy work runs: in the pytest process (default) or on a Ray cluster.

The engine is lazy: each case is computed the first time a check needs it.
An executor may *prefetch* the collected cases before the checks run: the Ray
executor sends the independent jobs (parents first, then each method's
cascade with its evaluations) to Ray tasks that compute them into the shared
store; the checks then read everything from the store. Store claims make sure
no job is done twice, whoever runs it.

The store must be reachable from every Ray node at the same path (a shared
filesystem); on one machine, any local folder works.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from ..core.results import CaseError, CaseKey
from .factory import EngineJob

__all__ = ["EXECUTORS", "LocalExecutor", "RayExecutor", "make_executor"]

EXECUTORS = ("local", "ray")


def _remote_parent(job: EngineJob, model: str, dataset: str) -> str | None:
    """Ray task: train (or find) one parent. Errors come back as text; the checks report them."""
    try:
        job.build().parent(model, dataset)
    except CaseError as exc:
        return str(exc)
    return None


def _remote_case(job: EngineJob, method: str, model: str, dataset: str) -> str | None:
    """Ray task: one method's cascade and all its evaluations."""
    try:
        job.build().result(CaseKey(method, model, dataset))
    except CaseError as exc:
        return str(exc)
    return None


class LocalExecutor:
    """Compute each case in this process, when a check first needs it."""

    name = "local"

    def prefetch(self, job: EngineJob, cases: Sequence[CaseKey], progress: Callable[[str], None]) -> None:
        return None


class RayExecutor:
    """Send parents, then cascades, to Ray tasks (a local instance, or the cluster at ``address``)."""

    name = "ray"

    def __init__(self, address: str | None = None):
        self.address = address

    def _connect(self, progress: Callable[[str], None]) -> Any:
        try:
            import ray
        except ImportError:
            raise RuntimeError(
                "the ray executor needs Ray: pip install 'robustprune[ray]' (or pip install ray)"
            ) from None
        if not ray.is_initialized():
            progress(f"connecting to Ray at {self.address}" if self.address else "starting a local Ray instance")
            ray.init(address=self.address, include_dashboard=False, log_to_driver=False)
        return ray

    def prefetch(self, job: EngineJob, cases: Sequence[CaseKey], progress: Callable[[str], None]) -> None:
        if not cases:
            return
        job = job.with_workers(1)  # a task generates shifted sets in its own process
        ray = self._connect(progress)
        started = time.monotonic()
        # each task asks for as many CPUs as it runs torch threads: no oversubscription
        parent_task = ray.remote(num_cpus=job.threads)(_remote_parent)
        case_task = ray.remote(num_cpus=job.threads)(_remote_case)
        parents = sorted({(c.model, c.dataset) for c in cases})
        progress(f"ray: training {len(parents)} parent(s) on {int(ray.cluster_resources().get('CPU', 0))} CPUs")
        ray.get([parent_task.remote(job, model, dataset) for model, dataset in parents])
        progress(f"ray: {len(cases)} cascade(s) with their evaluations ({time.monotonic() - started:.0f} s)")
        pending = {case_task.remote(job, c.method, c.model, c.dataset): c for c in cases}
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            case = pending.pop(done[0])
            error = ray.get(done[0])
            status = f"failed: {error.splitlines()[0]}" if error else "done"
            progress(f"ray: {case.id} {status} ({time.monotonic() - started:.0f} s)")


def make_executor(name: str, address: str | None = None) -> LocalExecutor | RayExecutor:
    """The executor called ``name`` (one of :data:`EXECUTORS`)."""
    if name == "local":
        return LocalExecutor()
    if name == "ray":
        return RayExecutor(address)
    raise ValueError(f"unknown executor {name!r}; choose one of {', '.join(EXECUTORS)}")
