"""A content-addressed artifact store: every result kept under a key made of what determines it.

Entries are written atomically (temporary file, fsync, rename). Each carries
two tags over its kind, its key and its content:

- a SHA-256 digest, always checked: a file truncated, altered, or copied
  under another entry's name is detected on read, reported, removed and
  recomputed rather than trusted;
- an HMAC-SHA256 with a secret key, when ``$ROBUSTPRUNE_STORE_KEY`` is set
  (a CI secret, say): anyone who can write the store can recompute a digest,
  but not the HMAC. With a key, an entry that fails authentication is never
  used; it is recomputed, and the run says so.

Files and folders respect the umask, so a team can share a store. See
docs/trusting-results.md for the threat model.
"""

from __future__ import annotations

import errno
import hashlib
import hmac
import io
import json
import os
import tempfile
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from filelock import FileLock

from ..core.datasource import STORE_ENV, can_write, default_store_root, new_file_mode
from ..core.results import StoreError
from .torchload import load_problem

__all__ = [
    "KEY_ENV", "STORE_ENV", "EntryCheck", "NotStored", "Store", "StoreReadError", "StoreReadOnlyError", "StoreWarning",
    "StoreWriteError", "default_store_root", "make_key",
]

KEY_ENV = "ROBUSTPRUNE_STORE_KEY"
"""The environment variable holding the store's authentication key (any string; keep it secret)."""

_MAGIC_V1 = b"RPSTORE1"  # magic, SHA-256 of the payload, payload (robustprune 0.1: no key, no binding)
_MAGIC = b"RPSTORE2"  # magic, digest, HMAC (zeros without a key), payload; both tags bind kind and key
_TAG = 32
_NO_MAC = bytes(_TAG)
_LOCKS = "locks"


_FILE_MODE = new_file_mode()  # what open() would give a new file: a shared store stays shared


class NotStored(LookupError):
    """Raised under :meth:`Store.lookup_only` where an entry would have to be computed."""

    def __init__(self, kind: str, key: str):
        super().__init__(f"{kind} {key[:12]} is not in the store")
        self.kind, self.key = kind, key


class StoreReadOnlyError(StoreError):
    """The store cannot be written, and something it lacks had to be computed."""


class StoreReadError(StoreError):
    """An entry exists but cannot be read: permissions, a file where a folder should be."""


class StoreWriteError(StoreError):
    """Writing to the store failed: a full disk, a read-only filesystem, missing permissions."""


class StoreWarning(UserWarning):
    """A store entry was damaged or failed authentication, and will be recomputed."""


