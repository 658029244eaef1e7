"""The deploy gate, pruned checkpoints and the export folder: hand-worked numbers and bad input, in process."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.nn.utils import prune

from robustprune import DeployGate, PrunedCheckpoint, Suite
from robustprune.compute.checkpoints import CheckpointError, fold_torch_prune, read_pruned
from robustprune.core.gate import evaluate_gate, resolve_entries, shift_numbers
from robustprune.core.results import CaseError, CaseKey
from robustprune.engine.engine import Engine
from robustprune.engine.export import ExportError, check_export_dir, remove_earlier_exports
from robustprune.plugin.masks import prunable_weights
from robustprune_plugins.models.small_cnn import SmallCNN

torch.set_num_threads(1)

# --------------------------------------------------------------------------- the gate, by hand

# parent accuracies and the deploy network's (index 1), per shift; the entries are as a suite would declare them
CURVES = {
    "nominal": [0.90, 0.89],
    "gaussian_noise@3": [0.60, 0.58],  # loss 2 points
    "glass_blur@3": [0.50, 0.45],      # loss 5 points: the worst
    "contrast@3": [0.30, 0.30],        # loss 0
}
ENTRIES = {"noise@3": ["gaussian_noise@3"], "blurs@3": ["glass_blur@3", "contrast@3"]}


def judge(gate: DeployGate, **kwargs):
    entries = resolve_entries(gate, ENTRIES)
    defaults = dict(name="wt", ratio=0.5, achieved=0.5, numbers=shift_numbers(CURVES, 1), entries=entries,
                    delta=0.005)
    return evaluate_gate(gate, **{**defaults, **kwargs})


def test_every_mode_fails_on_the_worst_shift_and_names_its_numbers():
    result = judge(DeployGate(max_accuracy_loss=0.03))
    assert not result and not result.passed
    assert result.worst == "glass_blur@3"
    assert result.message == ("deploy gate failed for wt at ratio 0.5: accuracy loss 5.0 % under glass_blur@3 "
                              "> limit 3 % (worst of blurs@3)")
    assert repr(result) == result.message  # what a bare `assert case.deploy_gate()` prints


def test_default_limit_is_the_suites_delta():
    result = judge(DeployGate(shifts=["nominal"]))
    # nominal loses 1 point, delta is 0.5 point
    assert result.message == "deploy gate failed for wt at ratio 0.5: accuracy loss 1.0 % under nominal > delta 0.5 %"


def test_mean_mode_judges_each_entrys_mean():
    # blurs@3 mean loss = (5 + 0) / 2 = 2.5 points; noise@3 = 2 points; nominal 1 point
    passing = judge(DeployGate(mode="mean", shifts=["noise@3", "blurs@3"], max_accuracy_loss=0.025))
    assert passing.passed
    failing = judge(DeployGate(mode="mean", shifts=["noise@3", "blurs@3"], max_accuracy_loss=0.024))
    assert failing.message == ("deploy gate failed for wt at ratio 0.5: mean accuracy loss 2.5 % over blurs@3 > "
                               "limit 2.4 % (worst member glass_blur@3: 5.0 %)")


def test_delta_excess_error_limit():
    # delta excess error of glass_blur@3: (0.55 - 0.11) - (0.50 - 0.10) = 0.04
    numbers = shift_numbers(CURVES, 1)
    assert numbers["glass_blur@3"].delta_excess_error == pytest.approx(0.04)
    assert numbers["nominal"].delta_excess_error is None
    result = judge(DeployGate(max_accuracy_loss=0.06, max_delta_excess_error=0.035))
    assert [c.what for c in result.failed_checks] == ["delta excess error"]
    assert "delta excess error 4.0 % under glass_blur@3 > limit 3.5 % (worst of blurs@3)" in result.message
    assert judge(DeployGate(max_accuracy_loss=0.06, max_delta_excess_error=0.04)).passed  # a tie is within


def test_a_passing_gate_still_names_its_worst_shift():
    result = judge(DeployGate(max_accuracy_loss=0.05))
    assert result.passed
    assert result.summary == "accuracy loss 5.0 % under glass_blur@3 <= limit 5 % (worst of blurs@3)"


def test_sparsity_requirement_of_a_pruned_checkpoint():
    gate = DeployGate(max_accuracy_loss=0.1)
    low = judge(gate, name="mine", achieved=0.4, ratio=0.4, single_network=True, required_sparsity=0.5)
    assert low.message.startswith("deploy gate failed for mine at sparsity 0.400 (pruned checkpoint): "
                                  "sparsity 0.400 measured from the weights < required 0.5")
    # the tolerance methods get (0.5 % relative) applies too
    enough = judge(gate, achieved=0.498, single_network=True, required_sparsity=0.5)
    assert enough.passed
    # the verdict column shows the worst shift
    assert enough.summary.startswith("accuracy loss 5.0 % under glass_blur@3")


def test_numbers_rounding_to_the_limit_get_two_decimals():
    curves = {"nominal": [0.9, 0.8948]}  # loss 0.52 points against a limit of 0.5
    gate = DeployGate(shifts=["nominal"])
    result = evaluate_gate(gate, name="wt", ratio=0.5, achieved=0.5, numbers=shift_numbers(curves, 1),
                           entries=resolve_entries(gate, {}), delta=0.005)
    assert result.summary == "accuracy loss 0.52 % under nominal > delta 0.5 %"


@pytest.mark.parametrize("kwargs, message", [
    (dict(mode="worst"), "mode must be one of every, mean"),
    (dict(max_accuracy_loss=-0.1), "max_accuracy_loss must be in [0, 1)"),
    (dict(ratio=1.5), "ratio 1.5 is outside (0, 1)"),
    (dict(shifts=[]), "gates nothing"),
])
def test_bad_gates(kwargs, message):
    with pytest.raises(ValueError) as info:
        DeployGate(**kwargs)
    assert message in str(info.value)


def test_unknown_gated_entry_names_the_valid_ones():
    with pytest.raises(ValueError, match=r"'blur@3', which is not one of the suite's shift entries: nominal, noise@3"):
        resolve_entries(DeployGate(shifts=["blur@3"]), {"noise@3": ["gaussian_noise@3"]})


# --------------------------------------------------------------------------- the suite


def suite(**fields):
    base = dict(models=["small_cnn"], datasets=["digits"], methods=["wt"], ratios=[0.3, 0.5])
    return Suite(**{**base, **fields})


def test_gate_ratio_becomes_the_suites_gate_ratio():
    s = suite(gate=DeployGate(ratio=0.3))
    assert s.gate_ratio == 0.3 and s.gate_ratio_for("wt") == 0.3
    with pytest.raises(ValueError, match="gate_ratio 0.4 for method 'wt' is not one of the suite's ratios"):
        suite(gate=DeployGate(ratio=0.4))
    with pytest.raises(ValueError, match="disagree"):
        suite(gate_ratio=0.5, gate=DeployGate(ratio=0.3))
    with pytest.raises(ValueError, match="'ftt', neither a method nor a pruned checkpoint"):
        suite(gate=DeployGate(ratio={"wt": 0.5, "ftt": 0.5}))


def test_pruned_checkpoints_in_the_suite():
    s = suite(methods=[], parent_checkpoints={"small_cnn": "p.pt"},
              pruned_checkpoints={"mine": {"model": "small_cnn", "path": "q.pt"}}, gate=DeployGate(ratio={"mine": 0.5}))
    assert s.pruned_checkpoints == {"mine": PrunedCheckpoint("small_cnn", "q.pt")}
    assert s.deploy_ratio_for("mine") == 0.5  # a minimum sparsity, not a grid ratio
    assert suite(parent_checkpoints={"small_cnn": "p.pt"},
                 pruned_checkpoints={"mine": PrunedCheckpoint("small_cnn", "q.pt")}).deploy_ratio_for("mine") is None


@pytest.mark.parametrize("fields, message", [
    (dict(pruned_checkpoints={"mine": {"model": "small_cnn", "path": "q.pt"}}), "set parent_checkpoints={'small_cnn'"),
    (dict(pruned_checkpoints={"wt": {"model": "small_cnn", "path": "q.pt"}}, parent_checkpoints={"small_cnn": "p"}),
     "'wt' is also a method"),
    (dict(pruned_checkpoints={"mine": {"model": "resnet20", "path": "q.pt"}}), "names model 'resnet20'"),
    (dict(pruned_checkpoints={"mine": {"model": "small_cnn", "file": "q.pt"}}), "unknown key(s) file"),
    (dict(methods=[]), "at least one entry in methods (or a network in pruned_checkpoints)"),
])
def test_bad_pruned_checkpoint_entries(fields, message):
    with pytest.raises(ValueError) as info:
        suite(**fields)
    assert message in str(info.value)


# --------------------------------------------------------------------------- reading pruned checkpoints


def trained_like(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return SmallCNN(10)


def test_torch_prune_checkpoints_fold_into_plain_weights():
    network = trained_like(1)
    layers = [(m, "weight") for m in network.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    prune.global_unstructured(layers, pruning_method=prune.L1Unstructured, amount=0.6)
    state = network.state_dict()
    assert "classifier.weight_orig" in state and "classifier.weight" not in state
    folded, did = fold_torch_prune(state)
    assert did and "classifier.weight" in folded and "classifier.weight_mask" not in folded
    assert torch.equal(folded["classifier.weight"], network.classifier.weight)  # what prune's hook computes


def test_read_pruned_measures_sparsity_from_the_weights(tmp_path):
    parent = trained_like(1)
    pruned = {k: v.clone() for k, v in parent.state_dict().items()}
    for name in prunable_weights(parent):
        pruned[name][..., 0] = 0.0  # zero the first column of every kernel / row
    torch.save(pruned, tmp_path / "zeros.pt")
    got = read_pruned(tmp_path / "zeros.pt", SmallCNN(10), parent.state_dict(), "test")
    weights = prunable_weights(parent)
    zeros = sum(int((pruned[n] == 0).sum()) for n in weights)
    assert got.layout == "state dict"
    assert got.sparsity == pytest.approx(zeros / sum(w.numel() for w in weights.values()))
    assert set(got.masks) == set(weights)


def test_a_checkpoint_of_another_architecture_is_refused_with_the_reason(tmp_path):
    other = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 7), nn.ReLU(), nn.Linear(7, 10))
    torch.save(other.state_dict(), tmp_path / "other.pt")
    with pytest.raises(CheckpointError) as info:
        read_pruned(tmp_path / "other.pt", SmallCNN(10), trained_like(1).state_dict(), "pruned checkpoint 'x'")
    message = str(info.value)
    assert "shares no tensor of the same name and shape with the parent" in message
    assert "it was not pruned from this parent" in message and "1.weight (7, 3072)" in message


# --------------------------------------------------------------------------- the engine, end to end in process


def byo_engine(make_engine, tmp_path: Path, pruned_state, messages=None, **fields) -> Engine:
    parent = trained_like(1)
    torch.save(parent.state_dict(), tmp_path / "parent.pt")
    torch.save(pruned_state(parent), tmp_path / "pruned.pt")
    s = Suite(models=["small_cnn"], datasets=["digits"], methods=[], ratios=[0.5],
              parent_checkpoints={"small_cnn": str(tmp_path / "parent.pt")},
              pruned_checkpoints={"mine": {"model": "small_cnn", "path": str(tmp_path / "pruned.pt")}}, **fields)
    return make_engine(s, messages)


def _torch_pruned(parent: nn.Module, amount: float = 0.5) -> dict:
    network = SmallCNN(10)
    network.load_state_dict(parent.state_dict())
    prune.global_unstructured([(m, "weight") for m in network.modules() if isinstance(m, (nn.Conv2d, nn.Linear))],
                              pruning_method=prune.L1Unstructured, amount=amount)
    return network.state_dict()


def test_pruned_checkpoint_case_is_one_network_keyed_by_its_content(make_engine, tmp_path):
    messages: list[str] = []
    engine = byo_engine(make_engine, tmp_path, _torch_pruned, messages, gate=DeployGate(max_accuracy_loss=0.9))
    key = CaseKey("mine", "small_cnn", "digits")
    assert engine.cases() == [key]
    result = engine.result(key)
    assert result.ratios == result.achieved and len(result.ratios) == 1
    assert result.achieved[0] == pytest.approx(0.5, abs=1e-3)  # global L1 pruning of half the weights
    assert result.method["pruned_checkpoint"]["layout"] == "torch.nn.utils.prune"
    assert len(result.accuracy["nominal"]) == 2  # parent, pruned
    assert not any("retrain" in m for m in messages)

    from robustprune.core.cases import Case, NotApplicable

    view = Case(lambda: result, engine.suite, engine.shift_entries, CaseKey("mine", "small_cnn", "digits"))
    assert view.single_network and view.gate_ratio == result.achieved[0]
    with pytest.raises(NotApplicable, match="prune potential: n/a .*single network"):
        view.prune_potential()
    assert float(view.accuracy_loss()) == pytest.approx(result.accuracy["nominal"][0] - result.accuracy["nominal"][1])
    assert view.deploy_gate().passed

    # the same bytes under another name reuse everything; other bytes are another network
    again = byo_engine(make_engine, tmp_path, _torch_pruned)
    assert again.result(key).step_keys == result.step_keys
    other = byo_engine(make_engine, tmp_path, lambda p: _torch_pruned(p, 0.7))
    assert other.result(key).step_keys != result.step_keys


@pytest.mark.parametrize("damage, message", [
    (lambda s: {k: (v[:5] if k.startswith("classifier.") else v) for k, v in s.items()},
     "2 mis-shaped: classifier.weight (checkpoint (5, 64), network (10, 64)), classifier.bias"),
    (lambda s: {k: v for k, v in s.items() if k != "features.1.bias"}, "1 missing: features.1.bias"),
], ids=["mis-shaped", "missing"])
def test_pruned_checkpoint_that_does_not_fit_names_the_keys(make_engine, tmp_path, damage, message):
    engine = byo_engine(make_engine, tmp_path, lambda parent: damage(_torch_pruned(parent)))
    with pytest.raises(CaseError) as info:
        engine.result(CaseKey("mine", "small_cnn", "digits"))
    assert message in str(info.value)
    assert "pruned checkpoint 'mine'" in str(info.value) and "pruned.pt does not fit the model" in str(info.value)


def test_parent_checkpoint_that_does_not_fit_names_the_keys(make_engine, tmp_path):
    engine = byo_engine(make_engine, tmp_path, _torch_pruned)
    torch.save({k: v for k, v in trained_like(1).state_dict().items() if k != "features.0.weight"},
               tmp_path / "parent.pt")
    with pytest.raises(CaseError, match="parent checkpoint .* does not fit small_cnn .*1 missing: features.0.weight"):
        engine.result(CaseKey("mine", "small_cnn", "digits"))


def test_gate_naming_a_shift_entry_the_suite_lacks_fails_at_construction(make_engine, tmp_path):
    with pytest.raises(ValueError, match="DeployGate shifts names 'noise@3'"):
        byo_engine(make_engine, tmp_path, _torch_pruned, gate=DeployGate(shifts=["noise@3"]))


# --------------------------------------------------------------------------- the export folder


def test_export_folder_is_created_and_probed(tmp_path):
    folder = check_export_dir(tmp_path / "a" / "b")
    assert folder.is_dir() and list(folder.iterdir()) == []  # the probe is gone


def test_unwritable_export_folder_says_why(tmp_path):
    blocker = tmp_path / "file.txt"
    blocker.write_text("not a folder")
    with pytest.raises(ExportError, match=r"export folder .*file.txt/exported cannot be written: Not a directory"):
        check_export_dir(blocker / "exported")


def test_earlier_exports_are_removed_only_when_they_are_ours(tmp_path):
    def export(folder: str, suite_file: str) -> Path:
        (tmp_path / folder).mkdir(parents=True)
        (tmp_path / folder / "network.json").write_text(json.dumps({"suite": suite_file, "case": folder}))
        return tmp_path / folder

    mine, kept = export("a", "s1.py"), export("k", "s1.py")
    elsewhere, occupied = export("b", "s2.py"), export("c", "s2.py")
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "network.json").write_text("not json")
    removed = remove_earlier_exports(tmp_path, {"s1.py"}, keep=[kept], occupied=[occupied])
    assert sorted(case for _, case in removed) == ["a", "c"]
    assert not mine.exists() and not occupied.exists()
    assert kept.exists() and elsewhere.exists() and (tmp_path / "notes").exists()


# --------------------------------------------------------------------------- the CI recipe shows the real files

EXAMPLE = Path(__file__).resolve().parents[1] / "docs" / "example-project"


def test_ci_recipe_shows_the_example_projects_files():
    """docs/ci-recipe.md quotes the example project (run end to end by test_byo_project_e2e.py): no drift."""
    text = (EXAMPLE.parent / "ci-recipe.md").read_text()
    workflow = (EXAMPLE / ".github" / "workflows" / "robustness-gate.yml").read_text()
    assert workflow.strip() in text
    suite_code = (EXAMPLE / "robustness" / "deploy_gate.py").read_text()
    assert suite_code[suite_code.index("from robustprune import"):].strip() in text
    plugin = (EXAMPLE / "robustness" / "robustprune_local.py").read_text()
    for part in ("def load_mydigits", "@hookimpl\ndef robustprune_register_models"):
        start = plugin.index(part)
        end = plugin.find("\n\n\n", start)
        assert plugin[start:end if end > 0 else None].strip() in text, part


# --------------------------------------------------------------------------- a gate with a confidence, by hand
#
# three repeats, no image bootstrap: the accuracy loss on each repeat
#   nominal      0.002 0.004 0.006  -> mean 0.004, std 0.002
#   glass_blur@3 0.000 0.010 0.020  -> mean 0.010, std 0.010
# one-sided 95 % upper bound = mean + t(0.95, 2) * std / sqrt(3), t(0.95, 2) = 2.92
#   nominal: 0.004 + 2.92 * 0.002 / 1.732 = 0.00737;  glass_blur@3: 0.010 + 2.92 * 0.010 / 1.732 = 0.02686


def _confident_judge(gate: DeployGate):
    from robustprune.core.gate import ShiftStatistics
    from robustprune.core.uncertainty import PerRepeat, Resampling

    losses = {"nominal": (0.002, 0.004, 0.006), "glass_blur@3": (0.0, 0.010, 0.020)}
    curves = {label: [0.9, 0.9 - sum(loss) / 3] for label, loss in losses.items()}
    statistics = {label: ShiftStatistics(accuracy_loss=PerRepeat(loss), delta_excess_error=None)
                  for label, loss in losses.items()}
    entries = resolve_entries(gate, {"blurs@3": ["glass_blur@3"]})
    return evaluate_gate(gate, name="wt", ratio=0.5, achieved=0.5, numbers=shift_numbers(curves, 1),
                         entries=entries, delta=0.005, statistics=statistics,
                         resampling=Resampling(repeats=3, samples=0, level=0.95))


def test_a_confident_gate_judges_the_upper_bound_not_the_mean():
    by_means = _confident_judge(DeployGate(shifts=["nominal", "blurs@3"], max_accuracy_loss=0.02))
    assert by_means.passed  # means 0.4 and 1.0 points: within 2 points
    confident = _confident_judge(DeployGate(shifts=["nominal", "blurs@3"], max_accuracy_loss=0.02, confidence=0.95))
    assert not confident.passed
    assert confident.checks[0].value == pytest.approx(0.010 + 2.919986 * 0.010 / 3 ** 0.5)
    assert confident.message == ("deploy gate failed for wt at ratio 0.5: accuracy loss 2.7 % (95 % upper bound) "
                                 "under glass_blur@3 > limit 2 % (worst of blurs@3)")
    # nominal alone: mean 0.4 points is within the suite's delta of 0.5 points, its bound 0.74 points is not
    nominal = _confident_judge(DeployGate(shifts=["nominal"], confidence=0.95))
    assert nominal.checks[0].value == pytest.approx(0.004 + 2.919986 * 0.002 / 3 ** 0.5)
    assert not nominal.passed and "(95 % upper bound) under nominal > delta 0.5 %" in nominal.message
    assert _confident_judge(DeployGate(shifts=["nominal"])).passed
    assert _confident_judge(DeployGate(shifts=["nominal"], max_accuracy_loss=0.008, confidence=0.95)).passed


def test_a_confident_gate_needs_the_statistics():
    with pytest.raises(ValueError, match="needs the per-repeat statistics"):
        judge(DeployGate(confidence=0.95))
    with pytest.raises(ValueError, match="confidence is a level in"):
        DeployGate(confidence=95)


# mode mean with a confidence, and a delta excess error limit; three repeats, no image bootstrap
#   accuracy loss   glass_blur@3 0.00 0.01 0.02   contrast@3 0 0 0   -> blurs@3 per repeat 0 0.005 0.01
#   bound of the entry's mean: 0.005 + 2.92 * 0.005 / sqrt(3) = 0.01343; of glass_blur@3 alone: 0.02686
#   delta excess error glass_blur@3 0.00 0.01 0.02 -> bound 0.02686; contrast@3 0 0 0 -> 0


def _confident_group_judge(gate: DeployGate):
    from robustprune.core.gate import ShiftStatistics
    from robustprune.core.uncertainty import PerRepeat, Resampling

    losses = {"glass_blur@3": (0.0, 0.01, 0.02), "contrast@3": (0.0, 0.0, 0.0)}
    curves = {"nominal": [0.9, 0.9], "glass_blur@3": [0.5, 0.49], "contrast@3": [0.3, 0.3]}
    statistics = {label: ShiftStatistics(accuracy_loss=PerRepeat(loss), delta_excess_error=PerRepeat(loss))
                  for label, loss in losses.items()}
    entries = resolve_entries(gate, {"blurs@3": ["glass_blur@3", "contrast@3"]})
    return evaluate_gate(gate, name="wt", ratio=0.5, achieved=0.5, numbers=shift_numbers(curves, 1),
                         entries=entries, delta=0.005, statistics=statistics,
                         resampling=Resampling(repeats=3, samples=0, level=0.95))


def test_a_confident_gate_in_mean_mode_bounds_each_entrys_mean_per_repeat():
    result = _confident_group_judge(DeployGate(mode="mean", shifts=["blurs@3"], max_accuracy_loss=0.012,
                                               confidence=0.95))
    assert result.checks[0].value == pytest.approx(0.005 + 2.919986 * 0.005 / 3 ** 0.5)
    assert result.message == ("deploy gate failed for wt at ratio 0.5: mean accuracy loss 1.3 % (95 % upper bound) "
                              "over blurs@3 > limit 1.2 % (worst member glass_blur@3: 2.7 % upper bound)")
    assert _confident_group_judge(DeployGate(mode="mean", shifts=["blurs@3"], max_accuracy_loss=0.014,
                                             confidence=0.95)).passed


def test_a_confident_gate_bounds_the_delta_excess_error_too():
    result = _confident_group_judge(DeployGate(shifts=["blurs@3"], max_accuracy_loss=0.03,
                                               max_delta_excess_error=0.02, confidence=0.95))
    loss, dee = result.checks
    assert loss.passed and not dee.passed
    assert dee.value == pytest.approx(0.01 + 2.919986 * 0.01 / 3 ** 0.5)
    assert ("delta excess error 2.7 % (95 % upper bound) under glass_blur@3 > limit 2 % (worst of blurs@3)"
            in result.message)
