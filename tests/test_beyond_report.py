"""Beyond-accuracy measures in case views, report series, compact tables, figures and `robustprune report`."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from robustprune import Features, Similarity, Suite
from robustprune.core.cases import Case
from robustprune.core.results import CaseKey, CaseResult, FeaturesResult, SimilarityResult
from robustprune.core.shifts import NOMINAL, Shift, ShiftEntry
from robustprune.report.series import (
    case_series,
    delta_excess_error_slope,
    delta_excess_errors,
    fit_through_origin,
    noise_series,
    per_shift_series,
)
from robustprune.report.tables import beyond_sections, render_text

# --------------------------------------------------------------------------- series, by hand
#
# ratios 0.25 0.5, delta 0.01
#                      parent | 0.25  0.5     P
# nominal               0.90  | 0.90  0.85 -> 0.25
# uniform_noise@0.1     0.80  | 0.80  0.79 -> 0.5
# uniform_noise@0.3     0.60  | 0.50  0.40 -> 0
# contrast@3            0.70  | 0.70  0.70 -> 0.5
#
# delta e(r, D) = (err_r(D) - err_r(nom)) - (err_p(D) - err_p(nom))
#   noise@0.1: r=.25: (0.20-0.10)-(0.20-0.10) = 0;     r=.5: (0.21-0.15)-(0.10) = -0.04
#   noise@0.3: r=.25: (0.50-0.10)-(0.30) = 0.10;      r=.5: (0.60-0.15)-(0.30) = 0.15
#   contrast:  r=.25: (0.30-0.10)-(0.20) = 0;         r=.5: (0.30-0.15)-(0.20) = -0.05
# slope through the origin: sum(x y) / sum(x^2) = (0.25*0.10 + 0.5*(-0.04 + 0.15 - 0.05)) / (3 * (0.0625 + 0.25))

CASE = {
    "ratios": [0.25, 0.5],
    "accuracy": {
        NOMINAL: [0.90, 0.90, 0.85],
        "uniform_noise@0.1": [0.80, 0.80, 0.79],
        "uniform_noise@0.3": [0.60, 0.50, 0.40],
        "contrast@3": [0.70, 0.70, 0.70],
    },
}
KINDS = {NOMINAL: "nominal", "uniform_noise@0.1": "tensor", "uniform_noise@0.3": "tensor", "contrast@3": "pixel"}


def test_prune_potential_against_noise_starts_at_nominal():
    assert noise_series(CASE, 0.01, KINDS) == {"uniform_noise": {"eps": [0.0, 0.1, 0.3],
                                                                  "prune_potential": [0.25, 0.5, 0.0]}}


def test_prune_potential_per_shift_leaves_noise_out():
    assert per_shift_series(CASE, 0.01, KINDS) == {"contrast@3": 0.5}


def test_delta_excess_error_and_its_line_through_the_origin():
    dee = delta_excess_errors(CASE)
    assert dee["uniform_noise@0.1"] == pytest.approx([0.0, -0.04])
    assert dee["uniform_noise@0.3"] == pytest.approx([0.10, 0.15])
    assert dee["contrast@3"] == pytest.approx([0.0, -0.05])
    expected = (0.25 * 0.10 + 0.5 * (-0.04 + 0.15 - 0.05)) / (3 * (0.0625 + 0.25))
    assert delta_excess_error_slope(CASE) == pytest.approx(expected)
    assert set(case_series(CASE, 0.01, KINDS)) == {"prune_potential", "noise", "per_shift", "delta_excess_error",
                                                   "delta_excess_error_slope"}


def test_fit_through_origin():
    assert fit_through_origin([1, 2], [2, 4]) == pytest.approx(2.0)
    assert fit_through_origin([1, 2], [1, 3]) == pytest.approx(7 / 5)
    assert fit_through_origin([], []) is None


# --------------------------------------------------------------------------- case views

SIMILARITY = {
    "eps": [0.0, 0.2, 0.4], "images": 200, "draws": 10,
    "pruned": [{"ratio": 0.5, "agreement": [0.99, 0.874, 0.7], "distance": [0.01, 0.12, 0.3]}],
    "baseline": {"seed": 1, "key": "b", "agreement": [0.95, 0.8, 0.6], "distance": [0.05, 0.2, 0.4]},
}
FEATURES = {"ratio": 0.5, "images": 32, "patch": 4, "patches": 64, "threshold": 0.9, "parent_size": 0.2,
            "pruned_size": 0.25, "overlap": 0.41, "pruned_on_parent": 0.63, "pruned_on_parent_agreement": 0.7,
            "parent_on_pruned": 0.72, "parent_on_pruned_agreement": 0.8, "parent_on_own": 0.9, "pruned_on_own": 0.9,
            "same_prediction": 1.0}


def _case(similarity=SIMILARITY, features=FEATURES) -> Case:
    suite = Suite(models=["tiny"], datasets=["toy"], methods=["wt"], ratios=(0.25, 0.5), gate_ratio=0.5)
    result = CaseResult.from_curves(
                        CaseKey("wt", "tiny", "toy"), {"name": "wt", "structured": False}, (0.25, 0.5), (0.25, 0.5),
                        {k: list(v) for k, v in CASE["accuracy"].items() if k in (NOMINAL, "contrast@3")},
                        parent_key="p", step_keys=("a", "b"),
                        similarity=SimilarityResult.from_dict(similarity) if similarity else None,
                        features=FeaturesResult.from_dict(features) if features else None)
    entries = [ShiftEntry("contrast@3", (Shift("contrast", 3),))]
    return Case(lambda: result, suite, entries, CaseKey("wt", "tiny", "toy"))


def test_agreement_and_distance_read_the_gate_ratio():
    case = _case()
    assert case.agreement(0.2) == 0.874 and case.agreement(eps=0.0) == 0.99
    assert case.softmax_distance(0.4) == 0.3
    assert case.agreement(0.2, ratio=0.5) == 0.874
    assert case.baseline_agreement(0.2) == 0.8 and case.baseline_softmax_distance(0.2) == 0.2


def test_agreement_fails_with_a_readable_sentence():
    assert _case().agreement(0.2).explain(">=", 0.9) == (
        "top-1 agreement with the parent 0.874 under uniform noise eps 0.2 at ratio 0.5 < required 0.900 "
        "(200 images x 10 draws)")
    assert _case().softmax_distance(0.4).explain("<=", 0.25) == (
        "softmax distance to the parent 0.300 under uniform noise eps 0.4 at ratio 0.5 > limit 0.250 "
        "(200 images x 10 draws)")


def test_similarity_errors_say_what_to_set():
    with pytest.raises(KeyError, match="eps 0.3 is not one of the suite's similarity noise levels 0, 0.2, 0.4"):
        _case().agreement(0.3)
    with pytest.raises(KeyError, match="Similarity\\(ratios='all'\\)"):
        _case().agreement(0.2, ratio=0.25)
    with pytest.raises(LookupError, match="set Suite\\(similarity=Similarity"):
        _case(similarity={}).agreement(0.2)
    with pytest.raises(LookupError, match="Similarity\\(baseline=True\\)"):
        _case(similarity={**SIMILARITY, "baseline": None}).baseline_agreement(0.2)


def test_feature_measures():
    case = _case()
    assert case.feature_overlap() == 0.41
    assert case.cross_confidence() == 0.63 and case.cross_confidence("parent") == 0.72
    assert case.feature_overlap().explain(">=", 0.5) == (
        "informative-feature overlap (IoU) with the parent 0.410 at ratio 0.5 < required 0.500 (32 images)")
    with pytest.raises(LookupError, match="Features"):
        _case(features={}).feature_overlap()
    with pytest.raises(ValueError, match="'pruned' or 'parent'"):
        case.cross_confidence("other")


def test_train_and_test_distribution_need_a_mix():
    with pytest.raises(LookupError, match="train_shifts"):
        _ = _case().train_distribution


def test_settings_are_validated():
    with pytest.raises(ValueError, match="'gate' or 'all'"):
        Similarity(ratios="some")
    with pytest.raises(ValueError, match="duplicate"):
        Similarity(eps=(0.1, 0.1))
    with pytest.raises(ValueError, match="threshold"):
        Features(threshold=1.5)
    with pytest.raises(ValueError, match="robustprune.Similarity"):
        Suite(models=["a"], datasets=["b"], methods=["wt"], similarity={"eps": [0.1]})
    assert Similarity.paper().eps[4] == 0.2 and len(Similarity.paper().eps) == 15


# --------------------------------------------------------------------------- report rendering and figures


def _report() -> dict:
    rows, cases = [], []
    for method, shift in (("wt", 0.0), ("ft", -0.1), ("my_method", -0.05)):
        accuracy = {k: [v[0]] + [a + shift for a in v[1:]] for k, v in CASE["accuracy"].items()}
        cases.append({"id": f"{method}-tiny-toy", "method": {"name": method}, "model": "tiny", "dataset": "toy",
                      "ratios": CASE["ratios"], "accuracy": accuracy, "gate_ratio": 0.5,
                      "similarity": SIMILARITY, "features": FEATURES})
        rows.append({"method": method, "case": f"{method}-tiny-toy", "parent_accuracy": 0.9,
                     "nominal_prune_potential": 0.25, "groups": {}, "gate_ratio": 0.5, "gate_achieved_ratio": 0.5,
                     "max_delta_excess_error": 0.1, "max_delta_excess_error_shift": "contrast@3", "gate_costs": None,
                     "verdict": "pass", "features": FEATURES,
                     "similarity": {"eps": SIMILARITY["eps"], "agreement": SIMILARITY["pruned"][0]["agreement"],
                                    "distance": SIMILARITY["pruned"][0]["distance"],
                                    "baseline": SIMILARITY["baseline"]}})
    return {"version": 1, "suite": "suite_toy.py", "delta": 0.01, "ratios": CASE["ratios"],
            "methods": ["wt", "ft", "my_method"], "shifts": [], "tables": [{"model": "tiny", "dataset": "toy",
                                                                             "rows": rows}],
            "cases": cases, "shift_kinds": KINDS, "shift_members": {},
            "similarity": {"eps": SIMILARITY["eps"], "images": 200, "draws": 10}}


def test_compact_tables_show_similarity_and_features():
    report = _report()
    similarity, features = beyond_sections(report, report["tables"][0])
    assert "200 images x 10 draws" in similarity
    assert "87.4 / 0.120" in similarity  # agreement % / distance at eps 0.2
    assert "other parent (seed 1)" in similarity and "80.0 / 0.200" in similarity
    assert "41.0" in features and "63.0 (70.0)" in features
    text = render_text(report)
    assert similarity in text and features in text


def test_figures_are_written_with_stable_method_colours(tmp_path):
    pytest.importorskip("matplotlib")
    from robustprune.report.figures import method_colour, write_figures

    written = write_figures([_report()], tmp_path)
    names = sorted(p.name for p in written)
    # no shift column: the accuracy figure has the nominal panel only; noise and per-shift come from shift_kinds
    assert names == sorted(f"tiny-toy-{k}.png" for k in ("accuracy", "prune-potential-vs-noise",
                                                          "delta-excess-error", "prune-potential-per-shift",
                                                          "similarity"))
    for path in written:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000
    assert method_colour("wt") != method_colour("ft")
    assert method_colour("my_method") == method_colour("my_method")
    assert method_colour("my_method") not in {method_colour(m) for m in ("wt", "ft", "sipp", "pfp")}


def test_report_command_rerenders_without_torch(tmp_path):
    pytest.importorskip("matplotlib")
    results = tmp_path / "robustprune-report.json"
    results.write_text(json.dumps({"version": 1, "suites": [_report()]}))
    code = ("import sys; from robustprune.cli import main; rc = main(['report', sys.argv[1], '--width', '0']); "
            "print('torch imported:', 'torch' in sys.modules); sys.exit(rc)")
    run = subprocess.run([sys.executable, "-c", code, str(results)], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "torch imported: False" in run.stdout  # nothing is recomputed: no network is even loaded
    assert render_text(_report()) in run.stdout
    assert len(list((tmp_path / "figures").glob("*.png"))) == 5


def test_report_command_explains_a_bad_file(tmp_path, capsys):
    from robustprune.cli import main

    assert main(["report", str(tmp_path / "missing.json")]) == 2
    (tmp_path / "bad.json").write_text("{}")
    assert main(["report", str(tmp_path / "bad.json")]) == 2
    assert "not a robustprune JSON report" in capsys.readouterr().err


def test_typed_measures_round_trip_through_the_report_json():
    assert SimilarityResult.from_dict(SIMILARITY).to_dict() == SIMILARITY
    assert FeaturesResult.from_dict(FEATURES).to_dict() == FEATURES
    without_baseline = {**SIMILARITY, "baseline": None}
    assert SimilarityResult.from_dict(without_baseline).baseline is None
