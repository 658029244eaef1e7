"""Errors plugins raise that the host handles specially (this module imports nothing heavy: the pytest
harness catches them without loading numpy or torch)."""

from __future__ import annotations

from pathlib import Path

__all__ = ["DataFileError", "MissingDependencyError", "as_missing_dependency"]


class DataFileError(ValueError):
    """A dataset file is missing or malformed.

    The message names the path, the layout expected there and the fix. A
    :class:`ValueError`, like every configuration problem the host reports
    without a traceback. Met before any work, it stops the run once with
    exit status 6: the machine lacks the data (docs/trusting-results.md).
    """

    def __init__(self, problem: str, path: Path | str, expected: str, fix: str):
        self.problem, self.path, self.expected, self.fix = problem, Path(path), expected, fix
        super().__init__(f"{problem}: {path}\n  expected: {expected}\n  fix: {fix}")


class MissingDependencyError(ImportError):
    """This machine lacks a library or file a plugin needs (a system library such as libGL, an optional
    package).

    The message names what is missing and every fix. Met before any work (a shift's ``check_ready``), it
    stops the run once with exit status 6, like missing data.
    """


def as_missing_dependency(error: ImportError, what: str) -> MissingDependencyError:
    """``error`` as a :class:`MissingDependencyError` (itself if it is one): an ``ImportError`` raised by a
    plugin's code while making ``what`` means a library is missing here, which stops the run once."""
    if isinstance(error, MissingDependencyError):
        return error
    return MissingDependencyError(f"{what} needs a library that cannot be imported here: {type(error).__name__}: "
                                  f"{error}; install it (pip install ...) and run again")
