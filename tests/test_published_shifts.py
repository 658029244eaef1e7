"""Published shifted test sets (CIFAR-10-C arrays, CIFAR-10.1) through the engine and into the report."""

from __future__ import annotations

import textwrap

import numpy as np
import pytest
import torch
from ondisk_formats import write_cifar10, write_cifar10_1, write_corruption_arrays

from robustprune import Suite
from robustprune.compute.store import Store
from robustprune.core.results import CaseError, CaseKey
from robustprune.engine.context import RunOptions
from robustprune.engine.engine import Engine
from robustprune.plugin.host import create_host
from robustprune.plugin.registry import Registry
from robustprune.report.build import apply_verdicts, build_report, merge_reports
from robustprune.report.tables import render_text

SHIFTS = ["contrast@3", "cifar10_1@6", "uniform_noise@0.1"]
CASE = CaseKey("wt", "small_cnn", "cifar10")


def top1(network, inputs, labels) -> float:
    """Top-1 accuracy computed directly, independently of the engine's evaluation."""
    with torch.inference_mode():
        return float((network.eval()(inputs).argmax(1) == labels).float().mean())


@pytest.fixture
def data_root(tmp_path):
    root = tmp_path / "data"
    written = write_cifar10(root)
    write_corruption_arrays(root / "CIFAR-10-C", written["test_images"], written["test_labels"])
    write_cifar10_1(root / "CIFAR-10.1", n=30)
    return root


@pytest.fixture
def engine_for(make_engine):
    """``engine_for(root, messages=None, shifts=SHIFTS, datasets=("cifar10",))``: wt on small_cnn, one epoch."""

    def make(root, messages=None, shifts=SHIFTS, datasets=("cifar10",)):
        suite = Suite(models=["small_cnn"], datasets=list(datasets), methods=["wt"], shifts=shifts, ratios=[0.5],
                      recipe={"epochs": 1}, retrain_epochs=1)
        return make_engine(suite, messages, data_root=root)

    return make


def test_published_sets_are_evaluated_on_their_own_images_and_labels(engine_for, data_root, tmp_path):
    engine = engine_for(data_root)
    result = engine.result(CASE)
    assert result.shift_sources == {
        "contrast@3": f"published: {data_root / 'CIFAR-10-C' / 'contrast.npy'}",
        "cifar10_1@6": f"published: {data_root / 'CIFAR-10.1' / 'cifar10.1_v6_data.npy'}",
        "uniform_noise@0.1": "generated",
    }
    # recompute the parent's accuracies from the files themselves
    data = engine.data("cifar10")
    network = engine.build("small_cnn", data)
    network.load_state_dict(engine.parent("small_cnn", "cifar10").state)
    cifar10_1 = np.load(data_root / "CIFAR-10.1" / "cifar10.1_v6_data.npy")
    labels_1 = torch.from_numpy(np.load(data_root / "CIFAR-10.1" / "cifar10.1_v6_labels.npy"))
    expected = top1(network, data.normalize(cifar10_1), labels_1)
    assert result.accuracy["cifar10_1@6"][0] == pytest.approx(expected)
    contrast = np.load(data_root / "CIFAR-10-C" / "contrast.npy")[2 * 60 : 3 * 60]  # severity 3 of 60 images
    labels_c = torch.from_numpy(np.load(data_root / "CIFAR-10-C" / "labels.npy")[2 * 60 : 3 * 60].astype(np.int64))
    expected = top1(network, data.normalize(contrast), labels_c)
    assert result.accuracy["contrast@3"][0] == pytest.approx(expected)
    # nothing was generated for the published shifts
    assert not (tmp_path / "store" / "shifted").exists()


def test_a_changed_published_file_is_evaluated_again(engine_for, data_root, tmp_path):
    engine_for(data_root).result(CASE)
    messages: list[str] = []
    engine_for(data_root, messages).result(CASE)
    assert not any("evaluating" in m for m in messages)  # warm: every evaluation is in the store

    arrays = np.load(data_root / "CIFAR-10-C" / "contrast.npy")
    np.save(data_root / "CIFAR-10-C" / "contrast.npy", 255 - arrays)
    messages.clear()
    engine_for(data_root, messages).result(CASE)
    assert any("evaluating 2 network x shift pairs" in m for m in messages), messages  # parent + step, contrast only


