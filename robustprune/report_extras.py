"""The report's beyond-accuracy parts: similarity, informative features, robust training, series, figures.

:mod:`robustprune.report` calls these to fill the JSON report and to render
the compact tables under each model x dataset table; everything here reads
plain data, so ``robustprune report RESULTS.json`` renders it again without
recomputing anything.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Mapping

from tabulate import tabulate

from . import series


def report_fields(engine: Any) -> dict[str, Any]:
    """Top-level report fields: the kind and members of every shift column, and the beyond-accuracy settings."""
    suite = engine.suite
    mix = getattr(engine, "mix", None)
    out: dict[str, Any] = {
        "shift_kinds": {s.label: s.kind for s in engine.shifts},
        "shift_members": {e.label: [m.label for m in e.members] for e in engine.shift_entries},
        "similarity": suite.similarity.to_dict() if suite.similarity else None,
        "features": suite.features.to_dict() if suite.features else None,
        "robust_training": None,
    }
    if mix is not None:
        entries = mix.entries()
        out["robust_training"] = {
            **mix.settings.to_dict(), "members": [m.name for m in mix.members],
            "held_out": [m.name for m in mix.held_out], "report_severity": int(mix.settings.report_severity),
            "train_column": entries[0].label, "test_column": entries[1].label if len(entries) > 1 else None,
        }
    return out


def case_fields(result: Any, gate_ratio: float, delta: float, kinds: Mapping[str, str]) -> dict[str, Any]:
    """Per case: the gate ratio, similarity and features sections, and the figure series."""
    plain = {"ratios": list(result.ratios), "accuracy": result.accuracy}
    return {
        "gate_ratio": gate_ratio,
        "similarity": getattr(result, "similarity", None) or None,
        "features": getattr(result, "features", None) or None,
        "series": series.case_series(plain, delta, kinds),
    }


def row_fields(result: Any, gate_ratio: float) -> dict[str, Any]:
    """Per table row: similarity at the gate ratio and the features summary."""
    sim = getattr(result, "similarity", None) or {}
    gate = next((p for p in sim.get("pruned", []) if abs(p["ratio"] - gate_ratio) < 1e-9), None)
    return {
        "similarity": None if gate is None else {
            "eps": sim["eps"], "agreement": gate["agreement"], "distance": gate["distance"],
            "baseline": sim.get("baseline"),
        },
        "features": getattr(result, "features", None) or None,
    }


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f}"


def similarity_table(report: Mapping[str, Any], table: Mapping[str, Any], fmt: str) -> str | None:
    rows = [r for r in table["rows"] if r.get("similarity")]
    if not rows:
        return None
    settings = report.get("similarity") or {}
    eps = rows[0]["similarity"]["eps"]
    headers = ["method", "gate ratio", *[f"ε {e:g}\nagree % / dist" for e in eps]]
    body = [[r["method"], f"{r['gate_ratio']:g}",
             *[f"{_pct(a)} / {d:.3f}" for a, d in zip(r["similarity"]["agreement"], r["similarity"]["distance"])]]
            for r in rows]
    baseline = next((r["similarity"]["baseline"] for r in rows if r["similarity"].get("baseline")), None)
    if baseline:
        body.append([f"other parent (seed {baseline['seed']})", "-",
                     *[f"{_pct(a)} / {d:.3f}" for a, d in zip(baseline["agreement"], baseline["distance"])]])
    if fmt != "simple":
        headers = [h.replace("\n", " ") for h in headers]
    title = (f"functional similarity to the parent under uniform noise ε ({settings.get('images', '?')} images x "
             f"{settings.get('draws', '?')} draws): top-1 agreement % / softmax l2 distance")
    return f"{title}\n" + tabulate(body, headers=headers, tablefmt=fmt, disable_numparse=True)


def features_table(report: Mapping[str, Any], table: Mapping[str, Any], fmt: str) -> str | None:
    rows = [r for r in table["rows"] if r.get("features")]
    if not rows:
        return None
    f0 = rows[0]["features"]
    headers = ["method", "gate ratio", "subset % of patches\nparent / pruned", "overlap\nIoU %",
               "pruned on parent's subset\nconf % (same class %)", "parent on pruned's subset\nconf % (same class %)"]
    body = []
    for r in rows:
        f = r["features"]
        body.append([r["method"], f"{f['ratio']:g}", f"{_pct(f['parent_size'])} / {_pct(f['pruned_size'])}",
                     _pct(f["overlap"]), f"{_pct(f['pruned_on_parent'])} ({_pct(f['pruned_on_parent_agreement'])})",
                     f"{_pct(f['parent_on_pruned'])} ({_pct(f['parent_on_pruned_agreement'])})"])
    if fmt != "simple":
        headers = [h.replace("\n", " ") for h in headers]
    title = (f"informative features (backward selection, {f0['images']} images, {f0['patch']}x{f0['patch']}-pixel "
             f"patches, subset keeps {f0['threshold'] * 100:g} % of the predicted class's probability)")
    return f"{title}\n" + tabulate(body, headers=headers, tablefmt=fmt, disable_numparse=True)


def robust_training_line(report: Mapping[str, Any]) -> str | None:
    mix = report.get("robust_training")
    if not mix:
        return None
    severities = ",".join(str(s) for s in mix["severities"])
    line = (f"robust training: parents and retrains on the train_shifts mix ({', '.join(mix['members'])}; clean "
            f"{mix['clean'] * 100:.1f} %, else severity {severities}); column {mix['train_column']} = train distribution")
    if mix.get("test_column"):
        line += f", {mix['test_column']} = held-out test distribution ({', '.join(mix['held_out'])})"
    return line


def extra_sections(report: Mapping[str, Any], table: Mapping[str, Any], fmt: str = "simple") -> list[str]:
    """The compact tables printed under one model x dataset table (nothing when the suite asks for none)."""
    return [text for text in (similarity_table(report, table, fmt), features_table(report, table, fmt)) if text]


def write_figures_or_hint(reports: Iterable[Mapping[str, Any]], folder: Path) -> tuple[list[Path], str | None]:
    """Write the figures into ``folder``; without matplotlib, write none and say how to get them."""
    try:
        from .plots import write_figures

        return write_figures(list(reports), folder), None
    except ImportError as exc:
        return [], str(exc)


__all__ = ["case_fields", "extra_sections", "report_fields", "robust_training_line", "row_fields",
           "write_figures_or_hint"]
