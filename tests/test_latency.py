"""Latency compared interleaved: per-round ratios to the baseline, their median and interquartile range."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from robustprune.compute.costs import LATENCY_BATCHES, Timing, compare_latency, network_costs
from robustprune.report.tables import _cost_cells


def conv_net(width: int) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
                         nn.Conv2d(width, width, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(width, 10))


def test_a_much_smaller_network_is_measurably_faster_at_every_batch():
    big, small = conv_net(64), conv_net(4)
    inputs = torch.randn(8, 3, 32, 32)  # fewer rows than the throughput batch: repeated to fill it
    timings = compare_latency([big, small], inputs, rounds=6, block_seconds=0.002, sessions=2)
    assert [[t.batch for t in per] for per in timings] == [list(LATENCY_BATCHES)] * 2
    for base, fast in zip(*timings):
        # the baseline's own ratios are exactly 1; the narrow network does ~250x fewer MACs
        assert (base.speedup, base.speedup_low, base.speedup_high) == (1.0, 1.0, 1.0) and base.within_noise
        assert fast.speedup_low > 2 and not fast.within_noise
        assert fast.speedup_low <= fast.speedup <= fast.speedup_high
        assert fast.seconds < base.seconds
        # one layout for every network compared, and what it ran with is stated
        assert fast.layout == base.layout in ("channels_last", "contiguous")
        assert fast.threads == torch.get_num_threads() and fast.rounds == 6
    assert big.training  # left as it was


def test_compare_latency_rejects_what_cannot_give_quartiles():
    with pytest.raises(ValueError, match="need rounds >= 3"):
        compare_latency([conv_net(4)], torch.randn(2, 3, 8, 8), rounds=2)
    with pytest.raises(ValueError, match=r"and >= sessions >= 1, got 4 and 5"):
        compare_latency([conv_net(4)], torch.randn(2, 3, 8, 8), rounds=4, sessions=5)
    with pytest.raises(ValueError, match="at least one network"):
        compare_latency([], torch.randn(2, 3, 8, 8))


def timing(batch: int, speedup: float, low: float, high: float) -> dict:
    t = Timing(batch=batch, seconds=0.01, speedup=speedup, speedup_low=low, speedup_high=high, layout="contiguous",
               threads=1, rounds=21).to_dict()
    return {"batch": t["batch"], "speedup": t["speedup"], "low": t["speedup_low"], "high": t["speedup_high"],
            "within_noise": t["within_noise"]}


def test_the_report_shows_each_batch_with_its_range_or_within_noise():
    costs = {"params": 12_345, "parent_params": 24_690, "mac_reduction": 1.9,
             "speedups": [timing(1, 1.02, 0.97, 1.06), timing(64, 1.52, 1.47, 1.58)]}
    assert _cost_cells(costs) == ["12.3 / 24.7", "1.90x", "1.02x within noise", "1.52x (1.47-1.58)"]
    # a range that ends exactly at 1 includes it
    assert timing(64, 1.1, 1.0, 1.2)["within_noise"] and not timing(64, 0.8, 0.7, 0.99)["within_noise"]
    # unstructured methods are not timed
    assert _cost_cells({**costs, "speedups": []})[2:] == ["-", "-"]


def test_a_report_from_before_interleaved_timing_still_shows_its_speed_up():
    old = {"params": 12_345, "parent_params": 24_690, "mac_reduction": 1.9, "speedup": 1.5}
    assert _cost_cells(old) == ["12.3 / 24.7", "1.90x", "-", "1.50x"]


def test_an_untimed_structured_network_says_so_instead_of_a_dash():
    costs = {"params": 12_345, "parent_params": 24_690, "mac_reduction": 1.9, "speedups": [], "timed": False}
    assert _cost_cells(costs)[2:] == ["not timed", "not timed"]


def test_suite_latency_must_be_a_bool():
    from robustprune import Suite

    with pytest.raises(TypeError, match=r"Suite.latency must be True .* or False, got 'no'"):
        Suite(models=["m"], datasets=["d"], methods=["wt"], latency="no")  # type: ignore[arg-type]


def test_no_latency_compacts_and_counts_structured_networks_without_timing_them(run_suite, tmp_path, monkeypatch):
    import json

    import jsonschema

    import robustprune.engine.costing as costing
    from robustprune.report.tidy import report_schema

    def refuse(*args, **kwargs):
        raise AssertionError("latency was timed despite --rp-no-latency")

    monkeypatch.setattr(costing, "compare_latency", refuse)
    checks = "def test_nominal(case):\n    assert case.prune_potential() >= 0.0\n"
    result = run_suite(checks, "--rp-no-latency", f"--rp-report={tmp_path}", "--rp-width=0", methods=("ft",))
    result.assert_outcomes(passed=1)
    assert "not timed" in result.stdout.str()
    assert "; not timed: Suite(latency=False) or --no-latency" in result.stdout.str()  # the legend says why
    whole = json.loads((tmp_path / "robustprune-report.json").read_text())
    jsonschema.validate(whole, report_schema())
    (report,) = whole["suites"]
    (case,) = report["cases"]
    # compacted: the pruned networks' parameter counts are those of physically smaller networks
    assert [c.get("timed") for c in case["costs"]] == [False] * 3
    assert case["costs"][2]["params"] < case["costs"][1]["params"] < case["costs"][0]["params"]
    assert report["tables"][0]["rows"][0]["gate_costs"]["timed"] is False
    assert "not timed" in (tmp_path / "robustprune-report.md").read_text()


def test_a_cold_structured_curve_compacts_each_network_once_for_counting_and_timing(run_suite, monkeypatch):
    import robustprune.engine.costing as costing

    compactions: list[bool] = []
    timed_networks: list[int] = []

    def counting(network, masks, example, *, structured):
        compactions.append(structured)
        return network_costs(network, masks, example, structured=structured)

    def fake_timing(networks, inputs):  # timing itself is tested above; here only what it is given
        timed_networks.append(len(networks))
        return [[Timing(batch=b, seconds=0.01, speedup=1.0, speedup_low=1.0, speedup_high=1.0, layout="contiguous",
                        threads=1, rounds=25) for b in LATENCY_BATCHES] for _ in networks]

    monkeypatch.setattr(costing, "network_costs", counting)
    monkeypatch.setattr(costing, "compare_latency", fake_timing)
    checks = "def test_nominal(case):\n    assert case.prune_potential() >= 0.0\n"
    run_suite(checks, methods=("ft",)).assert_outcomes(passed=1)
    # the parent as it is, the two pruned networks compacted: each once, and all three timed together
    assert compactions == [False, True, True] and timed_networks == [3]
