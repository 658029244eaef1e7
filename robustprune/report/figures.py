"""The paper's figures, drawn from a JSON report (never from live results): matplotlib, optional.

``pip install robustprune[plots]``. matplotlib is imported only when figures
are written. One set of figures per suite x model x dataset:

- ``accuracy``: accuracy against prune ratio, one small panel per shift
  (per shift column, averaged, beyond 40 shifts), with the parent's accuracy
  and the parent's minus delta, whose last crossing is the prune potential;
- ``prune-potential-vs-noise``: prune potential against the noise level;
- ``delta-excess-error``: delta excess error against ratio, one panel per
  method (each shift faint, their mean, the least-squares line through the origin);
- ``prune-potential-per-shift``: prune potential under each corruption;
- ``similarity``: agreement and softmax distance to the parent against noise
  level, with the separately trained parent as the baseline (when computed).

A method has the same colour in every figure (fixed for the first-party
methods, derived from the name otherwise).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..core.results import score_name
from ..core.shifts import NOMINAL, split_label
from . import series

FIGURE_KINDS = ("accuracy", "prune-potential-vs-noise", "delta-excess-error", "prune-potential-per-shift",
                "similarity")

_FIXED = {"wt": "#1f77b4", "sipp": "#ff7f0e", "ft": "#2ca02c", "pfp": "#d62728",
          "random": "#7f7f7f", "random_structured": "#8c564b"}
_SPARE = ("#9467bd", "#e377c2", "#bcbd22", "#17becf", "#393b79", "#637939", "#8c6d31", "#843c39")
PARENT_COLOUR = "#444444"
BASELINE_COLOUR = "#000000"


_MARKERS = {"wt": "o", "sipp": "s", "ft": "^", "pfp": "D", "random": "v", "random_structured": "P"}


def method_marker(method: str) -> str:
    """The marker of a method in every figure, so methods stay apart where their lines coincide."""
    return _MARKERS.get(method, "X")


def method_colour(method: str) -> str:
    """The colour of a method in every figure: fixed for first-party methods, else stable from its name."""
    if method in _FIXED:
        return _FIXED[method]
    digest = int(hashlib.blake2b(method.encode(), digest_size=4).hexdigest(), 16)
    return _SPARE[digest % len(_SPARE)]


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError:
        raise ImportError("figures need matplotlib: pip install 'robustprune[plots]'") from None
    matplotlib.use("Agg", force=True)  # files only; never open a window (CI, headless machines)
    import matplotlib.pyplot as plt

    return plt


def _pct(values: Sequence[float | None]) -> list[float | None]:
    return [None if v is None else 100 * v for v in values]


def _cases(report: Mapping[str, Any], table: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The table's successful cases with curves, in the suite's method order (a pruned checkpoint has none)."""
    by_id = {c["id"]: c for c in report["cases"]}
    return [by_id[r["case"]] for r in table["rows"]
            if "error" not in r and r["case"] in by_id and not r.get("single_network")]


def _kinds(report: Mapping[str, Any]) -> dict[str, str]:
    return dict(report.get("shift_kinds") or {})


def _entry_members(report: Mapping[str, Any], case: Mapping[str, Any], entry: str) -> list[str]:
    """The entry's shifts that have curves (a shift that failed has none)."""
    members = (report.get("shift_members") or {}).get(entry) or [entry]
    return [m for m in members if m in case["accuracy"]]


def _std_band(points: list[Mapping[str, Any]]) -> tuple[list[float], list[float]] | None:
    """Mean ± standard deviation over repeats (the paper's bands), or None with a single repeat."""
    if len(points[0]["values"]) < 2:
        return None
    return [p["mean"] - p["std"] for p in points], [p["mean"] + p["std"] for p in points]


def _accuracy_band(case: Mapping[str, Any], members: list[str]) -> tuple[list[float], list[float]] | None:
    """The accuracy's spread over repeats in a one-shift panel, parent first (reports with repeats only)."""
    estimates = case.get("estimates")
    if not estimates or len(members) != 1:
        return None
    shift = members[0]
    points = [estimates["parent_accuracy"].get(shift), *estimates["accuracy"].get(shift, [])]
    if any(p is None for p in points):
        return None
    return _std_band(points)


def _noise_band(case: Mapping[str, Any], labels: list[str], eps: list[float]) -> tuple[list[float], list[float]] | None:
    """The prune potential's spread over repeats for a noise family at each level (eps 0: nominal)."""
    potentials = (case.get("estimates") or {}).get("prune_potential")
    if not potentials:
        return None
    by_eps = {float(split_label(label)[1]): label for label in labels}
    chosen = [potentials.get(by_eps.get(e, NOMINAL)) for e in eps]
    if any(c is None for c in chosen):
        return None
    return _std_band(chosen)


