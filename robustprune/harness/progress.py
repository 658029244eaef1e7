"""Progress of long work through the ``robustprune`` logger, shown the way the run asks for.

Every progress message is an INFO record of the ``robustprune`` logger, so
pytest's logging options apply to it: ``--log-cli-level=INFO`` shows the
records as live logs (pytest's format), ``-q`` silences them (they are still
captured with a failing check's report), and ``-p no:logging`` has no effect
on the lines below. Without live logging, one handler writes them:

- in the main process, one line per event past pytest's output capture
  (``robustprune   12.3s [wt-small_cnn-digits] ratio 0.2 (1/6): pruning``);
  on a terminal, the count of finished pieces of work is a live bar (tqdm)
  under those lines instead of a line each;
- in a pytest-xdist worker, the same lines on the worker's standard error,
  which xdist leaves connected to the terminal of ``pytest -n N``, prefixed
  with the worker's id (``[gw1]``), so a cold ``-n 2`` run is never silent.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import time
from typing import Any

import pytest

__all__ = ["LOGGER", "TerminalProgress", "WorkerProgress", "install", "uninstall"]

LOGGER = logging.getLogger("robustprune")

# "7/19 wt-small_cnn-digits repeat 1 done (31 s)": the work pool's count (failures and skips stay lines)
_PIECES = re.compile(r"^(\d+)/(\d+) .* done \(\d+ s\)$")


def _line(started: float, record: logging.LogRecord) -> str:
    return f"robustprune {record.created - started:6.1f}s {record.getMessage()}"


class TerminalProgress(logging.Handler):
    """One line per record through pytest's terminal reporter, past output capture; on a terminal, the work
    pool's finished-piece count drives a progress bar instead of printing a line per piece."""

    def __init__(self, config: pytest.Config, started: float):
        super().__init__(logging.INFO)
        self.config, self.started = config, started
        self._bar: Any = None

    def emit(self, record: logging.LogRecord) -> None:
        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is None:
            return
        message = record.getMessage()
        count = _PIECES.match(message)
        # the bar is drawn on stderr: only when stderr is a terminal (not `pytest 2>log`)
        if count is not None and sys.stderr.isatty() and self._update_bar(count, message):
            return
        capture = self.config.pluginmanager.get_plugin("capturemanager")
        line = _line(self.started, record)
        if capture is not None:
            with capture.global_and_fixture_disabled():
                self._write(reporter, line)
        else:
            self._write(reporter, line)

    def _write(self, reporter: Any, line: str) -> None:
        if self._bar is not None:
            self._bar.clear()
        reporter.write_line(line)
        if self._bar is not None:
            self._bar.refresh()

    def _update_bar(self, count: re.Match[str], message: str) -> bool:
        try:
            from tqdm import tqdm
        except ImportError:  # a line per piece, then
            return False
        done, total = int(count.group(1)), int(count.group(2))
        if self._bar is None or self._bar.total != total:
            self.close_bar()
            self._bar = tqdm(total=total, desc="robustprune work", unit="piece", file=sys.stderr, leave=False,
                             dynamic_ncols=True)
        self._bar.n = done
        self._bar.set_postfix_str(message[count.end():][:60], refresh=True)
        if done >= total:
            self.close_bar()
        return True

    def close_bar(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def close(self) -> None:
        self.close_bar()
        super().close()


class WorkerProgress(logging.Handler):
    """In a pytest-xdist worker: lines on the worker's stderr (xdist leaves it on the controller's terminal),
    past the worker's output capture."""

    def __init__(self, config: pytest.Config, worker: str, started: float):
        super().__init__(logging.INFO)
        self.config, self.worker, self.started = config, worker, started

    def emit(self, record: logging.LogRecord) -> None:
        line = f"[{self.worker}] {_line(self.started, record)}\n".encode(errors="replace")
        capture = self.config.pluginmanager.get_plugin("capturemanager")
        with contextlib.ExitStack() as stack, contextlib.suppress(OSError):  # nobody reading: not worth a failure
            if capture is not None:
                stack.enter_context(capture.global_and_fixture_disabled())
            os.write(2, line)


def _live_logging(config: pytest.Config) -> bool:
    """Whether pytest shows INFO records live itself (``--log-cli-level=INFO`` or lower, or ``log_cli`` in the ini
    file without a higher level): then it shows progress, in its own format."""
    try:
        level = config.getoption("log_cli_level") or config.getini("log_cli_level") or \
            config.getoption("log_level") or config.getini("log_level")
        if not (config.getoption("log_cli_level") or config.getini("log_cli")):
            return False
    except ValueError:  # the logging plugin is disabled (-p no:logging)
        return False
    if not level:
        return True
    number = int(level) if str(level).isdigit() else logging.getLevelName(str(level).upper())
    return isinstance(number, int) and number <= logging.INFO


def install(config: pytest.Config, started: float | None = None) -> logging.Handler | None:
    """Show the ``robustprune`` logger's INFO records for this session (see the module's docstring); returns the
    handler to :func:`uninstall` at the end, ``None`` when nothing is to be shown."""
    if LOGGER.level == logging.NOTSET:  # a level the user's logging configuration set is kept
        LOGGER.setLevel(logging.INFO)
    if config.option.verbose < 0 or _live_logging(config):
        return None
    started = time.monotonic() if started is None else started
    # record.created is wall-clock time: shift the start to it, so lines count seconds since the session began
    wall_start = time.time() - (time.monotonic() - started)
    workerinput = getattr(config, "workerinput", None)
    handler: logging.Handler = (WorkerProgress(config, str(workerinput.get("workerid", "gw")), wall_start)
                                if workerinput is not None else TerminalProgress(config, wall_start))
    LOGGER.addHandler(handler)
    return handler


def uninstall(handler: logging.Handler | None) -> None:
    if handler is not None:
        LOGGER.removeHandler(handler)
        handler.close()
