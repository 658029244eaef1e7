"""The segmentation suites, run as users run them.

The paper's DeepLabV3 / VOC suite: skipped without VOC, and end to end on tiny VOC files written in the real
layout (the real model, WT at one ratio, one corruption, one epoch; FT and the other methods on DeepLabV3 are in
test_segmentation_models.py, without the minute a ResNet-50's latency timing would add here). The packaged
segmentation suite runs in-process on toy data in test_segmentation.py and is collected whole in test_cli.py.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from suite_runner import run_shrunk_suite, skip_without_data
from test_voc import write_voc

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
SUITE = REPO / "suites" / "deeplabv3_voc.py"


def test_skipped_with_a_reason_when_voc_is_not_on_disk(tmp_path):
    empty, _, reason = skip_without_data(SUITE, tmp_path)
    assert f"looked for {empty / 'VOCdevkit' / 'VOC2011'}" in reason
    for how in ("VOCtrainval_25-May-2011.tar", "--rp-data DIR", "ROBUSTPRUNE_DATA=DIR"):
        assert how in reason


def test_deeplabv3_suite_end_to_end_on_tiny_voc_files(tmp_path):
    write_voc(tmp_path / "data")
    # the real suite file, its grid shrunk: 32x32 crops, one ratio, one corruption, one epoch, one parent
    result = run_shrunk_suite(SUITE, tmp_path, "methods=['wt'], ratios=[0.3], gate_ratio=0.3, repeats=1, "
                              "shifts=['contrast@3'], recipe={'epochs': 1, 'batch_size': 4}, retrain_epochs=1, "
                              "bootstrap=100, dataset_params={'voc': {'year': '2011', 'size': 32}}")
    # one epoch on three images learns nothing: checks may fail (1), but nothing errors
    assert result.returncode in (0, 1), result.stdout[-3000:] + result.stderr[-2000:]
    cases = list(ET.parse(tmp_path / "junit.xml").getroot().iter("testcase"))
    assert cases and not [c for c in cases if c.find("error") is not None], result.stdout[-3000:]
    names = {c.get("name") for c in cases}
    assert names == {"test_nominal_prune_potential[wt-deeplabv3_resnet50-voc]",
                     "test_delta_excess_error_at_gate[wt-deeplabv3_resnet50-voc-contrast@3]"}
    report = json.loads((tmp_path / "report" / "robustprune-report.json").read_text())
    (table,) = report["suites"][0]["tables"]
    assert table["metric"] == {"name": "miou", "label": "mIoU", "task": "segmentation"}
    (row,) = table["rows"]
    assert row["method"] == "wt" and "error" not in row
    assert abs(row["gate_achieved_ratio"] - 0.3) < 0.01
    assert 0.0 <= row["parent_accuracy"] <= 1.0  # the parent's mIoU on the 32x32 val crops

