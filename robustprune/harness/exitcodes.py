"""robustprune's exit statuses, the same for every command and for ``pytest`` with the plugin.

A CI job reads the status before any log: a failed gate must never look like
a broken environment, nor a broken environment like a failed gate. Codes 0,
1, 3 and 5 are pytest's own; 2 is what pytest gives a suite that does not
collect; 6 and 130 are robustprune's.
"""

from __future__ import annotations

import enum

__all__ = ["ExitStatus"]


class ExitStatus(enum.IntEnum):
    """What a robustprune command's exit status means."""

    OK = 0
    """Every check and gate passed (or the command did what it was asked)."""
    CHECKS_FAILED = 1
    """A check or deploy gate failed, or a case could not be computed (a plugin raised, a ratio unreachable)."""
    CONFIGURATION_ERROR = 2
    """The command line, a suite or a plugin name is wrong; nothing ran."""
    INTERNAL_ERROR = 3
    """A bug in robustprune or a plugin crashed the session: please report it with the traceback."""
    NO_CHECKS = 5
    """No check was collected (a wrong path, or -k matched nothing)."""
    ENVIRONMENT_ERROR = 6
    """The machine cannot do the work: the store, a folder, the device or the disk; named in the message."""
    INTERRUPTED = 130
    """Stopped by Ctrl-C: finished work is in the store, a rerun resumes."""
