"""The robustness report: one table per model x dataset, plus JSON and Markdown files.

Built from the engine's results without recomputing anything; the verdict of
a row is the outcome of the suite's checks for that case.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterable

from tabulate import tabulate

from . import report_extras
from .cases import Case
from .shifts import NOMINAL

REPORT_VERSION = 1


def _verdict(outcomes: list[str] | None, error: str | None) -> str:
    if error is not None:
        return "error"
    if not outcomes:
        return "not checked"
    failed = sum(1 for o in outcomes if o == "failed")
    if failed:
        return f"FAIL ({failed}/{len(outcomes)} checks)"
    if all(o == "skipped" for o in outcomes):
        return "skipped"
    return "pass"


def build_report(engine: Any, suite_file: str) -> dict[str, Any]:
    """Everything the tables, the JSON and the Markdown show, as plain data (verdicts come later).

    Plain JSON-able data, so that pytest-xdist workers can send their part to
    the controller, which merges them with :func:`merge_reports`.
    """
    from .engine import CaseError

    suite = engine.suite
    tables: dict[tuple[str, str], dict[str, Any]] = {}
    cases_out = []
    for key, result in engine.computed().items():
        table = tables.setdefault((key.model, key.dataset), {
            "model": key.model, "dataset": key.dataset, "rows": [],
            "num_classes": engine.data(key.dataset).splits.num_classes,
        })
        if isinstance(result, CaseError):
            table["rows"].append({"method": key.method, "case": key.id, "error": str(result).splitlines()[0]})
            continue
        # where each shifted test set came from: the same for every method of a model x dataset
        table.setdefault("shift_sources", {}).update(getattr(result, "shift_sources", {}))
        view = Case(lambda r=result: r, suite, engine.shift_entries, key.method, key.model, key.dataset)
        single = view.single_network  # a pruned checkpoint: one network, so no prune potential
        groups = {}
        for entry in engine.shift_entries:
            if single:
                groups[entry.label] = {"mean": None, "min": None, "worst": None,
                                       "members": {m.label: None for m in entry.members}}
                continue
            group = view.group(entry.label)
            summary = group.summary()
            groups[entry.label] = {"mean": summary.mean, "min": summary.min, "worst": summary.worst,
                                   "members": summary.values}
        gate = view.deploy_gate().to_dict() if suite.gate is not None else None
        shifted = [s.label for s in engine.shifts if s.label != NOMINAL]
        dee = {s: float(view.delta_excess_error(s)) for s in shifted}
        worst_dee = max(dee, key=dee.get) if dee else None
        gate_index = list(result.ratios).index(view.gate_ratio)
        table["rows"].append({
            "method": key.method,
            "case": key.id,
            "structured": result.method["structured"],
            "parent_accuracy": result.parent_accuracy(NOMINAL),
            "nominal_prune_potential": None if single else float(view.prune_potential(NOMINAL)),
            "single_network": single,
            "pruned_checkpoint": result.method.get("pruned_checkpoint"),
            "gate": gate,
            "groups": groups,
            "gate_ratio": view.gate_ratio,
            "gate_achieved_ratio": result.achieved[gate_index],
            "gate_accuracy_loss": float(view.accuracy_loss(NOMINAL)),
            "max_delta_excess_error": dee[worst_dee] if worst_dee else None,
            "max_delta_excess_error_shift": worst_dee,
            "gate_costs": _gate_costs(result.costs, gate_index),
            **report_extras.row_fields(result, view.gate_ratio),
        })
        cases_out.append({
            "id": key.id, "method": result.method, "model": key.model, "dataset": key.dataset,
            "ratios": list(result.ratios), "achieved_ratios": list(result.achieved),
            "parent_key": result.parent_key, "step_keys": list(result.step_keys),
            "accuracy": result.accuracy, "seconds": round(result.seconds, 2),
            "costs": result.costs, "shift_sources": dict(getattr(result, "shift_sources", {})),
            "single_network": single, "deploy_gate": gate,
            **report_extras.case_fields(result, view.gate_ratio, suite.delta, {s.label: s.kind for s in engine.shifts}),
        })
    return {
        "version": REPORT_VERSION,
        "suite": suite_file,
        "delta": suite.delta,
        "ratios": list(suite.ratios),
        "methods": [*suite.methods, *suite.pruned_checkpoints],
        "shifts": [e.label for e in engine.shift_entries],
        "deploy_gate": suite.gate.to_dict() if suite.gate is not None else None,
        "tables": list(tables.values()),
        "cases": cases_out,
        **report_extras.report_fields(engine),
    }


def merge_reports(parts: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Combine partial reports of the same suites (one per xdist worker) into one per suite."""
    merged: dict[str, dict[str, Any]] = {}
    for part in parts:
        target = merged.setdefault(part["suite"], {**part, "tables": [], "cases": []})
        known = {c["id"] for c in target["cases"]}
        target["cases"] += [c for c in part["cases"] if c["id"] not in known]
        for table in part["tables"]:
            same = next((t for t in target["tables"]
                         if (t["model"], t["dataset"]) == (table["model"], table["dataset"])), None)
            if same is None:
                target["tables"].append({**table, "rows": list(table["rows"]),
                                         "shift_sources": dict(table.get("shift_sources", {}))})
            else:
                have = {r["case"] for r in same["rows"]}
                same["rows"] += [r for r in table["rows"] if r["case"] not in have]
                same.setdefault("shift_sources", {}).update(table.get("shift_sources", {}))
    for report in merged.values():
        for table in report["tables"]:
            table["rows"].sort(key=lambda r: report["methods"].index(r["method"]))
    return [r for r in merged.values() if r["tables"]]


