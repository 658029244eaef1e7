"""The report rendered as text: one table per model x dataset, for the terminal (``simple``) or Markdown (``github``).

Everything here reads the report's plain data (:mod:`robustprune.report.build`),
so ``robustprune report RESULTS.json`` re-renders exactly what a run printed.
"""

from __future__ import annotations

import shutil
import sys
import textwrap
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tabulate import tabulate

from ..core.results import TOP1
from ..core.shifts import GENERATED, GENERATED_WITH

__all__ = ["beyond_sections", "compact_tables", "fit_table", "numerics_line", "render_text", "robust_training_line",
           "sources_footnote", "store_line", "table_rows", "terminal_width"]


def _verdict_cell(row: dict[str, Any]) -> str:
    """The verdict, and with a deploy gate its outcome and worst shift: ``FAIL (1/3 checks)`` /
    ``gate FAIL: accuracy loss 3.1 % under glass_blur@3 > delta 0.5 % (worst of corruptions@3)``."""
    gate = row.get("gate")
    if not gate:
        return row["verdict"]
    return f"{row['verdict']}\ngate {'pass' if gate['passed'] else 'FAIL'}: {gate['summary']}"


def fit_table(body: list[list[Any]], headers: list[str], fmt: str, width: int | None = None, *,
              keep_last: bool = False, **options: Any) -> str:
    """``tabulate``, and with ``width`` (plain-text tables) no line wider than it: the widest columns are
    narrowed first, their cells wrapped (long names broken), until the table fits or every column is
    down to a few characters (below about 50 columns a wide table may still run over); with ``keep_last``
    the last column (a verdict) is never narrowed."""
    text = tabulate(body, headers=headers, tablefmt=fmt, **options)
    if width is None or fmt != "simple" or _widest(text) <= width:
        return text
    # headers wrap first (a column is as wide as its content and its header's longest word), then the widest
    # column narrows until the table fits (tabulate pads and separates columns by its own rules)
    limits = [max([len(line) for row in body for line in str(row[i]).split("\n")]
                  + [len(word) for word in str(headers[i]).split()]) for i in range(len(headers))]
    text = tabulate(body, headers=headers, tablefmt=fmt, maxcolwidths=limits, maxheadercolwidths=limits, **options)
    keep = len(headers) - 1 if keep_last else len(headers)  # a verdict column is never broken: CI greps it
    while _widest(text) > width and max(limits[:keep]) > 3:
        widest = limits.index(max(limits[:keep]))
        limits[widest] -= max(1, (_widest(text) - width) // len(limits))
        text = tabulate(body, headers=headers, tablefmt=fmt, maxcolwidths=limits, maxheadercolwidths=limits,
                        **options)
    return text


def _widest(text: str) -> int:
    return max((len(line) for line in text.splitlines()), default=0)


def _wrap(text: str, width: int | None) -> str:
    """Prose lines no wider than ``width``, continuation lines indented."""
    if width is None:
        return text
    return "\n".join(textwrap.fill(line, width, subsequent_indent="  ", break_on_hyphens=False)
                     if len(line) > width else line for line in text.split("\n"))


def compact_tables(report: dict[str, Any], table: dict[str, Any]) -> tuple[list[str], list[list[str]], list[str],
                                                                           list[list[str]], list[str]]:
    """What a terminal of limited width shows of one model x dataset table: a main table (prune potential
    nominal and per shift entry, the gate ratio, the verdict), a details table (parent accuracy, achieved
    ratio, Δe, costs) and one line per deploy gate outcome. Spreads are in the Markdown and the JSON."""
    main_headers = ["method", "P nominal %", *[f"P {label} %" for label in report["shifts"]], "gate ratio",
                    "verdict"]
    detail_headers = ["method", f"parent {score_label(table)} %", "achieved ratio", "Δe max % (shift)",
                      "params k gate / parent", "MACs reduction", *(f"speed-up batch {b}" for b in SPEEDUP_BATCHES)]
    main, details, gates = [], [], []
    for row in table["rows"]:
        if "error" in row:
            main.append([row["method"], *(["-"] * (len(main_headers) - 2)), row["verdict"]])
            continue
        single = row.get("single_network", False)
        cells = [row["method"], "n/a" if single else _pct(row["nominal_prune_potential"])]
        cells += [_group_cell(row["groups"][label], single, spreads=False) for label in report["shifts"]]
        gate = row.get("gate")
        verdict = row["verdict"]
        if gate and not verdict.endswith("(gate)"):
            verdict += f", gate {'pass' if gate['passed'] else 'FAIL'}"
        main.append([*cells, "own" if single else f"{row['gate_ratio']:g}", verdict])
        if gate:
            gates.append(f"{row['method']} gate {'pass' if gate['passed'] else 'FAIL'}: {gate['summary']}")
        details.append([row["method"], _pct(row["parent_accuracy"]), f"{row['gate_achieved_ratio']:.3f}",
                        _dee_cell(row), *_cost_cells(row.get("gate_costs"))])
    return main_headers, main, detail_headers, details, gates


def terminal_width(given: int | None = None, isatty: bool | None = None) -> int | None:
    """The width a terminal report fits: ``given`` (0: none, the full table), else the terminal's, else 100
    (a CI log). ``isatty`` says whether output goes to a terminal (default: standard output's)."""
    if given is not None:
        return given or None
    if sys.stdout.isatty() if isatty is None else isatty:
        return shutil.get_terminal_size((100, 24)).columns
    return 100


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f}"


