"""Parent checkpoints, recipe retrain lengths, mixed precision and ImageNet augmentation, data-root plumbing."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest
import torch

from robustprune import Recipe, Suite
from robustprune.cli import pytest_args_for_run
from robustprune.compute.training import amp_enabled, augment, resized_crop_flip, train
from robustprune.core.datasource import dataset_request, with_resolved_paths
from robustprune.core.results import CaseError, CaseKey
from robustprune_plugins.models.small_cnn import SmallCNN


@pytest.fixture
def engine_for(make_engine):
    """``engine_for(messages=None, **suite_fields)``: small_cnn on digits with wt at 0.5, and those fields."""

    def make(messages=None, **suite_fields):
        fields = dict(models=["small_cnn"], datasets=["digits"], methods=["wt"], ratios=[0.5])
        return make_engine(Suite(**{**fields, **suite_fields}), messages)

    return make


def saved(path: Path, state) -> str:
    torch.save(state, path)
    return str(path)


def small_state(seed: int = 1, classes: int = 10):
    torch.manual_seed(seed)
    return SmallCNN(classes).state_dict()


# --------------------------------------------------------------------------- checkpoints


def test_parent_comes_from_the_checkpoint_keyed_by_its_content(engine_for, tmp_path):
    state = small_state(1)
    messages: list[str] = []
    engine = engine_for(messages,
                         parent_checkpoints={"small_cnn": saved(tmp_path / "a.pt", state)})
    record = engine.parent("small_cnn", "digits")
    for name, tensor in state.items():
        assert torch.equal(record.state[name], tensor), name
    assert any("parent from checkpoint" in m for m in messages)
    assert not any("training the parent" in m for m in messages)

    shutil.copy(tmp_path / "a.pt", tmp_path / "b.pt")
    same = engine_for(parent_checkpoints={"small_cnn": str(tmp_path / "b.pt")})
    other = engine_for(parent_checkpoints={"small_cnn": saved(tmp_path / "c.pt", small_state(2))})
    assert same.parent("small_cnn", "digits").key == record.key  # the bytes count, not the file's name
    assert other.parent("small_cnn", "digits").key != record.key


@pytest.mark.parametrize("wrap", [lambda s: {"state_dict": s, "epoch": 3},
                                  lambda s: {f"module.{k}": v for k, v in s.items()}],
                         ids=["wrapped", "data-parallel"])
def test_common_checkpoint_layouts_load(engine_for, tmp_path, wrap):
    state = small_state(3)
    engine = engine_for(parent_checkpoints={"small_cnn": saved(tmp_path / "p.pt", wrap(state))})
    assert torch.equal(engine.parent("small_cnn", "digits").state["classifier.weight"], state["classifier.weight"])


def _without_first_bn_bias(state):
    return {k: v for k, v in state.items() if k != "features.1.bias"}


@pytest.mark.parametrize(
    "state, message",
    [
        (lambda: small_state(classes=5),
         "2 mis-shaped: classifier.weight (checkpoint (5, 64), network (10, 64)), classifier.bias"),
        (lambda: _without_first_bn_bias(small_state()), "1 missing: features.1.bias"),
        (lambda: {**small_state(), "extra.weight": torch.zeros(2)}, "1 unexpected: extra.weight"),
        (lambda: [1, 2, 3], "holds list, not a state dict of tensors"),
    ],
    ids=["classes", "missing", "unexpected", "not-a-state-dict"],
)
def test_checkpoint_that_does_not_fit_names_the_keys(engine_for, tmp_path, state, message):
    path = saved(tmp_path / "bad.pt", state())
    engine = engine_for(parent_checkpoints={"small_cnn": path})
    with pytest.raises(CaseError) as info:
        engine.parent("small_cnn", "digits")
    assert message in str(info.value) and path in str(info.value)


def test_unreadable_or_missing_checkpoint(engine_for, tmp_path):
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a torch file")
    with pytest.raises(CaseError, match="is not a readable torch file"):
        engine_for(parent_checkpoints={"small_cnn": str(garbage)}).parent("small_cnn", "digits")
    with pytest.raises(CaseError, match=r"nope\.pt for small_cnn not found.*relative to the suite file"):
        engine_for(parent_checkpoints={"small_cnn": str(tmp_path / "nope.pt")}).parent(
            "small_cnn", "digits")


class PickledObject:
    """Something a checkpoint should not hold: a class instance, which weights_only loading refuses."""


def test_a_checkpoint_holding_objects_is_refused_without_advice_to_load_it_unsafely(engine_for, tmp_path):
    path = tmp_path / "objects.pt"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "extra": PickledObject()}, path)
    with pytest.raises(CaseError) as info:
        engine_for(parent_checkpoints={"small_cnn": str(path)}).parent("small_cnn", "digits")
    message = str(info.value)
    assert "holds Python objects other than tensors (test_checkpoints_recipes.PickledObject)" in message
    assert "can run code" in message and "weights_only=False" not in message and "\n" not in message


def test_checkpoint_for_a_model_the_suite_does_not_use(engine_for, tmp_path):
    with pytest.raises(ValueError, match="parent_checkpoints names model 'resnet20'"):
        engine_for(parent_checkpoints={"resnet20": "x.pt"})


@pytest.mark.slow  # two cascades of small_cnn on digits
def test_cascade_from_a_checkpoint_retrains_with_the_recipes_retrain_length(engine_for, tmp_path):
    """No parent training; each retrain replays the schedule over the recipe's retrain_epochs."""
    messages: list[str] = []
    engine = engine_for(messages, recipes={"small_cnn": {"retrain_epochs": 1}},
                         parent_checkpoints={"small_cnn": saved(tmp_path / "p.pt", small_state())})
    result = engine.result(CaseKey("wt", "small_cnn", "digits"))
    assert result.achieved[0] == pytest.approx(0.5, rel=0.005)
    assert any("retrain epoch 1/1" in m for m in messages), messages
    assert not any("training the parent" in m for m in messages)
    # the suite's retrain_epochs wins over the recipe's
    messages.clear()
    engine = engine_for(messages, recipes={"small_cnn": {"retrain_epochs": 1}}, retrain_epochs=2,
                         parent_checkpoints={"small_cnn": saved(tmp_path / "p.pt", small_state())})
    engine.result(CaseKey("wt", "small_cnn", "digits"))
    assert any("retrain epoch 2/2" in m for m in messages), messages


