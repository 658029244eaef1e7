"""The report as data to analyse: its JSON Schema, and one tidy table of every score.

``robustprune-report.csv`` (written next to the JSON by ``--report DIR``)
has one row per suite, model, dataset, method, repeat, cascade step and
shift, so ``pandas.read_csv`` gives a frame to group and plot without
walking the JSON. Columns: see :data:`CSV_COLUMNS`.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator, Mapping
from importlib import resources
from typing import Any

__all__ = ["CSV_COLUMNS", "report_schema", "tidy_csv", "tidy_rows"]

CSV_COLUMNS = (
    "suite", "model", "dataset", "method", "case", "repeat", "seed", "step", "ratio", "achieved_ratio", "shift",
    "metric", "score", "draws", "params", "macs",
)
"""``step`` 0 is the parent (``ratio`` and ``achieved_ratio`` 0), step k the k-th network of the cascade;
``score`` is the case's ``metric`` (``top1``: top-1 accuracy, ``miou``: mean IoU, ...) on ``shift``, the
mean over ``draws`` independent draws of a noise shift;
``params``/``macs`` are counted on the first repeat's networks (the one exported), empty for the others."""


def report_schema(version: int = 1) -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of ``robustprune-report.json`` at ``version``."""
    text = resources.files("robustprune.report").joinpath(f"schema/report-v{version}.json").read_text()
    schema: dict[str, Any] = json.loads(text)
    return schema


def tidy_rows(reports: Iterable[Mapping[str, Any]]) -> Iterator[dict[str, Any]]:
    """Every score of every case of ``reports`` (the JSON's ``suites``), one dict per row."""
    for report in reports:
        for case in report["cases"]:
            ratios = [0.0, *case["ratios"]]
            costs = case.get("costs") or []
            for r, repeat in enumerate(case["repeats"]):
                achieved = [0.0, *repeat["achieved_ratios"]]
                for shift, draws in repeat["accuracy"].items():
                    for step in range(len(draws[0])):
                        cost = costs[step] if r == 0 and step < len(costs) else {}
                        yield {
                            "suite": report["suite"], "model": case["model"], "dataset": case["dataset"],
                            "method": case["method"]["name"], "case": case["id"], "repeat": r,
                            "seed": repeat["seed"], "step": step, "ratio": ratios[step] if step < len(ratios) else "",
                            "achieved_ratio": achieved[step] if step < len(achieved) else "", "shift": shift,
                            "metric": case.get("metric", {}).get("name", "top1"),
                            "score": sum(draw[step] for draw in draws) / len(draws), "draws": len(draws),
                            "params": cost.get("params", ""), "macs": cost.get("macs", ""),
                        }


def tidy_csv(reports: Iterable[Mapping[str, Any]]) -> str:
    """:func:`tidy_rows` as CSV text with a header row."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(tidy_rows(reports))
    return out.getvalue()
