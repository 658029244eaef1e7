"""robustprune.plugin.masks: prunable weights, global top-k masks, mask validation and application."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from robustprune.plugin.masks import (
    PruneError,
    apply_masks,
    count_nonzero_prunable,
    full_masks,
    global_top_masks,
    prunable_weights,
    ratio_of,
    validate_masks,
    within_tolerance,
)

T, F = True, False


def tiny_net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 2, 3),  # 0: 54 weights
        nn.BatchNorm2d(2),  # 1: not prunable
        nn.ReLU(),
        nn.Conv1d(2, 2, 1),  # 3: not Conv2d
        nn.Flatten(),
        nn.Embedding(4, 2),  # 5: not prunable
        nn.Linear(8, 3),  # 6: 24 weights
    )


# --------------------------------------------------------------------------- prunable weights


def test_prunable_weights_are_conv2d_and_linear_weights_only():
    net = tiny_net()
    weights = prunable_weights(net)
    assert list(weights) == ["0.weight", "6.weight"]
    assert weights["0.weight"] is net[0].weight
    assert weights["6.weight"] is net[6].weight


def test_prunable_weights_nested_names_and_module_order():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.head = nn.Linear(4, 2)
            self.body = nn.Sequential(nn.Conv2d(1, 2, 1), nn.BatchNorm2d(2))

    assert list(prunable_weights(Net())) == ["head.weight", "body.0.weight"]


def test_prunable_weights_of_a_bare_layer():
    layer = nn.Linear(3, 2)
    assert list(prunable_weights(layer)) == ["weight"]


def test_full_masks_keep_everything():
    masks = full_masks(tiny_net())
    assert {n: tuple(m.shape) for n, m in masks.items()} == {"0.weight": (2, 3, 3, 3), "6.weight": (3, 8)}
    assert all(m.dtype == torch.bool and bool(m.all()) for m in masks.values())
    assert ratio_of(masks) == 0.0


# --------------------------------------------------------------------------- ratio accounting


def test_ratio_of_counts_over_all_masks():
    masks = {"a": torch.tensor([T, F, F, T]), "b": torch.tensor([[F, T]])}
    assert ratio_of(masks) == pytest.approx(3 / 6)
    assert ratio_of({"a": torch.tensor([F, F]), "b": torch.ones(6, dtype=torch.bool)}) == pytest.approx(2 / 8)
    assert ratio_of({}) == 0.0


def test_within_tolerance_is_relative():
    assert within_tolerance(0.5025, 0.5)
    assert within_tolerance(0.4980, 0.5)
    assert not within_tolerance(0.5030, 0.5)
    assert not within_tolerance(0.0100, 0.0)
    assert within_tolerance(0.0, 0.0)


# --------------------------------------------------------------------------- global top-k

# scores over two layers, 7 entries in all:
#   a = [[0.5, 0.1], [0.9, 0.3]]   b = [0.2, 0.8, 0.05]
# ascending: b2 0.05, a01 0.1, b0 0.2, a11 0.3, a00 0.5, b1 0.8, a10 0.9
SCORES = {"a": torch.tensor([[0.5, 0.1], [0.9, 0.3]]), "b": torch.tensor([0.2, 0.8, 0.05])}


def test_global_top_masks_removes_lowest_across_layers():
    masks = global_top_masks(SCORES, 0.4)  # round(2.8) = 3 removed: b2, a01, b0
    assert masks["a"].tolist() == [[T, F], [T, T]]
    assert masks["b"].tolist() == [F, T, F]
    assert masks["a"].dtype == torch.bool and masks["a"].shape == (2, 2)


def test_global_top_masks_rounds_to_nearest_count():
    masks = global_top_masks(SCORES, 0.3)  # round(2.1) = 2: b2, a01
    assert masks["a"].tolist() == [[T, F], [T, T]]
    assert masks["b"].tolist() == [T, T, F]
    assert ratio_of(global_top_masks(SCORES, 0.55)) == pytest.approx(4 / 7)  # round(3.85) = 4


def test_global_top_masks_extremes():
    assert ratio_of(global_top_masks(SCORES, 0.0)) == 0.0
    # removing everything leaves a network that ignores its input: refused, naming what is reachable
    total = sum(s.numel() for s in SCORES.values())
    with pytest.raises(PruneError, match=f"largest reachable ratio is {(total - 1) / total:.6f}"):
        global_top_masks(SCORES, 1.0)


def test_global_top_masks_previous_removed_first():
    previous = {"a": torch.tensor([[T, T], [F, T]]), "b": torch.ones(3, dtype=torch.bool)}  # a10 (0.9) dead
    masks = global_top_masks(SCORES, 0.4, previous=previous)  # 3 removed: a10 first, then b2, a01
    assert masks["a"].tolist() == [[T, F], [F, T]]
    assert masks["b"].tolist() == [T, T, F]


def test_global_top_masks_cascade_never_revives():
    torch.manual_seed(1)
    scores = {"a": torch.rand(5, 4), "b": torch.rand(10)}
    previous = None
    for ratio in (0.2, 0.4, 0.6, 0.8):
        masks = global_top_masks(scores, ratio, previous=previous)
        if previous is not None:
            for n in masks:
                assert not bool((masks[n] & ~previous[n]).any())  # nothing dead comes back
        assert ratio_of(masks) == pytest.approx(round(ratio * 30) / 30)
        previous = masks
        # scores change between steps, as after retraining; the dead must still stay dead
        scores = {n: torch.rand_like(s) for n, s in scores.items()}


def test_global_top_masks_ties_are_broken_by_position():
    scores = {"a": torch.ones(2), "b": torch.ones(2)}
    masks = global_top_masks(scores, 0.75)  # 3 removed: a0, a1, b0
    assert masks["a"].tolist() == [F, F]
    assert masks["b"].tolist() == [F, T]
    again = global_top_masks({"a": torch.ones(2), "b": torch.ones(2)}, 0.75)
    assert all(torch.equal(masks[n], again[n]) for n in masks)


def test_global_top_masks_does_not_modify_scores():
    scores = {n: s.clone() for n, s in SCORES.items()}
    global_top_masks(scores, 0.5,
                     previous={"a": torch.zeros(2, 2, dtype=torch.bool), "b": torch.ones(3, dtype=torch.bool)})
    assert all(torch.equal(scores[n], SCORES[n]) for n in SCORES)


# --------------------------------------------------------------------------- validate_masks


def ref_masks() -> dict[str, torch.Tensor]:
    return {"a": torch.ones(10, dtype=torch.bool), "b": torch.ones(2, 5, dtype=torch.bool)}


def test_validate_masks_accepts_exact_ratio():
    masks = ref_masks()
    masks["a"][:5] = False
    masks["b"][0] = False  # 10 of 20 removed
    combined, achieved = validate_masks(masks, ref_masks(), 0.5, "wt")
    assert achieved == pytest.approx(0.5)
    assert torch.equal(combined["a"], masks["a"]) and torch.equal(combined["b"], masks["b"])


def test_validate_masks_missing_mask_names_method_and_parameter():
    with pytest.raises(PruneError, match=r"method 'wt' returned wrong masks: missing masks for b"):
        validate_masks({"a": torch.zeros(10, dtype=torch.bool)}, ref_masks(), 0.5, "wt")


def test_validate_masks_extra_mask_rejected():
    masks = {**ref_masks(), "bn.weight": torch.ones(3, dtype=torch.bool)}
    with pytest.raises(PruneError, match="non-prunable parameters bn.weight"):
        validate_masks(masks, ref_masks(), 0.0, "wt")


def test_validate_masks_wrong_shape():
    masks = {"a": torch.ones(10, dtype=torch.bool), "b": torch.ones(10, dtype=torch.bool)}
    expected = r"method 'ft' returned a mask of shape \(10,\) for b, which has shape \(2, 5\)"
    with pytest.raises(PruneError, match=expected):
        validate_masks(masks, ref_masks(), 0.0, "ft")


def test_validate_masks_ratio_outside_tolerance_names_requested_and_achieved():
    masks = ref_masks()
    masks["a"][:6] = False  # 6 of 20 = 0.3
    with pytest.raises(PruneError) as info:
        validate_masks(masks, ref_masks(), 0.5, "sipp")
    msg = str(info.value)
    assert "'sipp'" in msg
    assert "removed 0.3000" in msg
    assert "0.5000 was requested" in msg


def test_validate_masks_tolerance_edge():
    ref = {"w": torch.ones(1000, dtype=torch.bool)}
    ok = {"w": torch.ones(1000, dtype=torch.bool)}
    ok["w"][:498] = False  # 0.498: 0.4 % off
    assert validate_masks(ok, ref, 0.5, "wt")[1] == pytest.approx(0.498)
    bad = {"w": torch.ones(1000, dtype=torch.bool)}
    bad["w"][:497] = False  # 0.497: 0.6 % off
    with pytest.raises(PruneError):
        validate_masks(bad, ref, 0.5, "wt")


def test_validate_masks_combines_with_previous_masks():
    previous = ref_masks()
    previous["a"][:2] = False  # 2 dead from an earlier step
    masks = ref_masks()  # the method "revives" them and removes 3 others
    masks["b"][1, :3] = False
    masks = {n: m.float() for n, m in masks.items()}  # non-bool masks are accepted
    combined, achieved = validate_masks(masks, previous, 0.25, "wt")
    assert achieved == pytest.approx(5 / 20)
    assert combined["a"][:2].tolist() == [F, F]  # stay removed
    assert combined["b"][1].tolist() == [F, F, F, T, T]
    assert combined["a"].dtype == torch.bool
    with pytest.raises(PruneError, match="removed 0.2500"):
        validate_masks(masks, previous, 0.15, "wt")


# --------------------------------------------------------------------------- apply_masks


def test_apply_masks_zeros_in_place():
    net = nn.Sequential(nn.Linear(3, 2), nn.ReLU(), nn.Linear(2, 1))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]))
        net[2].weight.copy_(torch.tensor([[7.0, -8.0]]))
        net[0].bias.fill_(9.0)
    param = net[0].weight
    masks = {"0.weight": torch.tensor([[T, F, T], [F, F, T]]), "2.weight": torch.tensor([[F, T]])}
    apply_masks(net, masks)
    assert net[0].weight is param
    assert net[0].weight.tolist() == [[1.0, 0.0, 3.0], [0.0, 0.0, 6.0]]
    assert net[2].weight.tolist() == [[0.0, -8.0]]
    assert net[0].bias.tolist() == [9.0, 9.0]
    assert count_nonzero_prunable(net) == 4
    assert net[0].weight.requires_grad


def test_apply_masks_zeros_non_finite_masked_weights():
    net = nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        net.weight.copy_(torch.tensor([[math.inf, 1.0]]))
    apply_masks(net, {"weight": torch.tensor([[F, T]])})
    assert net.weight.tolist() == [[0.0, 1.0]]