def test_recipe_rejects_negative_retrain_epochs():
    with pytest.raises(ValueError, match="retrain_epochs must be >= 0"):
        Recipe(retrain_epochs=-1)


# --------------------------------------------------------------------------- paths and options


def test_suite_relative_paths_resolve_against_the_suite_folder(tmp_path):
    suite = Suite(models=["small_cnn"], datasets=["cifar10", "digits"], methods=["wt"],
                  dataset_params={"cifar10": {"root": "data", "train_subset": 10}, "digits": {"test_fraction": 0.2}},
                  parent_checkpoints={"small_cnn": "ckpt/parent.pt"})
    resolved = with_resolved_paths(suite, tmp_path)
    assert resolved.parent_checkpoints == {"small_cnn": str(tmp_path / "ckpt" / "parent.pt")}
    assert resolved.dataset_params["cifar10"] == {"root": str(tmp_path / "data"), "train_subset": 10}
    assert resolved.dataset_params["digits"] == {"test_fraction": 0.2}
    # the plugin sees the root as request.root, never as a parameter (so it stays out of store keys)
    request = dataset_request(resolved, "cifar10", data_root=Path("/elsewhere"), download=True)
    assert request.root == tmp_path / "data" and dict(request.params) == {"train_subset": 10}
    assert request.download
    assert dataset_request(resolved, "digits", data_root=Path("/elsewhere"), download=False).root == Path("/elsewhere")
    assert with_resolved_paths(dataclasses.replace(suite, dataset_params={}, parent_checkpoints={}), tmp_path) \
        == dataclasses.replace(suite, dataset_params={}, parent_checkpoints={})


def test_run_download_flag_reaches_pytest(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "suite_x.py").write_text("")
    args = pytest_args_for_run(["suite_x.py", "--download", "--data", "/data", "-q"])
    assert "--rp-download" in args and "--rp-data=/data" in args and "-q" in args


# --------------------------------------------------------------------------- training


def test_mixed_precision_only_on_cuda():
    assert amp_enabled("cuda") and amp_enabled("cuda:1")
    assert not amp_enabled("cpu")


def test_resized_crop_flip_is_seeded_and_resamples_whole_images():
    batch = torch.randn(6, 3, 20, 20)
    a = resized_crop_flip(batch, torch.Generator().manual_seed(0))
    b = resized_crop_flip(batch, torch.Generator().manual_seed(0))
    assert a.shape == batch.shape and torch.equal(a, b)
    assert not torch.allclose(a, batch)
    # a crop of the whole image at aspect 1 is the image itself or its mirror image
    full = resized_crop_flip(batch, torch.Generator().manual_seed(1), scale=(1.0, 1.0), ratio=(1.0, 1.0))
    for image, out in zip(batch, full):
        assert torch.allclose(out, image, atol=1e-5) or torch.allclose(out, image.flip(2), atol=1e-5)
    pad = torch.zeros(3)
    assert torch.equal(augment(batch, "resized_crop_flip", pad, torch.Generator().manual_seed(0)), a)


def test_training_with_the_imagenet_augmentation_runs_on_cpu():
    torch.manual_seed(0)
    network = SmallCNN(3)
    inputs, labels = torch.randn(16, 3, 32, 32), torch.arange(16) % 3
    recipe = Recipe(epochs=1, batch_size=8, augment="resized_crop_flip", warmup=0.0)
    stats = train(network, inputs, labels, recipe, epochs=1, seed=0, pad_value=torch.zeros(3))
    assert 0.0 <= stats["accuracy"] <= 1.0 and stats["loss"] > 0
