"""The report as data: one JSON-able dict per suite, built from its results, merged across xdist workers.

Built from a :class:`~robustprune.core.results.SuiteRun` without recomputing
anything; the verdict of a row is the outcome of the suite's checks for that
case (:func:`apply_verdicts`). Tables, Markdown and figures are rendered from
this data only (:mod:`robustprune.report.tables`, :mod:`robustprune.report.figures`).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from typing import Any

from ..core.cases import Case, Measure
from ..core.results import CaseError, CaseResult, RepeatCurves, SuiteRun
from ..core.shifts import NOMINAL
from . import series

__all__ = ["REPORT_VERSION", "apply_verdicts", "build_report", "deployable", "merge_reports"]

REPORT_VERSION = 1


def _verdict(outcomes: list[str] | None, error: str | None, total: int | None = None) -> str:
    if error is not None:
        return "error"
    if not outcomes:
        return "not checked"
    failed = sum(1 for o in outcomes if o == "failed")
    if failed:
        return f"FAIL ({failed}/{len(outcomes)} checks)"
    if total is not None and len(outcomes) < total:  # Ctrl-C, -x or -k stopped or left out some of its checks
        return f"incomplete ({len(outcomes)} of {total} checks)"
    if all(o == "skipped" for o in outcomes):
        return "skipped"
    return "pass"


def build_report(run: SuiteRun, suite_file: str) -> dict[str, Any]:
    """Everything the tables, the JSON and the Markdown show, as plain data (verdicts come later).

    Plain JSON-able data, so that pytest-xdist workers can send their part to
    the controller, which merges them with :func:`merge_reports`.
    """
    suite = run.suite
    kinds = {s.label: s.kind for s in run.shifts}
    tables: dict[tuple[str, str], dict[str, Any]] = {}
    cases_out = []
    for key, result in run.results.items():
        table = tables.setdefault((key.model, key.dataset), {
            "model": key.model, "dataset": key.dataset, "rows": [],
            "num_classes": run.num_classes.get(key.dataset),
        })
        if isinstance(result, CaseError):
            table["rows"].append({"method": key.method, "case": key.id, "error": str(result).splitlines()[0]})
            continue
        # the dataset's score (every row of a table shares it): headers name it
        table.setdefault("metric", dict(result.metric))
        # where each shifted test set came from: the same for every method of a model x dataset
        table.setdefault("shift_sources", {}).update(result.shift_sources)
        table.setdefault("shift_errors", {}).update(result.shift_errors)
        view = Case(functools.partial(_identity, result), suite, run.entries, key)
        single = view.single_network  # a pruned checkpoint: one network, so no prune potential
        groups: dict[str, dict[str, Any]] = {}
        for entry in run.entries:
            failed = [m.label for m in entry.members if m.label in result.shift_errors]
            if single or failed:
                groups[entry.label] = {"mean": None, "min": None, "worst": None,
                                       "members": {m.label: None for m in entry.members}}
                if failed:  # the shift's own message is under the table (shift_error_notes)
                    groups[entry.label]["error"] = f"{', '.join(failed)} failed"
                continue
            group = view.group(entry.label)
            summary = group.summary()
            groups[entry.label] = {"mean": summary.mean, "min": summary.min, "worst": summary.worst,
                                   "members": summary.values,
                                   "mean_estimate": _estimate(group.mean_prune_potential),
                                   "min_estimate": _estimate(group.min_prune_potential)}
        gate = _gate(view) if suite.gate is not None else None
        shifted = [s.label for s in run.shifts if s.label != NOMINAL and s.label not in result.shift_errors]
        dee_measures = {s: view.delta_excess_error(s) for s in shifted}
        dee = {s: float(m) for s, m in dee_measures.items()}
        worst_dee = max(dee, key=lambda s: dee[s]) if dee else None
        gate_index = list(result.ratios).index(view.gate_ratio)
        table["rows"].append({
            "method": key.method,
            "case": key.id,
            "structured": result.method["structured"],
            # how a structured method allocated channels: "layer" (each layer its own) or "group" (whole channels)
            "allocation": (result.method.get("params") or {}).get("allocation"),
            "parent_accuracy": result.parent_accuracy(NOMINAL),
            "nominal_prune_potential": None if single else float(view.prune_potential(NOMINAL)),
            "nominal_prune_potential_estimate": None if single else _estimate(view.prune_potential(NOMINAL)),
            "repeats": view.repeats,
            "single_network": single,
            "pruned_checkpoint": result.method.get("pruned_checkpoint"),
            "gate": gate,
            "groups": groups,
            "gate_ratio": view.gate_ratio,
            "gate_achieved_ratio": result.achieved[gate_index],
            "gate_accuracy_loss": float(view.accuracy_loss(NOMINAL)),
            "max_delta_excess_error": dee[worst_dee] if worst_dee else None,
            "max_delta_excess_error_estimate": _estimate(dee_measures[worst_dee]) if worst_dee else None,
            "max_delta_excess_error_shift": worst_dee,
            "gate_costs": _gate_costs(result.costs, gate_index),
            **_beyond_row_fields(result, view.gate_ratio),
        })
        cases_out.append({
            "id": key.id, "method": result.method, "model": key.model, "dataset": key.dataset,
            "metric": dict(result.metric),
            "ratios": list(result.ratios), "achieved_ratios": list(result.achieved),
            "parent_key": result.parent_key, "step_keys": list(result.step_keys),
            "accuracy": result.accuracy, "seconds": round(result.seconds, 2),
            "repeats": [_repeat(r) for r in result.repeats],
            "estimates": _estimates(view, run, single),
            "costs": result.costs, "shift_sources": dict(result.shift_sources),
            "shift_errors": dict(result.shift_errors),
            "single_network": single, "deploy_gate": gate,
            "gate_ratio": view.gate_ratio,
            "similarity": result.similarity.to_dict() if result.similarity is not None else None,
            "features": result.features.to_dict() if result.features is not None else None,
            "series": series.case_series({"ratios": list(result.ratios),
                                          "repeats": [_repeat(r) for r in result.repeats]}, suite.delta, kinds),
        })
    return {
        "version": REPORT_VERSION,
        "suite": suite_file,
        "delta": suite.delta,
        "ratios": list(suite.ratios),
        "methods": [*suite.methods, *suite.pruned_checkpoints],
        "repeats": suite.repeats,
        "bootstrap": suite.bootstrap,
        "confidence": suite.confidence,
        "noise_draws": suite.noise_draws,
        "shifts": [e.label for e in run.entries],
        "deploy_gate": suite.gate.to_dict() if suite.gate is not None else None,
        "tables": list(tables.values()),
        "cases": cases_out,
        "shift_kinds": kinds,
        "shift_members": {e.label: [m.label for m in e.members] for e in run.entries},
        "similarity": suite.similarity.to_dict() if suite.similarity else None,
        "features": suite.features.to_dict() if suite.features else None,
        "robust_training": dict(run.robust_training) if run.robust_training is not None else None,
        "numerics": dict(run.numerics) if run.numerics is not None else None,
        "store": dict(run.store) if run.store is not None else None,
    }


def _gate(view: Case) -> dict[str, Any]:
    """The deploy gate's outcome; one it cannot judge (a gated shift failed) does not pass, saying why."""
    try:
        return view.deploy_gate().to_dict()
    except CaseError as exc:
        return {"passed": False, "summary": f"not judged: {exc}", "error": str(exc)}