def apply_verdicts(report: dict[str, Any], outcomes: dict[tuple[str, str], list[str]]) -> dict[str, Any]:
    """Set each row's verdict from the outcomes of its checks, keyed by (suite file, case id)."""
    for table in report["tables"]:
        for row in table["rows"]:
            verdict = _verdict(outcomes.get((report["suite"], row["case"])), row.get("error"))
            gate = row.get("gate")
            # the gate is judged from the numbers too: a deselected gate check cannot turn a failed gate into a pass
            if gate is not None and not gate["passed"] and not verdict.startswith(("FAIL", "error")):
                verdict = "FAIL (gate)"
            row["verdict"] = verdict
    return report


def deployable(row: dict[str, Any]) -> bool:
    """A row whose network may ship (and be exported): its verdict is pass, and its deploy gate (if any) passed."""
    gate = row.get("gate")
    return row.get("verdict") == "pass" and (gate is None or bool(gate["passed"]))


def _verdict_cell(row: dict[str, Any]) -> str:
    """The verdict, and with a deploy gate its outcome and worst shift: ``FAIL (1/3 checks)`` /
    ``gate FAIL: accuracy loss 3.1 % under glass_blur@3 > delta 0.5 % (worst of corruptions@3)``."""
    gate = row.get("gate")
    if not gate:
        return row["verdict"]
    return f"{row['verdict']}\ngate {'pass' if gate['passed'] else 'FAIL'}: {gate['summary']}"


def _gate_costs(costs: list[dict[str, Any]], gate_index: int) -> dict[str, Any] | None:
    """Costs at the gate ratio against the parent's: parameters, MAC reduction, measured speed-up."""
    if len(costs) <= gate_index + 1:
        return None
    parent, gate = costs[0], costs[gate_index + 1]
    return {
        "params": gate["params"],
        "parent_params": parent["params"],
        "macs": gate["macs"],
        "parent_macs": parent["macs"],
        "mac_reduction": parent["macs"] / gate["macs"] if gate["macs"] else None,
        "speedup": gate.get("speedup"),
    }


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f}"


