"""A content-addressed artifact store: every result kept under a key made of what determines it.

Entries are written atomically (temporary file, fsync, rename) and carry a
SHA-256 of their payload, so a file truncated or altered on disk is detected on
read, reported, removed and recomputed rather than trusted.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from filelock import FileLock

from ..core.datasource import STORE_ENV, default_store_root
from .torchload import load_problem

__all__ = ["STORE_ENV", "NotStored", "Store", "StoreWarning", "default_store_root", "make_key"]

_MAGIC = b"RPSTORE1"
_DIGEST = 32


class NotStored(LookupError):
    """Raised under :meth:`Store.lookup_only` where an entry would have to be computed."""

    def __init__(self, kind: str, key: str):
        super().__init__(f"{kind} {key[:12]} is not in the store")
        self.kind, self.key = kind, key


class StoreWarning(UserWarning):
    """A store entry was damaged and will be recomputed."""


def make_key(spec: Any) -> str:
    """A stable hash of a JSON-able spec (dict keys sorted, floats by repr)."""
    text = json.dumps(spec, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


class Store:
    """Files under ``root/<kind>/<key[:2]>/<key>.pt``."""

    def __init__(self, root: Path | str | None = None):
        self.root = Path(root).resolve() if root is not None else default_store_root()
        self._lookup_only = False

    @contextmanager
    def lookup_only(self) -> Iterator[None]:
        """Read what is stored, compute nothing: the first entry that would be computed raises
        :class:`NotStored` instead (every computation claims its entry first). How an executor finds which
        pieces of work are already done."""
        previous, self._lookup_only = self._lookup_only, True
        try:
            yield
        finally:
            self._lookup_only = previous

    @property
    def looking_up(self) -> bool:
        """True inside :meth:`lookup_only`: work about to compute should raise :class:`NotStored` before it
        says anything."""
        return self._lookup_only

    def path(self, kind: str, key: str) -> Path:
        return self.root / kind / key[:2] / f"{key}.pt"

    def contains(self, kind: str, key: str) -> bool:
        return self.path(kind, key).is_file()

    def load(self, kind: str, key: str) -> Any | None:
        """The stored value, or ``None`` if absent or damaged (a damaged entry is removed)."""
        path = self.path(kind, key)
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return None
        problem = self._check(raw)
        if problem is None:
            try:
                record = torch.load(io.BytesIO(raw[len(_MAGIC) + _DIGEST :]), weights_only=True)
                return record["value"]
            except Exception as exc:  # noqa: BLE001 - any unreadable payload is treated as damage
                problem = f"unreadable ({load_problem(exc)})"
        warnings.warn(
            f"store entry {path} is damaged ({problem}); removing it and recomputing", StoreWarning, stacklevel=2
        )
        path.unlink(missing_ok=True)
        return None

    @staticmethod
    def _check(raw: bytes) -> str | None:
        if not raw.startswith(_MAGIC):
            return "not a robustprune store file"
        if len(raw) < len(_MAGIC) + _DIGEST:
            return "truncated"
        digest, payload = raw[len(_MAGIC) : len(_MAGIC) + _DIGEST], raw[len(_MAGIC) + _DIGEST :]
        if hashlib.sha256(payload).digest() != digest:
            return "checksum mismatch: truncated or modified"
        return None

    @contextmanager
    def claim(self, kind: str, key: str) -> Iterator[None]:
        """Hold the right to compute one entry: other processes (xdist workers, Ray tasks) wait.

        Use as: load; if missing, ``with store.claim(...)``: load again, and
        compute only if still missing. No piece of work is then done twice.
        Under :meth:`lookup_only`, raises :class:`NotStored`.
        """
        if self._lookup_only:
            raise NotStored(kind, key)
        lock_path = self.root / "locks" / kind / f"{key}.lock"
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(lock_path)):
            yield

    def load_or_compute(self, kind: str, key: str, compute: Callable[[], Any], spec: Any, what: str) -> Any:
        """The stored value, or ``compute()``'s, saved; computed by at most one process at a time."""
        value = self.load(kind, key)
        if value is not None:
            return value
        with self.claim(kind, key):
            value = self.load(kind, key)  # another process may have computed it while we waited
            if value is None:
                value = compute()
                self.save(kind, key, value, spec)
                self.log_work(kind, key, what)
        return value

    def log_work(self, kind: str, key: str, what: str) -> None:
        """Append one line per computed artifact to ``work.log``: an audit trail of what was computed where."""
        self.root.mkdir(parents=True, exist_ok=True)
        line = f"{time.strftime('%Y-%m-%dT%H:%M:%S')} pid={os.getpid()} {kind} {key} {what}\n"
        # one write() on an O_APPEND file: lines from concurrent processes do not interleave
        fd = os.open(self.root / "work.log", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)

    def save(self, kind: str, key: str, value: Any, spec: Any = None) -> Path:
        """Write atomically: readers see the old entry, no entry, or the whole new one."""
        buffer = io.BytesIO()
        torch.save({"spec": json.loads(json.dumps(spec, default=str)), "value": value}, buffer)
        payload = buffer.getvalue()
        path = self.path(kind, key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".pt")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(_MAGIC)
                f.write(hashlib.sha256(payload).digest())
                f.write(payload)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path