def _spread(value: float | None, estimate: Mapping[str, Any] | None) -> str:
    """A percentage with its spread over repeats: ``64.0 ±3.1`` (just the value with one repeat)."""
    if value is None or not estimate or len(estimate.get("values", ())) < 2:
        return _pct(value)
    return f"{_pct(value)} ±{estimate['std'] * 100:.1f}"


def _group_cell(group: Mapping[str, Any], single: bool, *, spreads: bool) -> str:
    """One shift entry's prune potential: ``mean / min (worst)`` (with ``spreads``, each ``±std``)."""
    if group.get("error"):
        return "error"
    if single:
        return "n/a"
    worst = f" ({group['worst']})" if len(group["members"]) > 1 else ""
    if spreads:
        mean, low = _spread(group["mean"], group.get("mean_estimate")), _spread(group["min"], group.get("min_estimate"))
    else:
        mean, low = _pct(group["mean"]), _pct(group["min"])
    return f"{mean} / {low}{worst}"


def _dee_cell(row: Mapping[str, Any]) -> str:
    """The largest delta excess error at the gate ratio and its shift: ``7.5 (elastic_transform@3)``."""
    dee = row["max_delta_excess_error"]
    return f"{_pct(dee)} ({row['max_delta_excess_error_shift']})" if dee is not None else _pct(dee)


SPEEDUP_BATCHES = (1, 64)
"""The batch sizes whose speed-up the table shows (the JSON has every measured one): those of
``robustprune.compute.costs.LATENCY_BATCHES`` (not imported: the report reads JSON without torch)."""


def _cost_cells(costs: Mapping[str, Any] | None) -> list[str]:
    """params k gate / parent, MAC reduction, speed-up at each of :data:`SPEEDUP_BATCHES`."""
    if costs is None:
        return ["-"] * (2 + len(SPEEDUP_BATCHES))
    measured = {s["batch"]: s for s in costs.get("speedups") or ()}
    if not measured and costs.get("speedup") is not None:  # a report from before interleaved timing: batch 64 only
        measured = {SPEEDUP_BATCHES[-1]: {"speedup": costs["speedup"], "low": costs["speedup"],
                                          "high": costs["speedup"], "within_noise": False}}
    if costs.get("timed") is False:  # Suite(latency=False) / --rp-no-latency
        speedups = ["not timed"] * len(SPEEDUP_BATCHES)
    else:
        speedups = [_speedup_cell(measured.get(batch)) for batch in SPEEDUP_BATCHES]
    return [f"{costs['params'] / 1000:.1f} / {costs['parent_params'] / 1000:.1f}", _times(costs["mac_reduction"]),
            *speedups]


def _untimed(report: Mapping[str, Any]) -> bool:
    """Whether a row's speed-up was left untimed (``Suite(latency=False)``, ``--no-latency``)."""
    return any((row.get("gate_costs") or {}).get("timed") is False
               for table in report["tables"] for row in table["rows"])


