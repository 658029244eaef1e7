"""Looking after a store: what is in it, whether it can be trusted, and removing what is no longer wanted.

The functions here need no suite: :func:`store_info` counts entries,
:func:`verify_entries` reads every entry back (digest, HMAC with a key,
payload) and checks each stored pruned network against its own key (its
masks reach the ratio the key names, its masked weights are zero),
:func:`collect_garbage` removes entries, stale temporary files and unheld
locks. Re-deriving evaluations from the stored networks needs the suites
that made them: :meth:`robustprune.engine.engine.Engine.verify_evaluations`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from filelock import FileLock, Timeout

from ..plugin.masks import RATIO_TOLERANCE, ratio_of, within_tolerance
from .store import Store, make_key

__all__ = ["GarbageReport", "StoreInfo", "Verification", "collect_garbage", "store_info", "verify_entries"]

_STALE_SECONDS = 3600  # a temporary file older than this belongs to a process that died mid-write


@dataclass
class StoreInfo:
    """What a store holds: entries and bytes by kind, the numerics its networks were made with."""

    root: Path
    authenticated: bool
    entries: dict[str, int] = field(default_factory=dict)
    bytes: dict[str, int] = field(default_factory=dict)
    numerics: dict[str, int] = field(default_factory=dict)  # one line per distinct numerics -> networks
    locks: int = 0
    temporary: int = 0
    work_log_lines: int = 0

    def lines(self) -> list[str]:
        total = sum(self.bytes.values())
        out = [f"store {self.root}: {sum(self.entries.values())} entries, {_size(total)}, "
               + ("authenticated (ROBUSTPRUNE_STORE_KEY set)" if self.authenticated else "unauthenticated"
                  + " (set ROBUSTPRUNE_STORE_KEY to write and check entries with a key)")]
        out += [f"  {kind:<12} {self.entries[kind]:>7} entries  {_size(self.bytes[kind]):>10}"
                for kind in sorted(self.entries)]
        if self.numerics:
            out.append("  networks by numerics:")
            out += [f"    {count:>5}  {text}" for text, count in sorted(self.numerics.items())]
        out.append(f"  {self.locks} lock files, {self.temporary} temporary files, {self.work_log_lines} lines of "
                   "work.log")
        return out


def store_info(store: Store) -> StoreInfo:
    """Count the entries of ``store`` by kind, and its networks by the numerics they were computed with (reads
    only: a damaged entry is counted, not removed)."""
    info = StoreInfo(store.root, store.authenticated)
    with store.inspecting():
        for kind, key, path in store.entries():
            info.entries[kind] = info.entries.get(kind, 0) + 1
            info.bytes[kind] = info.bytes.get(kind, 0) + path.stat().st_size
            if kind == "network":
                record = store.load_record(kind, key)
                numerics = (record or {}).get("spec", {}).get("numerics")
                if isinstance(numerics, dict):
                    text = ", ".join(f"{k} {numerics[k]}" for k in sorted(numerics))
                    info.numerics[text] = info.numerics.get(text, 0) + 1
    locks = store.root / "locks"
    info.locks = sum(1 for _ in locks.rglob("*.lock")) if locks.is_dir() else 0
    info.temporary = sum(1 for _ in _temporary_files(store))
    log = store.root / "work.log"
    info.work_log_lines = len(log.read_text().splitlines()) if log.is_file() else 0
    return info


@dataclass
class Verification:
    """What :func:`verify_entries` (and the evaluation check) found."""

    checked: int = 0
    authenticated: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def verify_entries(store: Store, progress: Callable[[str], None] | None = None) -> Verification:
    """Read every entry back: its digest (and HMAC, with a key) and payload; every pruned network against its
    key's spec (masks reaching the ratio, masked weights zero). Nothing is removed or recomputed."""
    result = Verification()
    with store.inspecting():
        for count, (kind, key, _) in enumerate(store.entries(), 1):
            check = store.check(kind, key)
            result.checked += 1
            result.authenticated += int(check.authenticated)
            if check.problem is not None:
                result.problems.append(f"{kind} {key[:12]}: {check.problem} ({check.path})")
                continue
            if kind == "network":
                record = store.load_record(kind, key)
                if record is not None and record.get("spec", {}).get("kind") == "pruned":
                    problem = pruned_network_problem(record, key)
                    if problem:
                        result.problems.append(f"network {key[:12]}: {problem}")
            if progress is not None and count % 500 == 0:
                progress(f"verified {count} entries")
    return result