def make_key(spec: Any) -> str:
    """A stable hash of a JSON-able spec (dict keys sorted, floats by repr)."""
    text = json.dumps(spec, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def store_key_from_env() -> bytes | None:
    """``$ROBUSTPRUNE_STORE_KEY`` as bytes, or ``None`` when unset or empty."""
    value = os.environ.get(KEY_ENV, "")
    return value.encode() if value else None


@dataclass(frozen=True)
class EntryCheck:
    """One entry read back: what is wrong with it (``None``: sound) and whether its HMAC was verified."""

    kind: str
    key: str
    path: Path
    problem: str | None
    authenticated: bool


_FROM_ENV: Any = object()


class Store:
    """Files under ``root/<kind>/<key[:2]>/<key>.pt``.

    ``auth_key``: the HMAC key (default: ``$ROBUSTPRUNE_STORE_KEY``; ``None``:
    no authentication). ``root`` may start with ``~``.
    """

    def __init__(self, root: Path | str | None = None, *, auth_key: bytes | None = _FROM_ENV):
        self.root = Path(root).expanduser().resolve() if root is not None else default_store_root()
        # an empty key is no key: it would authenticate nothing
        self.auth_key: bytes | None = (store_key_from_env() if auth_key is _FROM_ENV else auth_key) or None
        self.rejected: list[str] = []  # entries that failed authentication in this process
        self._lookup_only = False
        self._read_only: bool | None = None
        self._recording: set[tuple[str, str]] | None = None
        self._inspecting = False

    # ------------------------------------------------------------------ state

    @property
    def authenticated(self) -> bool:
        """True when entries are written with, and checked against, an HMAC key."""
        return self.auth_key is not None

    @property
    def read_only(self) -> bool:
        """True when the store's folder exists but cannot be written (probed once, by writing a file)."""
        if self._read_only is None:
            self._read_only = self.root.is_dir() and not can_write(self.root)
        return self._read_only

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

    def note_rejected(self, entries: Iterable[str]) -> None:
        """Count entries (``kind/key``) that failed authentication, here or in a worker process, once each."""
        known = set(self.rejected)
        self.rejected += [entry for entry in dict.fromkeys(entries) if entry not in known]

    @contextmanager
    def inspecting(self) -> Iterator[None]:
        """Read without repairing while the block runs: an entry that is damaged or fails authentication reads
        as absent, but is neither removed, nor warned about, nor counted (``robustprune store`` reports it)."""
        previous, self._inspecting = self._inspecting, True
        try:
            yield
        finally:
            self._inspecting = previous

    @contextmanager
    def recording(self) -> Iterator[set[tuple[str, str]]]:
        """Collect every ``(kind, key)`` read while the block runs (found or not): what a suite references."""
        previous, self._recording = self._recording, set()
        try:
            yield self._recording
        finally:
            self._recording = previous

    @property
    def looking_up(self) -> bool:
        """True inside :meth:`lookup_only`: work about to compute should raise :class:`NotStored` before it
        says anything."""
        return self._lookup_only

    # ------------------------------------------------------------------ entries

    def path(self, kind: str, key: str) -> Path:
        return self.root / kind / key[:2] / f"{key}.pt"

    def contains(self, kind: str, key: str) -> bool:
        return self.path(kind, key).is_file()

    def entries(self) -> Iterator[tuple[str, str, Path]]:
        """Every entry file as ``(kind, key, path)``; temporary files and locks are not entries."""
        if not self.root.is_dir():
            return
        for kind_dir in sorted(p for p in self.root.iterdir() if p.is_dir() and p.name != _LOCKS):
            for path in sorted(kind_dir.glob("??/*.pt")):
                if not path.name.startswith(".tmp-"):
                    yield kind_dir.name, path.stem, path

    def _tags(self, kind: str, key: str, payload: bytes) -> tuple[bytes, bytes]:
        bound = kind.encode() + b"\0" + key.encode() + b"\0"
        digest = hashlib.sha256(bound + payload).digest()
        mac = hmac.new(self.auth_key, bound + payload, hashlib.sha256).digest() if self.auth_key else _NO_MAC
        return digest, mac

    def _check(self, kind: str, key: str, raw: bytes) -> tuple[str | None, bool, bytes]:
        """(problem, authenticated, payload) of an entry's bytes; problem ``None`` when it may be used."""
        if raw.startswith(_MAGIC):
            if len(raw) < len(_MAGIC) + 2 * _TAG:
                return "truncated", False, b""
            digest = raw[len(_MAGIC):len(_MAGIC) + _TAG]
            mac = raw[len(_MAGIC) + _TAG:len(_MAGIC) + 2 * _TAG]
            payload = raw[len(_MAGIC) + 2 * _TAG:]
            expected_digest, expected_mac = self._tags(kind, key, payload)
            if not hmac.compare_digest(digest, expected_digest):
                return "checksum mismatch: truncated, modified, or another entry's content", False, payload
            if self.auth_key is None:
                return None, False, payload
            if not hmac.compare_digest(mac, expected_mac):
                return "failed authentication", False, payload
            return None, True, payload
        if raw.startswith(_MAGIC_V1):  # written by robustprune 0.1: content only, never authenticated
            if len(raw) < len(_MAGIC_V1) + _TAG:
                return "truncated", False, b""
            digest, payload = raw[len(_MAGIC_V1):len(_MAGIC_V1) + _TAG], raw[len(_MAGIC_V1) + _TAG:]
            if hashlib.sha256(payload).digest() != digest:
                return "checksum mismatch: truncated or modified", False, payload
            if self.auth_key is not None:
                return "failed authentication (written without a key)", False, payload
            return None, False, payload
        return "not a robustprune store file", False, b""

    def check(self, kind: str, key: str) -> EntryCheck:
        """Read one entry back and check its tags and that its payload loads (nothing is removed)."""
        path = self.path(kind, key)
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return EntryCheck(kind, key, path, "missing", False)
        problem, authenticated, payload = self._check(kind, key, raw)
        if problem is None:
            try:
                torch.load(io.BytesIO(payload), weights_only=True)
            except Exception as exc:  # noqa: BLE001 - any unreadable payload is damage
                problem = f"unreadable ({load_problem(exc)})"
        return EntryCheck(kind, key, path, problem, authenticated)

    def load_record(self, kind: str, key: str) -> dict[str, Any] | None:
        """The stored ``{"spec", "value"}`` record, or ``None`` if absent, damaged or failing authentication.

        A damaged entry is removed; one that fails authentication is left for
        its recomputation to overwrite. Either is said once, as a
        :class:`StoreWarning`.
        """
        if self._recording is not None:
            self._recording.add((kind, key))
        path = self.path(kind, key)
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StoreReadError(
                f"cannot read the store entry {path}: {exc.strerror or exc}; check the permissions of the store "
                f"{self.root} (a shared store needs group read and write, see docs/trusting-results.md)") from None
        problem, _, payload = self._check(kind, key, raw)
        if problem is None:
            try:
                record: dict[str, Any] = torch.load(io.BytesIO(payload), weights_only=True)
                return record
            except Exception as exc:  # noqa: BLE001 - any unreadable payload is treated as damage
                problem = f"unreadable ({load_problem(exc)})"
        if self._inspecting:
            return None
        if problem.startswith("failed authentication"):
            first = not self.rejected
            self.note_rejected([f"{kind}/{key}"])
            if first:  # once per process: the count is in the report
                warnings.warn(
                    f"store entry {path} {problem} with ${KEY_ENV}; it is not used but recomputed (and so is "
                    "every other entry that fails; see docs/trusting-results.md)", StoreWarning, stacklevel=3)
            return None
        warnings.warn(f"store entry {path} is damaged ({problem}); removing it and recomputing", StoreWarning,
                      stacklevel=3)
        path.unlink(missing_ok=True)
        return None

    def load(self, kind: str, key: str) -> Any | None:
        """The stored value, or ``None`` if absent, damaged (then removed) or failing authentication."""
        record = self.load_record(kind, key)
        return None if record is None else record["value"]

    @contextmanager
    def claim(self, kind: str, key: str) -> Iterator[None]:
        """Hold the right to compute one entry: other processes (xdist workers, Ray tasks) wait.

        Use as: load; if missing, ``with store.claim(...)``: load again, and
        compute only if still missing. No piece of work is then done twice.
        Under :meth:`lookup_only`, raises :class:`NotStored`; on a read-only
        store, :class:`StoreReadOnlyError` (the entry would have to be computed).
        """
        if self._lookup_only:
            raise NotStored(kind, key)
        if self.read_only:
            raise StoreReadOnlyError(
                f"the store {self.root} is read-only and lacks {kind} {key[:12]}, which this run must compute; "
                "make it writable, or run with --store pointing at a writable folder (a copy of it)")
        lock_path = self.root / _LOCKS / kind / f"{key}.lock"
        try:
            lock_path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise _write_error(self.root, lock_path.parent, exc) from None
        with FileLock(str(lock_path), mode=_FILE_MODE):
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
        line = f"{time.strftime('%Y-%m-%dT%H:%M:%S')} pid={os.getpid()} {kind} {key} {what}\n"
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            # one write() on an O_APPEND file: lines from concurrent processes do not interleave
            fd = os.open(self.root / "work.log", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
            try:
                os.write(fd, line.encode())
            finally:
                os.close(fd)
        except OSError as exc:
            raise _write_error(self.root, self.root / "work.log", exc) from None

    def save(self, kind: str, key: str, value: Any, spec: Any = None) -> Path:
        """Write atomically: readers see the old entry, no entry, or the whole new one."""
        buffer = io.BytesIO()
        torch.save({"spec": json.loads(json.dumps(spec, default=str)), "value": value}, buffer)
        payload = buffer.getvalue()
        digest, mac = self._tags(kind, key, payload)
        path = self.path(kind, key)
        tmp: str | None = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".pt")
            with os.fdopen(fd, "wb") as f:
                f.write(_MAGIC)
                f.write(digest)
                f.write(mac)
                f.write(payload)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, _FILE_MODE)  # mkstemp makes 0600: the umask decides, as for any new file
            os.replace(tmp, path)
        except OSError as exc:
            if tmp is not None:
                Path(tmp).unlink(missing_ok=True)
            raise _write_error(self.root, path, exc) from None
        except BaseException:
            if tmp is not None:
                Path(tmp).unlink(missing_ok=True)
            raise
        return path


def _write_error(root: Path, path: Path, exc: OSError) -> StoreWriteError:
    """One message naming the store, the file and the fix, for any failure to write the store."""
    reason = exc.strerror or str(exc)
    fix = {errno.ENOSPC: "free space on that disk, or run with --store on another disk",
           errno.EDQUOT: "free space in your quota, or run with --store elsewhere",
           errno.EROFS: "the filesystem is read-only: run with --store pointing at a writable folder",
           errno.EACCES: "give this user write permission there, or run with --store elsewhere",
           errno.EPERM: "give this user write permission there, or run with --store elsewhere"}.get(
        exc.errno or 0, "check the folder, or run with --store elsewhere")
    return StoreWriteError(f"cannot write to the store {root}: {reason} ({path}); {fix}")