def _times(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def _speedup_cell(speedup: Mapping[str, Any] | None) -> str:
    """``1.52x (1.47-1.58)``: the median speed-up and its interquartile range; ``1.01x within noise`` when the
    range includes 1."""
    if speedup is None:
        return "-"
    if speedup["within_noise"]:
        return f"{speedup['speedup']:.2f}x within noise"
    if speedup["low"] == speedup["high"] == speedup["speedup"]:  # one measurement, no range
        return f"{speedup['speedup']:.2f}x"
    return f"{speedup['speedup']:.2f}x ({speedup['low']:.2f}-{speedup['high']:.2f})"


def score_label(table: Mapping[str, Any]) -> str:
    """What a table's scores are, as its headers name them (``acc``: top-1 accuracy, ``mIoU``, ...)."""
    return str((table.get("metric") or TOP1).get("label", TOP1["label"]))


def table_rows(report: dict[str, Any], table: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    headers = ["method", f"parent {score_label(table)} %", "P nominal %"]
    headers += [f"P {label} %\nmean / min (worst)" for label in report["shifts"]]
    headers += ["gate ratio\n(achieved)", "Δe max %\n(shift)", "params k\ngate / parent", "MACs\nreduction",
                *(f"speed-up\nbatch {b}" for b in SPEEDUP_BATCHES), "verdict"]
    rows = []
    for row in table["rows"]:
        if "error" in row:  # the message itself goes under the table (error_notes)
            rows.append([row["method"], *(["-"] * (len(headers) - 2)), row["verdict"]])
            continue
        single = row.get("single_network", False)
        nominal = _spread(row["nominal_prune_potential"], row.get("nominal_prune_potential_estimate"))
        cells = [row["method"], _pct(row["parent_accuracy"]), "n/a" if single else nominal]
        cells += [_group_cell(row["groups"][label], single, spreads=True) for label in report["shifts"]]
        ratio = "own" if single else f"{row['gate_ratio']:g}"
        cells += [f"{ratio} ({row['gate_achieved_ratio']:.3f})", _dee_cell(row), *_cost_cells(row.get("gate_costs")),
                  _verdict_cell(row)]
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


def _labels_or_count(labels: list[str]) -> str:
    """Up to three labels in full; more as a count with the first one."""
    return ", ".join(labels) if len(labels) <= 3 else f"{len(labels)} shifts ({labels[0]}, ...)"


def sources_footnote(sources: dict[str, str] | None) -> str | None:
    """One line saying where each shifted test set came from: generated (with which parameter family), or
    published files (by folder)."""
    if not sources:
        return None
    generated = [label for label, source in sources.items() if source == GENERATED]
    families: dict[str, list[str]] = {}
    published: dict[str, list[str]] = {}
    other = []
    for label, source in sources.items():
        if source.startswith(GENERATED_WITH):
            families.setdefault(source[len(GENERATED_WITH):], []).append(label)
        elif source.startswith("published: "):
            path = Path(source[len("published: "):])
            published.setdefault(str(path.parent), []).append(f"{label} ({path.name})")
        elif source != GENERATED:
            other.append(f"{label} ({source})")
    family_parts = [f"{_labels_or_count(labels)} with {family} parameters" for family, labels in families.items()]
    if not published and not other:
        return "; ".join(["shift sources: all generated by robustprune", *family_parts])
    parts = [f"published, read from {folder}: {', '.join(items)}" for folder, items in published.items()]
    parts += [", ".join(other)] if other else []
    parts += [f"generated: {_labels_or_count(generated)}"] if generated else []
    parts += [f"generated: {part}" for part in family_parts]
    return "shift sources: " + "; ".join(parts)


def render_text(report: dict[str, Any], fmt: str = "simple", width: int | None = None) -> str:
    """The rendering of one suite's report: with ``fmt="simple"`` and a ``width``, the terminal's, every line
    fitting it (a compact main table, a details table, gate outcomes as lines; spreads are left to the
    Markdown and JSON); without a width, or with ``fmt="github"`` (Markdown), the full table with every
    number and its spread."""
    compact = fmt == "simple" and width is not None
    parts = [f"suite {report['suite']}\n  P = prune potential at delta {report['delta'] * 100:g} %; Δe = delta "
             f"excess error; Δe, params, MACs and speed-up are read at each method's gate ratio;\n  speed-up = "
             f"CPU latency of the parent / of the compacted network (structured methods), timed interleaved: "
             f"median (interquartile range) over rounds; 'within noise' when the range includes 1"
             f"{'; not timed: Suite(latency=False) or --no-latency' if _untimed(report) else ''}"]
    repeats = int(report.get("repeats") or 1)
    if repeats > 1:
        parts[0] += (f";\n  numbers are means over {repeats} repeats (independently trained parents and cascades)"
                     + (" (their spreads: in the Markdown and JSON report, --report DIR)" if compact
                        else " ± their standard deviation"))
    for table in report["tables"]:
        title = f"\n{table['model']} on {table['dataset']}\n"
        if compact:
            main_headers, main, detail_headers, details, gates = compact_tables(report, table)
            parts.append(title + fit_table(main, main_headers, fmt, width, keep_last=True, disable_numparse=True))
            parts.append("\n" + fit_table(details, detail_headers, fmt, width, disable_numparse=True))
            parts += [_wrap(line, width) for line in gates]
        else:
            headers, rows = table_rows(report, table)
            if fmt != "simple":  # Markdown and most other formats cannot break a header cell
                headers = [h.replace("\n", " ") for h in headers]
                rows = [[c.replace("\n", "; ") if isinstance(c, str) else c for c in r] for r in rows]
            parts.append(title + tabulate(rows, headers=headers, tablefmt=fmt))
        footnote = sources_footnote(table.get("shift_sources"))
        if footnote:
            parts.append(("\n" if fmt != "simple" else "") + _wrap(footnote, width))
        for note in [*allocation_notes(table), *single_network_notes(table), *error_notes(table),
                     *chance_notes(report, table)]:
            parts.append(("\n" if fmt != "simple" else "") + _wrap(note, width))
        parts += ["\n" + text for text in beyond_sections(report, table, fmt, width)]
    mix_line = robust_training_line(report)
    if mix_line:
        parts.append("\n" + _wrap(mix_line, width))
    for line in (numerics_line(report.get("numerics")), store_line(report.get("store"))):
        if line:
            parts.append(("\n" if fmt != "simple" else "") + _wrap(line, width))
    if compact:
        parts[0] = _wrap(parts[0], width)
    return "\n".join(parts)


def store_line(store: Mapping[str, Any] | None) -> str | None:
    """``store: /path, authenticated (ROBUSTPRUNE_STORE_KEY)``, or that it is not, with what that means."""
    if not store:
        return None
    if not store.get("authenticated"):
        return (f"store: {store.get('root')}, unauthenticated: anyone who can write it can change these numbers; "
                "set ROBUSTPRUNE_STORE_KEY (docs/trusting-results.md)")
    rejected = int(store.get("rejected") or 0)
    note = f"; {rejected} entries failed authentication and were recomputed" if rejected else ""
    return f"store: {store.get('root')}, authenticated (ROBUSTPRUNE_STORE_KEY){note}"


def numerics_line(numerics: Mapping[str, Any] | None) -> str | None:
    """``numerics: torch 2.14.1, CPU capability AVX512, cpu, 1 thread, deterministic algorithms off``: what the
    numbers depend on besides the data and the seeds (they are part of every store key)."""
    if not numerics:
        return None
    threads = numerics.get("threads", "?")
    parts = [f"torch {numerics.get('torch', '?')}", f"CPU capability {numerics.get('cpu_capability', '?')}",
             str(numerics.get("device_name") or numerics.get("device", "?")),
             f"{threads} thread{'' if threads == 1 else 's'}",
             f"deterministic algorithms {'on' if numerics.get('deterministic') else 'off'}"]
    return "numerics: " + ", ".join(parts)


ALLOCATIONS = {
    "layer": "per layer (the paper's: each layer keeps its own filters or inputs; a channel leaves when no layer "
             "uses it)",
    "group": "whole channels (removed from every layer that writes or reads them)",
}


def allocation_notes(table: dict[str, Any]) -> list[str]:
    """One line naming how each structured row allocated channels, when a method says (its ``allocation``)."""
    by_kind: dict[str, list[str]] = {}
    for row in table["rows"]:
        if row.get("allocation"):
            by_kind.setdefault(str(row["allocation"]), []).append(row["method"])
    if not by_kind:
        return []
    parts = [f"{', '.join(methods)}: {ALLOCATIONS.get(kind, kind)}" for kind, methods in by_kind.items()]
    return ["structured allocation: " + "; ".join(parts)]


def error_notes(table: dict[str, Any]) -> list[str]:
    """One line per case that could not be computed, and one per shift that failed, with its error."""
    return [*(f"error in {row['method']}: {row['error']}" for row in table["rows"] if "error" in row),
            *(f"error: {message}" for message in table.get("shift_errors", {}).values())]


def chance_notes(report: dict[str, Any], table: dict[str, Any]) -> list[str]:
    """Shifts under which the parent itself is near chance: any ratio 'qualifies' there, so P says little."""
    classes = table.get("num_classes")
    if (table.get("metric") or {}).get("name", "top1") != "top1":
        return []  # chance is 1 / classes for top-1 accuracy only
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


def _interval_cell(estimate: Mapping[str, Any] | None, digits: int = 3) -> str:
    """``0.031 ±0.004 [0.020, 0.041]``: mean, std over repeats (with several), interval."""
    if not estimate:
        return "-"
    text = f"{estimate['mean']:.{digits}f}"
    if len(estimate.get("values", ())) > 1:
        text += f" ±{estimate['std']:.{digits}f}"
    low, high = estimate["interval"]
    return text + f" [{low:.{digits}f}, {high:.{digits}f}]"


def slope_table(report: Mapping[str, Any], table: Mapping[str, Any], fmt: str, width: int | None = None) -> str | None:
    """Delta excess error against the prune ratio, per shift group: the slope of the paper's regression."""
    cases = [c for c in report.get("cases", []) if (c["model"], c["dataset"]) == (table["model"], table["dataset"])
             and (c.get("estimates") or {}).get("delta_excess_error_slope")]
    if not cases:
        return None
    entries = list(cases[0]["estimates"]["delta_excess_error_slope"])
    level = next(iter(cases[0]["estimates"]["delta_excess_error_slope"].values()))["level"]
    body = [[c["method"]["name"], *[_interval_cell(c["estimates"]["delta_excess_error_slope"].get(e))
                                    for e in entries]] for c in cases]
    title = (f"delta excess error against the prune ratio: slope b of the group's mean Δe = b × ratio (through "
             f"the origin, every ratio), {level * 100:g} % interval")
    return f"{_wrap(title, width)}\n" + fit_table(body, ["method", *entries], fmt, width, disable_numparse=True)


def similarity_table(report: Mapping[str, Any], table: Mapping[str, Any], fmt: str,
                     width: int | None = None) -> str | None:
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
    return f"{_wrap(title, width)}\n" + fit_table(body, headers, fmt, width, disable_numparse=True)


def features_table(report: Mapping[str, Any], table: Mapping[str, Any], fmt: str,
                   width: int | None = None) -> str | None:
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
    return f"{_wrap(title, width)}\n" + fit_table(body, headers, fmt, width, disable_numparse=True)


def robust_training_line(report: Mapping[str, Any]) -> str | None:
    mix = report.get("robust_training")
    if not mix:
        return None
    severities = ",".join(str(s) for s in mix["severities"])
    line = (f"robust training: parents and retrains on the train_shifts mix ({', '.join(mix['members'])}; clean "
            f"{mix['clean'] * 100:.1f} %, else severity {severities}); "
            f"column {mix['train_column']} = train distribution")
    if mix.get("test_column"):
        line += f", {mix['test_column']} = held-out test distribution ({', '.join(mix['held_out'])})"
    return line


def beyond_sections(report: Mapping[str, Any], table: Mapping[str, Any], fmt: str = "simple",
                    width: int | None = None) -> list[str]:
    """The compact tables printed under one model x dataset table (nothing when the suite asks for none)."""
    sections = (slope_table(report, table, fmt, width), similarity_table(report, table, fmt, width),
                features_table(report, table, fmt, width))
    return [text for text in sections if text]
