"""What floating-point results depend on besides the inputs: the identity of a run's numerics.

The same seed gives different networks under different instruction sets
(torch dispatches its kernels by CPU capability: AVX512, AVX2, plain),
torch versions, devices and thread counts, and pruned-network accuracy
amplifies such differences. Everything robustprune trains or evaluates is
therefore stored under a key that includes these numerics: a store filled on
another machine is reused only where its numbers would be the same, and
recomputed elsewhere, never silently mixed.
"""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["apply_numerics", "numerics"]


def _cpu_capability() -> str:
    backends_cpu = getattr(torch.backends, "cpu", None)
    get = getattr(backends_cpu, "get_cpu_capability", None)
    return str(get()) if get is not None else "unknown"


def numerics(device: str, threads: int) -> dict[str, Any]:
    """The numerics a result computed on ``device`` with ``threads`` torch threads depends on.

    ``$ATEN_CPU_CAPABILITY`` (``avx2``, ``default``) changes the CPU capability, and with it the key.
    """
    kind = torch.device(device).type
    out: dict[str, Any] = {
        "device": kind,
        "threads": int(threads),
        "torch": torch.__version__,
        "cpu_capability": _cpu_capability(),
        "deterministic": bool(torch.are_deterministic_algorithms_enabled()),
    }
    if kind == "cuda":
        index = torch.device(device).index
        out["device_name"] = torch.cuda.get_device_name(index if index is not None else torch.cuda.current_device())
        out["cudnn"] = {"deterministic": bool(torch.backends.cudnn.deterministic),
                        "benchmark": bool(torch.backends.cudnn.benchmark)}
    return out



def apply_numerics(expected: dict[str, Any]) -> None:
    """Set this process's deterministic flags as ``expected`` (another process's :func:`numerics`) says: what a
    worker process does before it computes for the main process, whose suite or conftest may have set them."""
    torch.use_deterministic_algorithms(bool(expected.get("deterministic", False)))
    cudnn = expected.get("cudnn")
    if cudnn is not None:
        torch.backends.cudnn.deterministic = bool(cudnn["deterministic"])
        torch.backends.cudnn.benchmark = bool(cudnn["benchmark"])