def _band_label(report: Mapping[str, Any]) -> str:
    return f"band: ± std over {report.get('repeats', 1)} repeats"


def _figure_legend(fig: Any, axes: Any, ncol: int = 4) -> None:
    """One legend for the whole figure, below the panels, so that it never hides a curve."""
    seen: dict[str, Any] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            seen.setdefault(label, handle)
    if seen:
        fig.legend(list(seen.values()), list(seen), loc="outside lower center", ncol=min(ncol, len(seen)),
                   fontsize=9, frameon=False)


_MAX_PANELS = 40  # beyond this many shifts, one panel per shift column (its mean) instead of per shift


def accuracy_figure(plt: Any, report: Mapping[str, Any], table: Mapping[str, Any],
                    cases: list[Mapping[str, Any]]) -> Any:
    """Small multiples: one panel per shift (nominal first), each against that shift's parent accuracy."""
    shifts = list(cases[0]["accuracy"])
    panels = [(label, [label]) for label in shifts]
    if len(panels) > _MAX_PANELS:
        panels = [(NOMINAL, [NOMINAL])] + [(e, members) for e in report["shifts"]
                                           if (members := _entry_members(report, cases[0], e))]
    cols = min(5 if len(panels) > 6 else 3, len(panels))
    rows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.3 * cols, 2.6 * rows + 1.0), squeeze=False, layout="constrained")
    delta = report["delta"]
    score = score_name(table.get("metric") or {})
    for ax, (title, members) in zip(axes.flat, panels):
        parent = sum(cases[0]["accuracy"][m][0] for m in members) / len(members)
        for case in cases:
            # the parent is each curve's point at ratio 0
            curves = [case["accuracy"][m] for m in members]
            mean = [sum(col) / len(col) for col in zip(*curves)]
            colour = method_colour(case["method"]["name"])
            x = _pct([0.0, *case["ratios"]])
            ax.plot(x, _pct(mean), marker="o", ms=2.5, lw=1.2, color=colour, label=case["method"]["name"])
            band = _accuracy_band(case, members)
            if band is not None:
                ax.fill_between(x, _pct(band[0]), _pct(band[1]), color=colour, alpha=0.15, lw=0)
                ax.fill_between([], [], [], color="grey", alpha=0.3, lw=0, label=_band_label(report))
        ax.axhline(100 * parent, color=PARENT_COLOUR, ls="--", lw=0.8, label="parent")
        ax.axhline(100 * (parent - delta), color=PARENT_COLOUR, ls=":", lw=0.8,
                   label=f"parent − δ (δ = {100 * delta:g} %): P is the last ratio above")
        ax.set_title(title if len(members) == 1 else f"{title} (mean of {len(members)})", fontsize=9)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    for ax in axes[:, 0]:
        ax.set_ylabel(f"{score} (%)", fontsize=8)
    for ax in axes.flat[max(0, len(panels) - cols):len(panels)]:  # the last panel of each column
        ax.set_xlabel("prune ratio (%)", fontsize=8)
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    _figure_legend(fig, axes.flat, ncol=6)
    fig.suptitle(f"Accuracy against prune ratio (% of weights removed) per shift: {table['model']} on "
                 f"{table['dataset']}", fontsize=11)
    return fig


def noise_figure(plt: Any, report: Mapping[str, Any], table: Mapping[str, Any],
                 cases: list[Mapping[str, Any]]) -> Any:
    kinds = _kinds(report)
    families = series.noise_families(kinds)
    if not families:
        return None
    fig, axes = plt.subplots(1, len(families), figsize=(5.5 * len(families), 4.2), squeeze=False, layout="constrained")
    for ax, name in zip(axes.flat, families):
        for index, case in enumerate(cases):
            s = series.noise_series(case, report["delta"], kinds)[name]
            method = case["method"]["name"]
            band = _noise_band(case, families[name], s["eps"])
            if band is not None:
                ax.fill_between(s["eps"], _pct(band[0]), _pct(band[1]), color=method_colour(method), alpha=0.12,
                                lw=0)
                ax.fill_between([], [], [], color="grey", alpha=0.3, lw=0, label=_band_label(report))
            # prune potentials sit on the grid's ratios, so methods often coincide: later methods are drawn
            # smaller, dashed and with their own marker, so every method stays visible on top of the others
            ax.plot(s["eps"], _pct(s["prune_potential"]), marker=method_marker(method), ms=max(3.0, 10 - 2 * index),
                    ls=("-", "--", "-.", ":")[index % 4], lw=max(1.0, 3 - 0.6 * index), color=method_colour(method),
                    label=method)
        ax.set_xlabel(f"{name} level ε (normalized input units)")
        ax.set_ylabel(f"prune potential (%), δ = {100 * report['delta']:g} %")
        ax.set_ylim(-3, 103)
        ax.set_title(f"{name} (ε = 0: nominal test set)", fontsize=9)
        ax.grid(alpha=0.3)
    _figure_legend(fig, axes.flat)
    fig.suptitle(f"Prune potential against noise: {table['model']} on {table['dataset']}", fontsize=11)
    return fig


