"""robustprune.core.suite: the ratio grid and Suite validation."""

from __future__ import annotations

import math

import pytest

from robustprune.core.gate import DeployGate
from robustprune.core.suite import Suite, geometric_ratios


def make(**kwargs) -> Suite:
    base = dict(models=["tiny"], datasets=["toy"], methods=["wt"])
    base.update(kwargs)
    return Suite(**base)


# --------------------------------------------------------------------------- geometric_ratios


def test_geometric_ratios_default_grid():
    r = geometric_ratios()
    assert len(r) == 16
    assert r[0] == pytest.approx(0.2)  # 1 - keep_max 0.80
    assert r[-1] == pytest.approx(0.97)  # 1 - keep_min 0.03
    keeps = [1 - x for x in r]
    q = (0.03 / 0.8) ** (1 / 15)
    for a, b in zip(keeps, keeps[1:]):
        assert b / a == pytest.approx(q, rel=1e-4)
    assert list(r) == sorted(r)


def test_geometric_ratios_hand_worked():
    # keep 0.8, 0.4, 0.2 (halving) -> ratios 0.2, 0.6, 0.8
    assert geometric_ratios(3, 0.8, 0.2) == pytest.approx((0.2, 0.6, 0.8))
    # keep 0.5, 0.25, 0.125, 0.0625
    assert geometric_ratios(4, 0.5, 0.0625) == pytest.approx((0.5, 0.75, 0.875, 0.9375))


def test_geometric_ratios_endpoints_and_single_point():
    assert geometric_ratios(1, 0.8, 0.03) == (0.2,)
    assert geometric_ratios(2, 0.8, 0.03) == pytest.approx((0.2, 0.97))
    assert geometric_ratios(5, 0.5, 0.5) == pytest.approx((0.5,) * 5)


@pytest.mark.parametrize(
    "n, keep_max, keep_min",
    [(0, 0.8, 0.03), (3, 0.03, 0.8), (3, 1.0, 0.03), (3, 0.8, 0.0), (3, 0.8, -0.1)],
)
def test_geometric_ratios_rejects_bad_arguments(n, keep_max, keep_min):
    with pytest.raises(ValueError, match="0 < keep_min <= keep_max < 1"):
        geometric_ratios(n, keep_max, keep_min)


def test_suite_default_ratios_are_the_geometric_grid():
    assert make().ratios == geometric_ratios()


# --------------------------------------------------------------------------- Suite validation


@pytest.mark.parametrize("bad", [0, 1, 1.5, -0.1])
def test_ratio_outside_open_unit_interval_is_rejected(bad):
    with pytest.raises(ValueError) as info:
        make(ratios=[0.2, bad, 0.5])
    msg = str(info.value)
    assert f"ratio {float(bad)}" in msg
    assert "(0, 1)" in msg


def test_nan_ratio_is_rejected():
    with pytest.raises(ValueError, match=r"outside \(0, 1\)"):
        make(ratios=[0.2, math.nan])


def test_empty_ratios_rejected():
    with pytest.raises(ValueError, match="at least one ratio"):
        make(ratios=[])


@pytest.mark.parametrize("attr", ["models", "datasets", "methods"])
def test_empty_grid_axes_rejected(attr):
    with pytest.raises(ValueError, match=f"at least one entry in {attr}"):
        make(**{attr: []})


def test_duplicate_ratios_rejected():
    with pytest.raises(ValueError, match="duplicate ratios"):
        make(ratios=[0.5, 0.2, 0.5])


def test_ratios_get_sorted_and_become_floats():
    s = make(ratios=[0.8, 0.2, 0.5])
    assert s.ratios == (0.2, 0.5, 0.8)
    assert isinstance(s.ratios, tuple)


def test_string_entries_become_one_element_tuples():
    s = make(models="tiny", shifts="contrast@3")
    assert s.models == ("tiny",)
    assert s.shifts == ("contrast@3",)


def test_default_gate_ratio_is_largest_not_above_half():
    assert make(ratios=[0.2, 0.4, 0.5, 0.6]).gate_ratio_for("wt") == 0.5
    assert make(ratios=[0.2, 0.45, 0.55, 0.9]).gate_ratio_for("wt") == 0.45


def test_default_gate_ratio_when_all_ratios_exceed_half():
    assert make(ratios=[0.7, 0.6, 0.9]).gate_ratio_for("wt") == 0.6


def test_explicit_gate_ratio_and_per_method_mapping():
    s = make(methods=["wt", "ft"], ratios=[0.2, 0.4, 0.6], gate_ratio={"ft": 0.2})
    assert s.gate_ratio_for("ft") == 0.2
    assert s.gate_ratio_for("wt") == 0.4  # not in the mapping: default
    assert make(ratios=[0.2, 0.4, 0.6], gate_ratio=0.6).gate_ratio_for("wt") == 0.6
    # matched with a tolerance, returning the grid's own value
    assert make(ratios=[0.2, 0.4, 0.6], gate_ratio=0.1 + 0.2 + 0.3).gate_ratio_for("wt") == 0.6


def test_gate_ratio_not_in_ratios_names_the_ratios():
    with pytest.raises(ValueError) as info:
        make(ratios=[0.2, 0.4, 0.6], gate_ratio=0.5)
    msg = str(info.value)
    assert "gate_ratio 0.5" in msg
    assert "'wt'" in msg
    assert "0.2, 0.4, 0.6" in msg


