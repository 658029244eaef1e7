"""robustprune.testing: the contract checks pass for the first-party plugins and catch each broken contract."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from robustprune import DatasetSpec, ModelSpec, PixelShift, PruneMethod, TensorShift
from robustprune.plugin.masks import global_top_masks, prunable_weights
from robustprune.testing import check_dataset, check_method, check_model, check_shift, tiny_splits


@pytest.mark.parametrize("name", ["wt", "ft", "sipp", "pfp", "random_structured"])
def test_first_party_methods_keep_the_contract(registry, name):
    # the data-informed ones on small_cnn only: on resnet20 their sensitivities take seconds
    data_informed = registry.method(name).item.data_informed
    check_method(registry.method(name).item, **({"models": ("small_cnn",)} if data_informed else {}))


def test_first_party_shifts_models_and_datasets_keep_the_contract(registry):
    check_shift(registry.get("shift", "contrast").item, 3)
    check_shift(registry.get("shift", "uniform_noise").item, 0.2)
    check_model(registry.model("resnet20").item)
    splits = check_dataset(registry.dataset("digits").item)
    assert splits.num_classes == 10


class Magnitude(PruneMethod):
    name = "magnitude"

    def prune(self, network, ratio, context):
        scores = {n: w.detach().abs() for n, w in prunable_weights(network).items()}
        return global_top_masks(scores, ratio, context.masks)


class Forgetful(Magnitude):
    """Ignores the previous step's masks: from scratch at every ratio, on fresh random scores."""

    name = "forgetful"

    def prune(self, network, ratio, context):
        generator = torch.Generator().manual_seed(int(ratio * 1000))  # other scores at every step
        scores = {n: torch.rand(w.shape, generator=generator) for n, w in prunable_weights(network).items()}
        return global_top_masks(scores, ratio, None)


class Sloppy(Magnitude):
    name = "sloppy"

    def prune(self, network, ratio, context):
        return super().prune(network, ratio * 0.9, context)


class Meddling(Magnitude):
    name = "meddling"

    def prune(self, network, ratio, context):
        masks = super().prune(network, ratio, context)
        with torch.no_grad():
            next(iter(network.parameters())).mul_(0.5)
        return masks


def test_a_correct_third_party_method_passes():
    check_method(Magnitude(), models=("small_cnn",))


@pytest.mark.parametrize(("method", "message"), [
    (Forgetful(), r"forgetful on small_cnn at ratio 0.6: the masks keep weights the previous step removed"),
    (Sloppy(), r"sloppy on small_cnn at ratio 0.3: method 'sloppy' removed 0.2\d+ of the prunable weights, but "
               r"0.3000 was requested"),
    (Meddling(), r"meddling on small_cnn at ratio 0.3: prune\(\) modified the network"),
])
def test_each_broken_method_contract_is_named(method, message):
    with pytest.raises(AssertionError, match=message):
        check_method(method, models=("small_cnn",))


def _to_float(image, amount, seed):
    return image.astype(np.float32) * amount


def _unseeded(image, amount, seed):
    return np.clip(image + np.random.default_rng().integers(0, 50, image.shape), 0, 255).astype(np.uint8)


def _noisy_tensor(batch, eps, seeds):
    return batch + eps * torch.randn(batch.shape)


@pytest.mark.parametrize(("shift", "message"), [
    (PixelShift("to_float", _to_float), r"shift to_float@2 returned \(32, 32, 3\) float32 for a \(32, 32, 3\) uint8"),
    (PixelShift("unseeded", _unseeded), r"shift unseeded@2 is not deterministic given its seed"),
    (TensorShift("noisy", _noisy_tensor), r"shift noisy@2 is not deterministic given its seeds"),
])
def test_each_broken_shift_contract_is_named(shift, message):
    with pytest.raises(AssertionError, match=message):
        check_shift(shift, 2)


def test_a_model_with_the_wrong_output_and_a_dataset_with_bad_labels_are_named():
    def build(num_classes, input_shape):
        return nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, num_classes + 1))

    with pytest.raises(AssertionError, match=r"model wide gives outputs of shape \(2, 11\) for 2 inputs; expected "
                                             r"\(2, 10\)"):
        check_model(ModelSpec("wide", build))

    def load(request):
        splits = tiny_splits()
        splits.test.labels[0] = 7
        return splits

    with pytest.raises(AssertionError, match=r"dataset bad: labels outside 0..1"):
        check_dataset(DatasetSpec("bad", load))


def test_the_fixtures_give_a_tiny_dataset_and_a_trained_parent(pytester, torch_warmed_up):
    pytester.makeconftest('pytest_plugins = ["robustprune.testing"]\n')
    pytester.makepyfile(test_mine="""
import torch

def test_parent_learned_the_tiny_data(tiny_data, tiny_parent):
    from robustprune.compute.data import prepare

    prepared = prepare("tiny", "tiny", tiny_data)
    inputs = prepared.normalize(tiny_data.test.images)
    with torch.no_grad():
        predicted = tiny_parent(inputs).argmax(1)
    assert predicted.shape == (32,)
""")
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
