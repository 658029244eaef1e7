"""Export the networks that passed: ``--rp-export DIR`` / ``robustprune run --export DIR``.

For every case whose verdict is *pass* (every check that ran passed, and the
suite's deploy gate if it declares one), the network at the deploy ratio is
written to ``DIR/<case id>/``:

- ``network.pt``: its state dict, loadable into the model as built by the
  model plugin (``model.load_state_dict(torch.load(path, weights_only=True))``);
  pruned weights are zeros;
- ``compacted.pt2``: for structured methods, the physically smaller network
  (:func:`robustprune.compute.compaction.compact`) as a ``torch.export`` program with
  a dynamic batch size (``torch.export.load(path).module()``), which needs no
  model code;
- ``network.json``: the sidecar: method, ratio asked and achieved, the
  parent's checkpoint hash, the suite, per-shift numbers, the gate's result,
  the robustprune version and the SHA-256 of each file.

Before a file is kept it is read back and run: the reloaded network's outputs
must equal the evaluated network's on a batch of test inputs (bit for bit for
the state dict; within float rounding for the compacted network). A case
folder appears whole or not at all (written to a temporary folder, then
renamed). A failing case exports nothing, and earlier exports of the
session's suites that were not exported again (the case failed, errored or
did not run) are removed, so that ``DIR`` only ever holds networks that
passed in this run. The folder is checked for writability when the session starts,
before any work.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..core.cases import Case
from ..core.results import CaseError, CaseKey, CaseResult
from ..core.shifts import NOMINAL
from ..version import __version__

if TYPE_CHECKING:  # pragma: no cover
    from .engine import Engine

__all__ = ["SIDECAR", "ExportError", "Exported", "case_folder", "check_export_dir", "export_case",
           "remove_earlier_exports"]


SIDECAR = "network.json"
STATE_FILE = "network.pt"
COMPACTED_FILE = "compacted.pt2"
_CHECK_INPUTS = 64  # test inputs the reload check runs


class ExportError(RuntimeError):
    """The export folder cannot be written, or an exported network does not reload to the evaluated one."""


@dataclass(frozen=True)
class Exported:
    """What was written for one case."""

    case_id: str
    folder: Path
    files: tuple[Path, ...]
    note: str = ""  # e.g. why no compacted network was written


def check_export_dir(folder: Path) -> Path:
    """Create ``folder`` if needed and prove it is writable (a probe file is written and removed).

    Called when the session starts, so a bad path fails before anything is trained.
    """
    folder = Path(folder).expanduser()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".robustprune-probe-{uuid.uuid4().hex}"
        with open(probe, "wb") as f:
            f.write(b"robustprune export probe")
        probe.unlink()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        where = f" ({exc.filename})" if exc.filename and str(exc.filename) != str(folder) else ""
        raise ExportError(f"export folder {folder} cannot be written: {reason}{where}") from None
    return folder.resolve()


def case_folder(root: Path, case_id: str, suite_file: str | None = None) -> Path:
    """``root/<case id>``, or ``root/<suite stem>/<case id>`` when one session exports several suites."""
    return root / Path(suite_file).stem / case_id if suite_file else root / case_id


def remove_earlier_exports(root: Path, suites: Iterable[str], keep: Iterable[Path],
                           occupied: Iterable[Path] = ()) -> list[tuple[Path, str]]:
    """Remove earlier exports under ``root``: those one of ``suites`` made, and any in an ``occupied`` folder
    (where a case that did not pass this run would have been written), except those in ``keep``.

    An export is recognised by its sidecar, which names its suite and case;
    nothing else in ``root`` is touched. Returns the removed folders with their case ids.
    """
    suites, keep = set(suites), {Path(p).resolve() for p in keep}
    occupied = {Path(p).resolve() for p in occupied}
    removed = []
    for sidecar in sorted([*root.glob(f"*/{SIDECAR}"), *root.glob(f"*/*/{SIDECAR}")]):
        folder = sidecar.parent.resolve()
        if folder in keep:
            continue
        try:
            written = json.loads(sidecar.read_text())
        except (OSError, ValueError):
            continue  # not ours to judge
        if isinstance(written, dict) and (written.get("suite") in suites or folder in occupied):
            shutil.rmtree(folder)
            removed.append((folder, str(written.get("case"))))
    return removed


def export_case(engine: Engine, key: CaseKey, folder: Path, *, suite_file: str,
                gate: Mapping[str, Any] | None) -> Exported:
    """Write the deployable network of one (computed, passing) case into ``folder``; see the module docs."""
    # this module's folder helpers (check_export_dir) run at pytest start, where torch must not load yet
    import torch

    from ..compute.checkpoints import file_digest

    view = engine.view(key)
    result = view.result
    single = view.single_network
    index = list(result.ratios).index(view.gate_ratio)
    network_key = result.step_keys[index]
    try:
        trained = engine.trained_network(key, network_key)
    except CaseError as exc:
        raise ExportError(str(exc)) from None
    network = trained.network
    data = engine.data(key.dataset)
    inputs = engine.test_inputs(data)[:_CHECK_INPUTS]
    with torch.no_grad():
        expected = network(inputs)

    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".tmp-{folder.name}-"))
    try:
        state_path = staging / STATE_FILE
        _save(torch, {k: v.detach().cpu() for k, v in network.state_dict().items()}, state_path)
        _check_reload(torch, engine, key, data, state_path, inputs, expected)
        files: dict[str, Any] = {"state_dict": {"path": STATE_FILE, "sha256": file_digest(state_path),
                                                "load": "model.load_state_dict(torch.load(path, weights_only=True))"}}
        note = ""
        if result.method.get("structured"):
            compacted, note = _write_compacted(torch, network, trained.masks or {}, data, inputs, expected,
                                               staging / COMPACTED_FILE)
            files["compacted"] = compacted
        sidecar = _sidecar(engine, key, result, view, index, network_key, suite_file, gate, files, note,
                           single, __version__)
        (staging / SIDECAR).write_text(json.dumps(sidecar, indent=1) + "\n")
        for path in staging.iterdir():
            _fsync(path)
        _swap_in(staging, folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return Exported(key.id, folder, tuple(sorted(folder.iterdir())), note)


def _save(torch: Any, value: Any, path: Path) -> None:
    with open(path, "wb") as f:
        torch.save(value, f)


def _fsync(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def _swap_in(staging: Path, folder: Path) -> None:
    """Replace ``folder`` by ``staging`` with renames: readers see the old export or the new one, whole."""
    old = None
    if folder.exists():
        old = folder.parent / f".old-{folder.name}-{uuid.uuid4().hex[:8]}"
        os.replace(folder, old)
    os.replace(staging, folder)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _check_reload(torch: Any, engine: Engine, key: CaseKey, data: Any, path: Path, inputs: Any,
                  expected: Any) -> None:
    """The file, loaded into a freshly built model, must compute exactly what was evaluated."""
    fresh = engine.build(key.model, data)
    fresh.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    fresh.eval()
    with torch.no_grad():
        got = fresh(inputs)
    if not torch.equal(got, expected):
        raise ExportError(f"{key.id}: the exported state dict does not reproduce the evaluated network "
                          f"(max difference {(got - expected).abs().max().item():.3g}); nothing was exported")


def _write_compacted(torch: Any, network: Any, masks: Mapping[str, Any], data: Any, inputs: Any, expected: Any,
                     path: Path) -> tuple[dict[str, Any] | None, str]:
    """The compacted network as a torch.export program, checked after reloading; (None, why) if it cannot be."""
    from ..compute.checkpoints import file_digest
    from ..compute.compaction import CompactionError, compact
    from ..compute.costs import count_params

    try:
        compacted = compact(network, masks, data.train_inputs[:2].clone())
    except CompactionError as exc:
        return None, f"no compacted network: {exc}"
    small = compacted.network.eval()
    try:
        # a dynamic batch size: the program must serve any batch, not the two inputs it was exported with
        program = torch.export.export(small, (inputs[:2],), dynamic_shapes=({0: torch.export.Dim("batch")},))
        torch.export.save(program, str(path))
        with torch.no_grad():
            got = torch.export.load(str(path)).module()(inputs)
    except Exception as exc:  # noqa: BLE001 - a network torch.export cannot capture still has its state dict
        path.unlink(missing_ok=True)
        return None, f"no compacted network: torch.export could not capture it ({type(exc).__name__}: {exc})"
    if not torch.allclose(got, expected, rtol=1e-4, atol=1e-4):
        path.unlink(missing_ok=True)
        return None, (f"no compacted network: the reloaded program differs from the evaluated network by "
                      f"{(got - expected).abs().max().item():.3g}")
    return {"path": COMPACTED_FILE, "sha256": file_digest(path), "format": "torch.export",
            "load": "torch.export.load(path).module()", "params": count_params(small, compacted.masks),
            "kept_channels": {name: len(kept) for name, kept in compacted.kept.items()}}, ""


def _parent_info(engine: Engine, key: CaseKey, parent_key: str) -> dict[str, Any]:
    from ..compute.checkpoints import file_digest

    checkpoint = engine.suite.parent_checkpoints.get(key.model)
    if checkpoint is None:
        return {"trained_by": "robustprune", "store_key": parent_key}
    path = Path(checkpoint)
    return {"checkpoint": str(path), "sha256": file_digest(path) if path.is_file() else None,
            "store_key": parent_key}


def _sidecar(engine: Engine, key: CaseKey, result: CaseResult, view: Case, index: int, network_key: str,
             suite_file: str, gate: Mapping[str, Any] | None, files: dict[str, Any], note: str, single: bool,
             version: str) -> dict[str, Any]:
    shifts = {}
    for label in result.accuracy:
        parent, pruned = result.accuracy[label][0], result.accuracy[label][index + 1]
        entry: dict[str, Any] = {"parent_accuracy": parent, "accuracy": pruned, "accuracy_loss": parent - pruned}
        if label != NOMINAL:
            entry["excess_error"] = float(view.excess_error(label))
            entry["delta_excess_error"] = float(view.delta_excess_error(label))
        shifts[label] = entry
    out: dict[str, Any] = {
        "robustprune_version": version,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "suite": suite_file,
        "case": key.id,
        "method": key.method,
        "model": key.model,
        "dataset": key.dataset,
        "kind": "pruned checkpoint" if single else "method",
        "method_info": result.method,
        "ratio": None if single else view.gate_ratio,
        "ratio_achieved": result.achieved[index],
        "parent": _parent_info(engine, key, result.parent_key),
        "network_store_key": network_key,
        "delta": engine.suite.delta,
        "metric": dict(result.metric),  # what the shifts' accuracy fields hold (top-1 accuracy, mIoU, ...)
        "gate": dict(gate) if gate is not None else None,
        "shifts": shifts,
        "files": files,
        "reload_check": f"outputs of the reloaded network equal the evaluated network's on {_CHECK_INPUTS} test inputs",
    }
    if note:
        out["note"] = note
    return out
