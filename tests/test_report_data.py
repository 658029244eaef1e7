"""The report as data: its JSON Schema validates real reports, and the tidy CSV loads with pandas as documented."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from robustprune.report.tidy import CSV_COLUMNS, report_schema

jsonschema = pytest.importorskip("jsonschema")
pd = pytest.importorskip("pandas")

GUIDE = Path(__file__).resolve().parents[1] / "docs" / "user-guide.md"

CHECKS = """
def test_nominal(case):
    assert case.prune_potential() >= 0.0
"""


@pytest.fixture
def report_folder(run_suite, pytester) -> Path:
    """The toy suite with two methods, two repeats and a noise shift with two draws, reported to a folder."""
    result = run_suite(CHECKS, f"--rp-report={pytester.path / 'report'}", methods=("wt", "erase"),
                       shifts=("darken@0.5", "jitter@0.2"), plugins=("toy_plugin", "noise_plugin"),
                       extra="repeats=2, noise_draws=2,")
    assert result.ret == 0, result.stdout.str()[-2000:]
    return pytester.path / "report"


NOISE_PLUGIN = '''
import torch

from robustprune import TensorShift, hookimpl


def noise(batch, eps, seeds):
    generator = torch.Generator().manual_seed(int(seeds[0]))
    return batch + eps * torch.randn(batch.shape, generator=generator)


@hookimpl
def robustprune_register_shifts(register):
    register(TensorShift("jitter", noise))
'''


@pytest.fixture
def with_noise(pytester):
    pytester.makepyfile(noise_plugin=NOISE_PLUGIN)


def test_the_schema_is_valid_and_validates_a_real_report(with_noise, report_folder):
    schema = report_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    report = json.loads((report_folder / "robustprune-report.json").read_text())
    jsonschema.validate(report, schema)
    report["suites"][0]["cases"][0]["repeats"][0]["accuracy"]["nominal"][0][0] = 1.5  # not an accuracy
    with pytest.raises(jsonschema.ValidationError, match="1.5 is greater than the maximum of 1"):
        jsonschema.validate(report, schema)


def test_the_schema_validates_the_quickstarts_report():
    from test_report_width import QUICKSTART_JSON

    jsonschema.validate(QUICKSTART_JSON, report_schema())


def test_the_tidy_csv_has_one_row_per_accuracy(with_noise, report_folder):
    frame = pd.read_csv(report_folder / "robustprune-report.csv")
    assert tuple(frame.columns) == CSV_COLUMNS
    # 2 methods x 2 repeats x (parent + 2 ratios) x 3 shifts (nominal, darken, jitter)
    assert len(frame) == 2 * 2 * 3 * 3
    assert set(frame["shift"]) == {"nominal", "darken@0.5", "jitter@0.2"}
    assert set(frame.loc[frame["shift"] == "jitter@0.2", "draws"]) == {2}
    assert frame["score"].between(0, 1).all() and set(frame["step"]) == {0, 1, 2}
    report = json.loads((report_folder / "robustprune-report.json").read_text())
    case = next(c for c in report["suites"][0]["cases"] if c["method"]["name"] == "erase")
    row = frame[(frame["method"] == "erase") & (frame["repeat"] == 1) & (frame["step"] == 2)
                & (frame["shift"] == "darken@0.5")]
    assert row["score"].item() == pytest.approx(case["repeats"][1]["accuracy"]["darken@0.5"][0][2])
    assert row["achieved_ratio"].item() == pytest.approx(case["repeats"][1]["achieved_ratios"][1])
    first = frame[(frame["repeat"] == 0) & (frame["method"] == "erase") & (frame["shift"] == "nominal")]
    assert list(first["params"]) == [c["params"] for c in case["costs"]]  # counted on the first repeat


def test_the_user_guide_pandas_snippet_runs_on_a_report(with_noise, report_folder, capsys):
    blocks = re.findall(r"```python\n(.*?)```", GUIDE.read_text(encoding="utf-8"), re.S)
    (snippet,) = [b for b in blocks if "read_csv" in b]
    code = snippet.replace("/tmp/docs-report/robustprune-report.csv", str(report_folder / "robustprune-report.csv"))
    assert code != snippet, "the snippet reads the documented path"
    exec(compile(code, "user-guide snippet", "exec"), {})
    out = capsys.readouterr().out
    assert "erase" in out and "wt" in out