def pruned_network_problem(record: dict[str, Any], key: str | None = None) -> str | None:
    """Whether a stored pruned network is what its key says: its recorded spec hashes to ``key`` (so the ratio
    read from it is the key's), masks removing that ratio (within the host's 0.5 % tolerance), the achieved
    ratio as recorded, and zeros under every mask."""
    spec, value = record.get("spec", {}), record.get("value", {})
    if key is not None and make_key(spec) != key:
        return "its recorded spec does not hash to its key: the spec (its ratio, say) was changed"
    masks, state = value.get("masks"), value.get("state")
    if not isinstance(masks, dict) or not isinstance(state, dict):
        return "no masks or weights stored"
    measured = ratio_of(masks)
    if abs(measured - float(value.get("achieved", -1))) > 1e-6:
        return f"its masks remove {measured:.4f} of the weights, but it records {value.get('achieved')}"
    target = float(spec.get("ratio", -1))
    if not within_tolerance(measured, target):
        return (f"its masks remove {measured:.4f} of the weights, but its key asks for {target} "
                f"(tolerance {RATIO_TOLERANCE:.1%} relative)")
    for name, mask in masks.items():
        weight = state.get(name)
        if weight is None or weight.shape != mask.shape:
            return f"weight {name} missing or of another shape than its mask"
        if bool(torch.any(weight[~mask.bool()] != 0)):
            return f"weight {name} is not zero where its mask removes it"
    return None


@dataclass
class GarbageReport:
    """What :func:`collect_garbage` removed (or, with ``dry_run``, would remove)."""

    entries: list[Path] = field(default_factory=list)
    temporary: list[Path] = field(default_factory=list)
    locks: list[Path] = field(default_factory=list)
    freed: int = 0


def collect_garbage(store: Store, *, keep: Collection[tuple[str, str]] | None = None,
                    older_than: float | None = None, dry_run: bool = False) -> GarbageReport:
    """Remove entries that are not in ``keep`` (``(kind, key)`` pairs; ``None``: keep every entry) and, with
    ``older_than`` (a Unix time), were written before it; stale temporary files; lock files no process holds.

    Run it when no other robustprune process uses the store: a lock file is
    removed while held by nobody, but a process about to take it would not
    see the new one.
    """
    report = GarbageReport()
    if keep is not None or older_than is not None:
        for kind, key, path in store.entries():
            if keep is not None and (kind, key) in keep:
                continue
            if older_than is not None and path.stat().st_mtime >= older_than:
                continue
            report.entries.append(path)
    report.temporary = list(_temporary_files(store, min_age=_STALE_SECONDS))
    for path in [*report.entries, *report.temporary]:
        report.freed += path.stat().st_size
        if not dry_run:
            path.unlink(missing_ok=True)
    locks = store.root / "locks"
    for path in sorted(locks.rglob("*.lock")) if locks.is_dir() else []:
        lock = FileLock(str(path), timeout=0)
        try:
            with lock:
                report.locks.append(path)
                if not dry_run:
                    path.unlink(missing_ok=True)
        except Timeout:  # held: a run is computing that entry now
            continue
    return report


def _temporary_files(store: Store, min_age: float = 0.0) -> Iterator[Path]:
    now = time.time()
    if not store.root.is_dir():
        return
    for path in store.root.glob("*/??/.tmp-*"):
        if now - path.stat().st_mtime >= min_age:
            yield path


def _size(count: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if count < 1024 or unit == "GiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024  # type: ignore[assignment]
    return f"{count} B"  # pragma: no cover