def test_gate_ratio_mapping_for_a_method_checked_at_construction():
    with pytest.raises(ValueError, match="method 'ft'"):
        make(methods=["wt", "ft"], ratios=[0.2, 0.4], gate_ratio={"ft": 0.3})


@pytest.mark.parametrize("delta", [-0.001, 1.0, 5])
def test_delta_out_of_range_rejected(delta):
    with pytest.raises(ValueError, match="delta"):
        make(delta=delta)


def test_negative_retrain_epochs_rejected():
    with pytest.raises(ValueError, match="retrain_epochs"):
        make(retrain_epochs=-1)
    assert make(retrain_epochs=0).retrain_epochs == 0


# --------------------------------------------------------------------------- repeats, bootstrap, confidence


@pytest.mark.parametrize(("fields", "message"), [
    ({"repeats": 0}, "Suite.repeats must be a whole number >= 1, got 0"),
    ({"repeats": 2.5}, "Suite.repeats must be a whole number >= 1, got 2.5"),
    ({"noise_draws": 0}, "Suite.noise_draws must be a whole number >= 1, got 0"),
    ({"bootstrap": -1}, "Suite.bootstrap must be a whole number >= 0, got -1"),
    ({"bootstrap": 20}, "Suite.bootstrap=20 resamples cannot place a 95 % interval's ends; use 0"),
    ({"confidence": 95}, r"Suite.confidence is the level of the intervals, a number in \(0, 1\) \(0.95 = 95 %\), "
                         r"got 95"),
    ({"confidence": "0.95"}, "got '0.95'"),
    ({"repeats": 3, "search": "bisect"}, "search='bisect' probes different ratios on each repeat"),
    ({"bootstrap": 0, "gate": DeployGate(confidence=0.95)}, r"with repeats=1 and bootstrap=0 there is nothing to "
                                                             r"bound: set repeats >= 2"),
])
def test_bad_uncertainty_settings_say_what_to_set(fields, message):
    with pytest.raises(ValueError, match=message):
        Suite(models=["m"], datasets=["d"], methods=["wt"], **fields)


def test_uncertainty_settings_that_are_fine():
    suite = Suite(models=["m"], datasets=["d"], methods=["wt"], repeats=3, bootstrap=0, confidence=0.9,
                  noise_draws=5, gate=DeployGate(confidence=0.95))
    assert (suite.repeats, suite.bootstrap, suite.confidence, suite.noise_draws) == (3, 0, 0.9, 5)
    with pytest.raises(ValueError, match=r"DeployGate confidence is a level in \(0, 1\)"):
        DeployGate(confidence=95)
    with pytest.raises(ValueError, match="DeployGate confidence is a level"):
        DeployGate(confidence="high")


# --------------------------------------------------------------------------- every field's type, named


@pytest.mark.parametrize(("fields", "message"), [
    ({"retrain_epochs": 1.5}, "Suite.retrain_epochs must be a whole number of epochs"),
    ({"seed": "abc"}, "Suite.seed must be a whole number, got 'abc'"),
    ({"seed": True}, "Suite.seed must be a whole number, got True"),
    ({"ratios": "0.5"}, r"Suite.ratios must be a list of numbers, e.g. \[0.3, 0.5, 0.7\], got '0.5'"),
    ({"ratios": [0.5, "0.7"]}, "Suite.ratios must be a list of numbers"),
    ({"delta": "1%"}, "Suite.delta must be a number"),
    ({"models": [3]}, r"Suite.models must be a name or a list of names \(strings\), got \[3\]"),
    ({"shifts": ["contrast@3", 5]}, "Suite.shifts must be a name or a list of names"),
    ({"gate_ratio": "0.5"}, r"Suite.gate_ratio must be a number or a \{method: ratio\} mapping"),
    ({"recipe": ["epochs", 5]}, "Suite.recipe must be a mapping of recipe fields"),
    ({"dataset_params": {"cifar10": "data"}}, "Suite.dataset_params must map names to mappings"),
    ({"parent_checkpoints": {"m": 3}}, "Suite.parent_checkpoints must map model names to file paths"),
    ({"search": None}, "Suite.search must be 'grid' or 'bisect'"),
])
def test_a_wrongly_typed_field_is_named(fields, message):
    with pytest.raises(TypeError, match=message):
        Suite(**{"models": ["m"], "datasets": ["d"], "methods": ["wt"], **fields})


def test_a_gate_ratio_for_a_method_the_suite_does_not_run_is_refused():
    with pytest.raises(ValueError, match=r"Suite.gate_ratio names 'wtt', not a method or pruned checkpoint of the "
                                         r"suite \(wt, ft\); a typo would fall back to the default ratio"):
        Suite(models=["m"], datasets=["d"], methods=["wt", "ft"], ratios=[0.3, 0.5], gate_ratio={"wtt": 0.5})
    suite = Suite(models=["m"], datasets=["d"], methods=["wt", "ft"], ratios=[0.3, 0.5], gate_ratio={"wt": 0.5})
    assert suite.gate_ratio_for("wt") == 0.5 and suite.gate_ratio_for("ft") == 0.5  # the default: largest <= 0.5


def test_numpy_numbers_are_numbers():
    import numpy as np

    suite = Suite(models=["m"], datasets=["d"], methods=["wt"], ratios=np.array([0.3, 0.5]), seed=np.int64(3),
                  delta=np.float64(0.01), retrain_epochs=np.int32(2))
    assert suite.ratios == (0.3, 0.5) and suite.seed == 3
