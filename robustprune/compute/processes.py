"""Worker processes that never outlive the run that started them, and leave Ctrl-C to it.

A pool's workers hold hundreds of megabytes each. If the main process is
killed (``kill -9``, an out-of-memory kill, a CI timeout), nothing tells
them to stop: they would sleep forever. Every worker robustprune starts runs
:func:`die_with_parent` first: on Linux the kernel kills it with its parent
(``PR_SET_PDEATHSIG``), and everywhere a watchdog thread exits it within a
second of the parent's death. Workers also ignore SIGINT: a Ctrl-C in the
terminal reaches the whole process group, and only the main process should
answer it (by terminating the pool, keeping what is finished).
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time

__all__ = ["die_with_parent"]

_PR_SET_PDEATHSIG = 1


def die_with_parent(parent: int) -> None:
    """Make this worker process exit when process ``parent`` (the one that started it) is gone."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        except (OSError, AttributeError):  # no prctl: the watchdog still covers it
            pass
    if os.getppid() != parent:  # the parent died before we got here
        _exit_now()
    threading.Thread(target=_watch, args=(parent,), name="robustprune-parent-watchdog", daemon=True).start()


def _watch(parent: int) -> None:
    while True:
        time.sleep(0.5)
        if os.getppid() != parent:  # re-parented: the parent is gone
            _exit_now()


def _exit_now() -> None:
    # no cleanup, no atexit handlers (which could wait on the dead parent's queues): the kernel's way out
    os.kill(os.getpid(), signal.SIGKILL)
