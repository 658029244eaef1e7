"""Reading torch files without running what they hold, and saying why one was refused.

Every ``torch.load`` in robustprune uses ``weights_only=True``: a file that
holds more than tensors and plain containers (a pickled class or function)
is refused, because unpickling it could run code. Torch's own message then
advises loading with ``weights_only=False``; robustprune never does that and
does not pass the advice on.
"""

from __future__ import annotations

import re

__all__ = ["load_problem"]


def load_problem(exc: BaseException) -> str:
    """Why ``torch.load(..., weights_only=True)`` refused a file, in one line, without torch's advice to load
    it with ``weights_only=False`` (which runs whatever code the file holds: robustprune never does that)."""
    text = str(exc)
    if text.startswith("Weights only load failed"):
        found = re.search(r"Unsupported global: GLOBAL (\S+)", text)
        what = f" ({found.group(1)})" if found else ""
        return (f"it holds Python objects other than tensors{what}, which robustprune does not load because "
                "unpickling them can run code; save only tensors, e.g. torch.save(network.state_dict(), path)")
    first = text.strip().splitlines()[0] if text.strip() else ""
    return f"{type(exc).__name__}: {first[:200]}"