def _identity(result: CaseResult) -> CaseResult:
    return result


def _estimate(measure: Measure) -> dict[str, Any] | None:
    """A number's spread as the JSON carries it: mean, std, per-repeat values, interval and its level."""
    return measure.estimate.to_dict() if measure.estimate is not None else None


def _repeat(curves: RepeatCurves) -> dict[str, Any]:
    """One repeat as the JSON carries it: its networks and its accuracies (a list of draws per shift)."""
    return {"seed": curves.seed, "parent_key": curves.parent_key, "step_keys": list(curves.step_keys),
            "achieved_ratios": list(curves.achieved),
            "accuracy": {shift: [list(draw) for draw in draws] for shift, draws in curves.accuracy.items()}}


def _estimates(view: Case, run: SuiteRun, single: bool) -> dict[str, Any]:
    """Every reported number of a case with its spread: accuracy and accuracy loss of each network on each shift,
    prune potential per shift and per shift entry (mean and min over its members), excess and delta excess
    error at each ratio, the groups' mean excess and delta excess error at each ratio and the delta excess
    error's slope."""
    labels = [s.label for s in run.shifts if s.label not in view.result.shift_errors]
    ratios = list(view.ratios)
    out: dict[str, Any] = {
        "parent_accuracy": {s: _estimate(view.parent_accuracy(s)) for s in labels},
        "accuracy": {s: [_estimate(view.accuracy(s, r)) for r in ratios] for s in labels},
        "accuracy_loss": {s: [_estimate(view.accuracy_loss(s, r)) for r in ratios] for s in labels},
        "excess_error": {s: [_estimate(view.excess_error(s, r)) for r in ratios] for s in labels if s != NOMINAL},
        "delta_excess_error": {s: [_estimate(view.delta_excess_error(s, r)) for r in ratios]
                               for s in labels if s != NOMINAL},
    }
    if not single:
        out["prune_potential"] = {s: _estimate(view.prune_potential(s)) for s in labels}
        # the paper's aggregates over a group of test sets: mean excess error, and delta e against the ratio
        # an entry with a failed member has no group numbers (its checks say why)
        usable = [e for e in run.entries if all(m.label in labels for m in e.members)]
        groups = [e for e in usable if any(m.label != NOMINAL for m in e.members)]
        out["group_prune_potential"] = {e.label: {"mean": _estimate(view.group(e.label).mean_prune_potential),
                                                  "min": _estimate(view.group(e.label).min_prune_potential)}
                                        for e in usable}
        out["group_excess_error"] = {e.label: [_estimate(view.group(e.label).mean_excess_error(r)) for r in ratios]
                                     for e in groups}
        out["group_delta_excess_error"] = {e.label: [_estimate(view.group(e.label).mean_delta_excess_error_at(r))
                                                     for r in ratios] for e in groups}
        out["delta_excess_error_slope"] = {e.label: _estimate(view.group(e.label).delta_excess_error_slope)
                                           for e in groups}
        if groups:  # over every shift evaluated: what the report's figure fits
            out["delta_excess_error_slope_all"] = _estimate(view.delta_excess_error_slope(
                [s for s in labels if s != NOMINAL]))
    return out