def test_report_footnote_and_json_name_each_source(engine_for, data_root, tmp_path):
    engine = engine_for(data_root)
    engine.result(CASE)
    report = build_report(engine.suite_run(), "suite_x.py")
    (table,) = report["tables"]
    assert table["shift_sources"]["uniform_noise@0.1"] == "generated"
    assert report["cases"][0]["shift_sources"] == table["shift_sources"]
    text = render_text(apply_verdicts(report, {}))
    footnote = next(line for line in text.splitlines() if line.startswith("shift sources:"))
    assert f"published, read from {data_root / 'CIFAR-10-C'}: contrast@3 (contrast.npy)" in footnote
    assert f"published, read from {data_root / 'CIFAR-10.1'}: cifar10_1@6 (cifar10.1_v6_data.npy)" in footnote
    assert footnote.endswith("generated: uniform_noise@0.1")
    # Markdown: the footnote is its own paragraph, not a table row
    assert "|\n\nshift sources:" in render_text(report, "github")
    # xdist workers' parts keep their sources when merged
    other_part = {**report, "cases": [], "tables": [{**table, "shift_sources": {"x@1": "generated"}}]}
    (merged,) = merge_reports([report, other_part])
    assert merged["tables"][0]["shift_sources"]["x@1"] == "generated"
    assert "contrast@3" in merged["tables"][0]["shift_sources"]


def test_generated_only_suite_says_so(engine_for, data_root, tmp_path):
    engine = engine_for(data_root, shifts=["uniform_noise@0.1"])
    engine.result(CASE)
    report = apply_verdicts(build_report(engine.suite_run(), "s.py"), {})
    assert "shift sources: all generated by robustprune" in render_text(report)


def test_published_only_shift_on_a_dataset_without_it(engine_for, tmp_path):
    engine = engine_for(None, shifts=["cifar10_1@6"], datasets=("digits",))
    with pytest.raises(CaseError, match="cifar10_1@6 is a published test set, and dataset 'digits' does not supply it"):
        engine.result(CaseKey("wt", "small_cnn", "digits"))


BAD_PLUGIN = """
import numpy as np
from robustprune import DatasetSpec, DataSplits, ImageSet, ShiftedSet, hookimpl

def _set(n, size, seed):
    rng = np.random.default_rng(seed)
    return ImageSet(rng.integers(0, 255, (n, size, size, 3), dtype=np.uint8), np.arange(n) % 2)

def load(request):
    mode = request.params["mode"]
    def published(name, param):
        if mode == "shape":
            return ShiftedSet(_set(4, 16, 1), "/somewhere/small.npy")
        if mode == "labels":
            bad = _set(4, 32, 1)
            return ShiftedSet(type(bad)(bad.images, np.array([0, 1, 2, 7])), "/somewhere/labels.npy")
        raise OSError("disk on fire")
    return DataSplits(train=_set(8, 32, 0), test=_set(4, 32, 2), num_classes=2, mean=(0.5,) * 3, std=(0.25,) * 3,
                      published_shift=published)

@hookimpl
def robustprune_register_datasets(register):
    register(DatasetSpec(name="fakeset", load=load))
"""


@pytest.mark.parametrize("mode, message", [
    ("shape", "supplied (16, 16, 3) for contrast@3; expected a ShiftedSet of images shaped like the test set's"),
    ("labels", "the published set for contrast@3 (/somewhere/labels.npy) has labels outside 0..1"),
    ("raise", "dataset 'fakeset' could not read the published set for contrast@3: OSError: disk on fire"),
])
def test_bad_published_sets_are_reported(tmp_path, mode, message):
    (tmp_path / "fakeset_plugin.py").write_text(textwrap.dedent(BAD_PLUGIN))
    registry = Registry(create_host(["fakeset_plugin"], search_path=tmp_path))
    suite = Suite(models=["small_cnn"], datasets=["fakeset"], methods=["wt"], shifts=["contrast@3"], ratios=[0.5],
                  recipe={"epochs": 1}, retrain_epochs=1, dataset_params={"fakeset": {"mode": mode}})
    engine = Engine(suite, registry, RunOptions(store=Store(tmp_path / "store"), workers=1))
    with pytest.raises(CaseError) as info:
        engine.result(CaseKey("wt", "small_cnn", "fakeset"))
    assert message in str(info.value)
