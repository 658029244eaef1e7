"""The worked third-party method of docs/methods.md (torch.nn.utils.prune) runs as documented.

The plugin code is taken from the page itself, so the docs cannot drift from
what is tested: it is written to a local plugin module and run in a tiny suite
through pytest in a subprocess, as a user would run it.
"""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path

import pytest
import torch
from suite_runner import run, write_suite

from robustprune import PruneContext, Suite
from robustprune.plugin.masks import full_masks, validate_masks

DOC = Path(__file__).resolve().parents[1] / "docs" / "methods.md"
PLUGINS = Path(__file__).resolve().parents[1] / "plugins"


def code_block(containing: str) -> str:
    """The one ```python block of docs/methods.md that contains ``containing``."""
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)
    found = [b for b in blocks if containing in b]
    assert len(found) == 1, f"expected one python block with {containing!r} in {DOC}, found {len(found)}"
    return found[0]


def load_example(folder: Path):
    path = folder / "torch_l1.py"
    path.write_text(code_block("class TorchL1(PruneMethod)"))
    spec = importlib.util.spec_from_file_location("torch_l1_doc_example", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def small_cnn():
    try:
        from robustprune_plugins.models.small_cnn import SmallCNN
    except ImportError:  # not installed: load from the file
        spec = importlib.util.spec_from_file_location("_small_cnn", PLUGINS / "models" / "small_cnn.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        SmallCNN = module.SmallCNN
    torch.manual_seed(0)
    return SmallCNN(10)


def test_the_example_method_is_global_magnitude_pruning(tmp_path):
    """torch's global l1_unstructured and WT use the same criterion: on the same network they agree."""
    torch.set_num_threads(1)
    example = load_example(tmp_path)
    registered = []
    example.robustprune_register_methods(registered.append)
    (method,) = registered
    assert (method.name, method.structured, method.data_informed) == ("torch_l1", False, False)
    net = small_cnn()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    context = PruneContext(masks=full_masks(net), generator=torch.Generator(), example_input=torch.zeros(2, 3, 32, 32),
                           network=net)
    masks = method.prune(net, 0.6, context)
    _, achieved = validate_masks(masks, full_masks(net), 0.6, "torch_l1")
    assert abs(achieved - 0.6) <= 0.003
    weights = {n: p.detach().abs() for n, p in net.named_parameters() if n in masks}
    kept = torch.cat([weights[n][masks[n]] for n in masks])
    removed = torch.cat([weights[n][~masks[n]] for n in masks])
    assert kept.min() >= removed.max()
    # the host's network is untouched (torch's pruning reparametrizes the modules of its copy)
    assert set(net.state_dict()) == set(before)
    assert all(torch.equal(v, before[k]) for k, v in net.state_dict().items())


def test_the_documented_suite_is_a_valid_suite():
    namespace: dict = {}
    exec(compile(code_block('methods=["wt", "torch_l1"'), "docs/methods.md", "exec"), namespace)  # noqa: S102
    suite = namespace["suite"]
    assert isinstance(suite, Suite) and "torch_l1" in suite.methods and "torch_l1" in suite.plugins


@pytest.mark.slow
def test_the_example_runs_in_a_suite_beside_a_structured_method(tmp_path):
    load_example(tmp_path)  # writes torch_l1.py next to the suite
    write_suite(tmp_path, methods=("torch_l1", "ft"), plugins=("torch_l1",))
    result = run(["-m", "pytest", "suite_tiny.py", "--rp-width=0", f"--rp-store={tmp_path / 'store'}",
                  "--rp-report=report"], cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    out = result.stdout
    assert re.search(r"^torch_l1\s+\d", out, re.M), out[-2000:]
    # the structured method's row shows a measured speed-up; the unstructured one's cannot
    speedup = r"\d+\.\d\dx (\(\d+\.\d\d-\d+\.\d\d\)|within noise)"
    assert re.search(rf"^ft\s.*\d\.\d\dx\s+{speedup}\s+{speedup}\s+pass", out, re.M), out[-2000:]
    assert re.search(r"^torch_l1\s.*\d\.\d\dx\s+-\s+-\s+pass", out, re.M), out[-2000:]
    report = json.loads((tmp_path / "report" / "robustprune-report.json").read_text())
    cases = {c["method"]["name"]: c for c in report["suites"][0]["cases"]}
    l1, ft = cases["torch_l1"], cases["ft"]
    assert l1["method"]["version"] == "0.1.0" and not l1["method"]["structured"]
    assert all(abs(a - r) <= 0.005 * r for a, r in zip(l1["achieved_ratios"], l1["ratios"]))
    # per ratio costs, parent first: fewer parameters and MACs at every step
    for case in (l1, ft):
        params = [c["params"] for c in case["costs"]]
        macs = [c["macs"] for c in case["costs"]]
        assert len(params) == 3 and params == sorted(params, reverse=True) and macs == sorted(macs, reverse=True)
    assert "latency" not in l1["costs"][1]
    assert all(c["latency"] > 0 and c["speedup"] > 0 for c in ft["costs"])
    assert ft["costs"][0]["speedup"] == 1.0
    # batch 1 and the throughput batch, each with its interquartile range, timed interleaved with the parent
    assert [t["batch"] for t in ft["costs"][1]["timing"]] == [1, 64]
    assert all(t["speedup_low"] <= t["speedup"] <= t["speedup_high"] for t in ft["costs"][1]["timing"])
    # a warm run measures nothing again and prints the same table
    warm = run(["-m", "pytest", "suite_tiny.py", "--rp-width=0", f"--rp-store={tmp_path / 'store'}"], cwd=tmp_path)
    assert "costing" not in warm.stdout
    table = lambda text: text[text.index("robustprune report"):].splitlines()[1:9]  # noqa: E731
    assert table(warm.stdout) == table(out)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))