def _beyond_row_fields(result: CaseResult, gate_ratio: float) -> dict[str, Any]:
    """Per table row: similarity at the gate ratio and the features summary."""
    sim = result.similarity
    curve = sim.curve_at(gate_ratio) if sim is not None else None
    return {
        "similarity": None if sim is None or curve is None else {
            "eps": list(sim.eps), "agreement": list(curve.agreement), "distance": list(curve.distance),
            "baseline": sim.baseline.to_dict() if sim.baseline is not None else None,
        },
        "features": result.features.to_dict() if result.features is not None else None,
    }


def merge_reports(parts: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Combine partial reports of the same suites (one per xdist worker) into one per suite."""
    merged: dict[str, dict[str, Any]] = {}
    for part in parts:
        first = part["suite"] not in merged
        target = merged.setdefault(part["suite"], {**part, "tables": [], "cases": []})
        if not first and part.get("store") and target.get("store"):
            # each worker lists the entries it rejected; two workers may have met the same one
            entries = list(dict.fromkeys([*target["store"].get("rejected_entries", ()),
                                          *part["store"].get("rejected_entries", ())]))
            target["store"] = {**target["store"], "rejected": len(entries), "rejected_entries": entries}
        known = {c["id"] for c in target["cases"]}
        target["cases"] += [c for c in part["cases"] if c["id"] not in known]
        for table in part["tables"]:
            same = next((t for t in target["tables"]
                         if (t["model"], t["dataset"]) == (table["model"], table["dataset"])), None)
            if same is None:
                target["tables"].append({**table, "rows": list(table["rows"]),
                                         "shift_sources": dict(table.get("shift_sources", {})),
                                         "shift_errors": dict(table.get("shift_errors", {}))})
            else:
                have = {r["case"] for r in same["rows"]}
                same["rows"] += [r for r in table["rows"] if r["case"] not in have]
                same.setdefault("shift_sources", {}).update(table.get("shift_sources", {}))
                same.setdefault("shift_errors", {}).update(table.get("shift_errors", {}))
    for report in merged.values():
        for table in report["tables"]:
            table["rows"].sort(key=lambda r: report["methods"].index(r["method"]))
    return [r for r in merged.values() if r["tables"]]


def apply_verdicts(report: dict[str, Any], outcomes: dict[tuple[str, str], list[str]],
                   totals: dict[tuple[str, str], int] | None = None) -> dict[str, Any]:
    """Set each row's verdict from the outcomes of its checks, keyed by (suite file, case id); with ``totals``
    (the checks each case has), a case whose checks did not all run is "incomplete (k of n checks)"."""
    for table in report["tables"]:
        for row in table["rows"]:
            key = (report["suite"], row["case"])
            verdict = _verdict(outcomes.get(key), row.get("error"), (totals or {}).get(key))
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
        # per batch size: median speed-up over the parent, interquartile range, whether it includes 1
        "speedups": [{"batch": t["batch"], "speedup": t["speedup"], "low": t["speedup_low"],
                      "high": t["speedup_high"], "within_noise": t["within_noise"]} for t in gate.get("timing", [])],
        # a structured network whose latency the suite did not time (Suite(latency=False), --rp-no-latency)
        **({"timed": False} if gate.get("timed") is False else {}),
    }