def delta_excess_error_figure(plt: Any, report: Mapping[str, Any], table: Mapping[str, Any],
                              cases: list[Mapping[str, Any]]) -> Any:
    """One panel per method: each shift's delta e (faint), their mean, and the line through the origin."""
    cases = [c for c in cases if series.delta_excess_errors(c)]
    if not cases:
        return None
    cols = min(4, len(cases))
    rows = math.ceil(len(cases) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.8 * cols, 3.3 * rows + 1.0), squeeze=False, sharey=True,
                             layout="constrained")
    for ax, case in zip(axes.flat, cases):
        method, colour = case["method"]["name"], method_colour(case["method"]["name"])
        per_shift = series.delta_excess_errors(case)
        x = _pct(case["ratios"])
        for values in per_shift.values():
            ax.plot(x, _pct(values), color=colour, alpha=0.25, lw=0.8)
        mean = [sum(col) / len(col) for col in zip(*per_shift.values())]
        ax.plot(x, _pct(mean), "o", color=colour, mec="black", mew=0.6, ms=5, label="mean over the shifts")
        slope = series.delta_excess_error_slope(case)
        end = max(case["ratios"])
        if slope is not None:
            ax.plot([0, 100 * end], [0, 100 * slope * end], "--", color="black", lw=1.2,
                    label="least-squares line through the origin")
            interval = (case.get("estimates") or {}).get("delta_excess_error_slope_all")
            text = f"Δe ≈ {slope:.3f} × ratio"
            if interval:
                low, high = interval["interval"]
                ax.fill_between([0, 100 * end], [0, 100 * low * end], [0, 100 * high * end], color="black",
                                alpha=0.08, lw=0)
                text += f"\n{100 * interval['level']:g} % interval [{low:.3f}, {high:.3f}]"
            ax.text(0.03, 0.95, text, transform=ax.transAxes, va="top", fontsize=8)
        ax.axhline(0, color=PARENT_COLOUR, lw=0.6)
        ax.set_xlim(0, 100 * end * 1.04)
        ax.set_title(f"{method} ({len(per_shift)} shifts, one faint line each)", fontsize=9, color=colour)
        ax.set_xlabel("prune ratio (% of weights removed)", fontsize=8)
        ax.grid(alpha=0.3)
    for ax in axes[:, 0]:
        ax.set_ylabel("delta excess error Δe (pp)", fontsize=8)
    for ax in list(axes.flat)[len(cases):]:
        ax.set_visible(False)
    from matplotlib.lines import Line2D

    # neutral legend entries: each panel's colour is its method's, named in the panel title
    handles = [Line2D([], [], color="grey", alpha=0.5, lw=0.8),
               Line2D([], [], marker="o", color="grey", mec="black", mew=0.6, ls=""),
               Line2D([], [], color="black", ls="--", lw=1.2)]
    fig.legend(handles, ["Δe under one shift", "mean over the shifts", "least-squares line through the origin"],
               loc="outside lower center", ncol=3, fontsize=9, frameon=False)
    fig.suptitle(f"Error a shift adds to the pruned network beyond the parent's: {table['model']} on "
                 f"{table['dataset']}", fontsize=11)
    return fig