def _times(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def table_rows(report: dict[str, Any], table: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    headers = ["method", "parent acc %", "P nominal %"]
    headers += [f"P {label} %\nmean / min (worst)" for label in report["shifts"]]
    headers += ["gate ratio\n(achieved)", "Δe max %\n(shift)", "params k\ngate / parent", "MACs\nreduction",
                "speed-up\n(compacted)", "verdict"]
    rows = []
    for row in table["rows"]:
        if "error" in row:  # the message itself goes under the table (error_notes)
            rows.append([row["method"], *(["-"] * (len(headers) - 2)), row["verdict"]])
            continue
        single = row.get("single_network", False)
        cells = [row["method"], _pct(row["parent_accuracy"]), "n/a" if single else _pct(row["nominal_prune_potential"])]
        for label in report["shifts"]:
            g = row["groups"][label]
            worst = f" ({g['worst']})" if len(g["members"]) > 1 else ""
            cells.append("n/a" if single else f"{_pct(g['mean'])} / {_pct(g['min'])}{worst}")
        dee = row["max_delta_excess_error"]
        shift = f" ({row['max_delta_excess_error_shift']})" if dee is not None else ""
        ratio = "own" if single else f"{row['gate_ratio']:g}"
        cells += [f"{ratio} ({row['gate_achieved_ratio']:.3f})", f"{_pct(dee)}{shift}"]
        costs = row.get("gate_costs")
        if costs is None:
            cells += ["-", "-", "-"]
        else:
            cells += [f"{costs['params'] / 1000:.1f} / {costs['parent_params'] / 1000:.1f}",
                      _times(costs["mac_reduction"]), _times(costs["speedup"])]
        cells.append(_verdict_cell(row))
        rows.append(cells)
    return headers, rows


def single_network_notes(table: dict[str, Any]) -> list[str]:
    """One line per pruned checkpoint of a table: where it came from, its measured sparsity, no prune potential."""
    notes = []
    for row in table["rows"]:
        info = row.get("pruned_checkpoint")
        if not row.get("single_network") or not info:
            continue
        notes.append(f"{row['method']}: pruned checkpoint {info['path']} ({info['layout']}, sha256 "
                     f"{info['sha256'][:12]}), sparsity {info['sparsity']:.3f} measured from the weights; "
                     "prune potential: n/a (single network)")
    return notes


def sources_footnote(sources: dict[str, str] | None) -> str | None:
    """One line saying where each shifted test set came from: generated, or published files (by folder)."""
    if not sources:
        return None
    generated = [label for label, source in sources.items() if source == "generated"]
    if len(generated) == len(sources):
        return "shift sources: all generated by robustprune"
    published: dict[str, list[str]] = {}
    other = []
    for label, source in sources.items():
        if source.startswith("published: "):
            path = Path(source[len("published: "):])
            published.setdefault(str(path.parent), []).append(f"{label} ({path.name})")
        elif source != "generated":
            other.append(f"{label} ({source})")
    parts = [f"published, read from {folder}: {', '.join(items)}" for folder, items in published.items()]
    parts += [", ".join(other)] if other else []
    parts += [f"generated: {', '.join(generated)}"] if generated else []
    return "shift sources: " + "; ".join(parts)


def render_text(report: dict[str, Any], fmt: str = "simple") -> str:
    """The terminal (or, with ``fmt="github"``, Markdown) rendering of one suite's report."""
    parts = [f"suite {report['suite']}\n  P = prune potential at delta {report['delta'] * 100:g} %; Δe = delta "
             f"excess error; Δe, params, MACs and speed-up are read at each method's gate ratio;\n  speed-up = "
             f"measured CPU latency of the parent / of the compacted network (structured methods)"]
    for table in report["tables"]:
        headers, rows = table_rows(report, table)
        if fmt != "simple":  # Markdown and most other formats cannot break a header cell
            headers = [h.replace("\n", " ") for h in headers]
            rows = [[c.replace("\n", "; ") if isinstance(c, str) else c for c in r] for r in rows]
        parts.append(f"\n{table['model']} on {table['dataset']}\n" + tabulate(rows, headers=headers, tablefmt=fmt))
        footnote = sources_footnote(table.get("shift_sources"))
        if footnote:
            parts.append(("\n" if fmt != "simple" else "") + footnote)
        for note in [*single_network_notes(table), *error_notes(table), *chance_notes(report, table)]:
            parts.append(("\n" if fmt != "simple" else "") + note)
        parts += ["\n" + text for text in report_extras.extra_sections(report, table, fmt)]
    mix_line = report_extras.robust_training_line(report)
    if mix_line:
        parts.append("\n" + mix_line)
    return "\n".join(parts)


def error_notes(table: dict[str, Any]) -> list[str]:
    """One line per case that could not be computed, with its error."""
    return [f"error in {row['method']}: {row['error']}" for row in table["rows"] if "error" in row]


def chance_notes(report: dict[str, Any], table: dict[str, Any]) -> list[str]:
    """Shifts under which the parent itself is near chance: any ratio 'qualifies' there, so P says little."""
    classes = table.get("num_classes")
    case = next((c for c in report.get("cases", [])
                 if (c["model"], c["dataset"]) == (table["model"], table["dataset"])), None)
    if not classes or case is None:
        return []
    near = [f"{shift} ({acc[0] * 100:.0f} %)" for shift, acc in case["accuracy"].items()
            if acc and acc[0] <= 1.5 / classes]
    if not near:
        return []
    return [f"parent near chance ({100 / classes:.0f} %) under: {', '.join(near)}; prune potential there "
            "says little"]


def _write_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_report(reports: Iterable[dict[str, Any]], folder: Path, figures: bool = True) -> list[Path]:
    """Write ``robustprune-report.json`` (every curve point, achieved ratios, store keys), ``.md`` and,
    with matplotlib installed, the figures into ``figures/`` (linked from the Markdown)."""
    reports = list(reports)
    folder.mkdir(parents=True, exist_ok=True)
    json_path, md_path = folder / "robustprune-report.json", folder / "robustprune-report.md"
    _write_atomic(json_path, json.dumps({"version": REPORT_VERSION, "suites": reports}, indent=1))
    drawn, hint = report_extras.write_figures_or_hint(reports, folder / "figures") if figures else ([], None)
    links = [f"![{p.stem}](figures/{p.name})" for p in drawn] + ([f"(no figures: {hint})"] if hint else [])
    markdown = "\n\n".join(render_text(r, "github") for r in reports)
    if links:
        markdown += "\n\n## Figures\n\n" + "\n\n".join(links)
    _write_atomic(md_path, "# robustprune report\n\n" + markdown + "\n")
    return [json_path, md_path, *drawn]