def per_shift_figure(plt: Any, report: Mapping[str, Any], table: Mapping[str, Any],
                     cases: list[Mapping[str, Any]]) -> Any:
    """Grouped bars: prune potential per shift (nominal first), one bar per method; a 0 is written as such."""
    kinds = _kinds(report)
    labels = list(series.per_shift_series(cases[0], report["delta"], kinds))
    if not labels:
        return None
    labels = [NOMINAL, *labels]
    width = 0.8 / len(cases)
    fig, ax = plt.subplots(figsize=(min(16.0, max(7.0, 1.0 + 0.12 * len(labels) * (1 + len(cases)))), 4.8),
                           layout="constrained")
    for i, case in enumerate(cases):
        values = series.prune_potentials(case, report["delta"])
        xs = [j + (i - (len(cases) - 1) / 2) * width for j in range(len(labels))]
        heights = [100 * values[lab] for lab in labels]
        colour = method_colour(case["method"]["name"])
        ax.bar(xs, heights, width=width, color=colour, label=case["method"]["name"])
        for x, h in zip(xs, heights):
            if h == 0:  # a missing bar would read as "not evaluated"
                ax.text(x, 0.5, "0", ha="center", va="bottom", fontsize=7, fontweight="bold", color=colour)
    top = 100 * max(max(c["ratios"]) for c in cases)
    ax.axhline(top, color=PARENT_COLOUR, ls=":", lw=1, label=f"largest ratio evaluated ({top:g} %)")
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right", fontsize=8)
    ax.set_xlim(-0.6, len(labels) - 0.4)
    ax.set_ylim(0, 100)
    ax.set_ylabel(f"prune potential (%), δ = {100 * report['delta']:g} %")
    ax.set_title(f"Prune potential per shift: {table['model']} on {table['dataset']}", fontsize=11)
    ax.grid(axis="y", alpha=0.3)
    _figure_legend(fig, [ax], ncol=len(cases) + 1)
    return fig


def similarity_figure(plt: Any, report: Mapping[str, Any], table: Mapping[str, Any],
                      cases: list[Mapping[str, Any]]) -> Any:
    with_sim = [c for c in cases if c.get("similarity")]
    if not with_sim:
        return None
    fig, (agree_ax, dist_ax) = plt.subplots(1, 2, figsize=(10, 4.4), layout="constrained")
    baseline = None
    for case in with_sim:
        sim = case["similarity"]
        gate = next((p for p in sim["pruned"] if abs(p["ratio"] - case.get("gate_ratio", p["ratio"])) < 1e-9),
                    sim["pruned"][0] if sim["pruned"] else None)
        if gate is not None:
            name = case["method"]["name"]
            colour, label = method_colour(name), f"{name} at ratio {gate['ratio']:g}"
            agree_ax.plot(sim["eps"], _pct(gate["agreement"]), marker="o", color=colour, label=label)
            dist_ax.plot(sim["eps"], gate["distance"], marker="o", color=colour, label=label)
        baseline = baseline or (sim.get("baseline") and (sim["eps"], sim["baseline"]))
    if baseline:
        eps, base = baseline
        label = f"separately trained parent (seed {base['seed']})"
        agree_ax.plot(eps, _pct(base["agreement"]), "s--", color=BASELINE_COLOUR, label=label)
        dist_ax.plot(eps, base["distance"], "s--", color=BASELINE_COLOUR, label=label)
    sim = with_sim[0]["similarity"]
    for ax in (agree_ax, dist_ax):
        ax.set_xlabel("uniform noise level ε (normalized input units)")
        ax.grid(alpha=0.3)
    agree_ax.set_ylabel("top-1 agreement with the parent (%)")
    dist_ax.set_ylabel("softmax distance to the parent (l2)")
    dist_ax.set_ylim(bottom=0)
    _figure_legend(fig, [agree_ax])
    fig.suptitle(f"Functional similarity to the parent under noise: {table['model']} on {table['dataset']} "
                 f"({sim['images']} images × {sim['draws']} draws)", fontsize=11)
    return fig


_DRAW = {
    "accuracy": accuracy_figure,
    "prune-potential-vs-noise": noise_figure,
    "delta-excess-error": delta_excess_error_figure,
    "prune-potential-per-shift": per_shift_figure,
    "similarity": similarity_figure,
}


def _slug(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in text)


def write_figures(reports: list[Mapping[str, Any]], folder: Path, fmt: str = "png") -> list[Path]:
    """Draw every figure of every suite's report into ``folder``; returns the files written."""
    plt = _pyplot()
    folder.mkdir(parents=True, exist_ok=True)
    several = len({r["suite"] for r in reports}) > 1
    written = []
    for report in reports:
        prefix = f"{_slug(Path(report['suite']).stem)}-" if several else ""
        for table in report["tables"]:
            cases = _cases(report, table)
            if not cases:
                continue
            for kind, draw in _DRAW.items():
                fig = draw(plt, report, table, cases)
                if fig is None:
                    continue
                path = folder / f"{prefix}{_slug(table['model'])}-{_slug(table['dataset'])}-{kind}.{fmt}"
                fig.savefig(path, dpi=110)
                plt.close(fig)
                written.append(path)
    return written


__all__ = ["FIGURE_KINDS", "method_colour", "write_figures"]
