"""The house rules of docs/architecture.md, checked: imports point one way, no cycles, no private reach-ins,
a torch-free core, report and harness, and old plugin-facing import paths that keep working.

The import graph is read from the source (module-level and function-level imports, not those under
``if TYPE_CHECKING:``), so a lazy import cannot hide a cycle.
"""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "robustprune"

# Which subpackage may import which (besides itself). The top-level modules (cli, the public __init__,
# version, the compatibility re-exports) and the packaged suites stand above everything.
ALLOWED: dict[str, set[str]] = {
    "plugin": set(),
    "core": {"plugin"},
    "compute": {"core", "plugin"},
    "engine": {"compute", "core", "plugin"},
    "report": {"core", "plugin"},
    "harness": {"engine", "report", "core", "plugin"},
}
LEAVES = {"robustprune.version"}  # importable from anywhere: no imports of its own
TORCH_FREE = ("core", "report", "harness")
HEAVY = ("torch", "torchvision", "numpy", "scipy", "sklearn", "imagecorruptions", "matplotlib", "cv2")


@dataclass
class Module:
    name: str
    path: Path
    imports: set[str] = field(default_factory=set)  # modules of this package, by full name
    private_imports: list[str] = field(default_factory=list)
    tree: ast.Module | None = None

    @property
    def subpackage(self) -> str | None:
        parts = self.name.split(".")
        return parts[1] if len(parts) > 2 or (len(parts) == 2 and (self.path.name == "__init__.py")) else None


def _modules() -> dict[str, Module]:
    modules = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = Module(".".join(parts), path)
    return modules


def _type_checking_nodes(tree: ast.Module) -> set[int]:
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped |= {id(n) for n in ast.walk(node)}
    return skipped


def _analyse(modules: dict[str, Module]) -> dict[str, Module]:
    for module in modules.values():
        module.tree = ast.parse(module.path.read_text(), str(module.path))
        skipped = _type_checking_nodes(module.tree)
        is_package = module.path.name == "__init__.py"
        for node in ast.walk(module.tree):
            if id(node) in skipped:
                continue
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
                names: list[str] = []
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = module.name.split(".")
                    base = base if is_package else base[:-1]
                    base = base[: len(base) - (node.level - 1)]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                names = [alias.name for alias in node.names]
                targets = [target, *(f"{target}.{name}" for name in names)]
            else:
                continue
            for target in targets:
                if target in modules and target != module.name and target != "robustprune":
                    module.imports.add(target)
            if isinstance(node, ast.ImportFrom) and targets[0] in modules:
                for name in names:
                    if name.startswith("_") and not name.startswith("__") and f"{targets[0]}.{name}" not in modules:
                        module.private_imports.append(f"{targets[0]}.{name}")
    return modules


@pytest.fixture(scope="module")
def modules() -> dict[str, Module]:
    return _analyse(_modules())


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles(modules):
    graph = {name: {t for t in m.imports if not name.startswith(t + ".")} for name, m in modules.items()}
    assert _cycles(graph) == []


def test_no_imports_of_another_modules_private_names(modules):
    assert [f"{name} imports {p}" for name, m in modules.items() for p in m.private_imports] == []


def test_imports_point_down_the_layers(modules):
    wrong = []
    for name, module in modules.items():
        layer = name.split(".")[1] if name.count(".") >= 1 else None
        if layer not in ALLOWED:
            continue  # top-level modules and suites stand above the layers
        for target in module.imports:
            other = target.split(".")[1] if target.count(".") >= 1 else None
            if target in LEAVES or other == layer:
                continue
            if other not in ALLOWED[layer]:
                wrong.append(f"{name} imports {target}")
    assert wrong == []


def _private_attribute_reach_ins(module: Module) -> list[str]:
    """``x._name`` where ``x`` is not ``self``/``cls`` and ``_name`` is not defined in this module."""
    assert module.tree is not None
    own: set[str] = set()
    for node in ast.walk(module.tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            own.add(node.name)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            own.add(node.attr)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            own.add(node.id)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            own.add(node.target.id)
    found = []
    for node in ast.walk(module.tree):
        if not isinstance(node, ast.Attribute) or not node.attr.startswith("_") or node.attr.startswith("__"):
            continue
        if isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"):
            continue
        if node.attr not in own:
            found.append(f"{module.name}:{node.lineno} {ast.unparse(node)}")
    return found


def test_the_reach_in_finder_finds_one():
    module = Module("robustprune.x", Path("x.py"))
    module.tree = ast.parse("_mine = 1\n\ndef f(engine, other):\n    return engine._state, other._mine, self._own\n")
    assert _private_attribute_reach_ins(module) == ["robustprune.x:4 engine._state"]


def test_no_reach_into_other_objects_private_members(modules):
    assert [hit for m in modules.values() for hit in _private_attribute_reach_ins(m)] == []


PLUGINS = PACKAGE.parent / "plugins"
PUBLIC_FOR_PLUGINS = ("robustprune", "robustprune.plugin.", "robustprune.compute.compaction",
                      "robustprune.compute.costs")


def _non_public_imports(source: str) -> list[str]:
    """Imports of robustprune that are neither a public name of the package nor its plugin toolkit."""
    wrong = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "robustprune":
            public = node.module == "robustprune" or node.module.startswith(PUBLIC_FOR_PLUGINS[1:])
            if not public or any(alias.name.startswith("_") for alias in node.names):
                wrong.append(f"line {node.lineno}: from {node.module} import {', '.join(a.name for a in node.names)}")
        elif isinstance(node, ast.Import):
            wrong += [f"line {node.lineno}: import {a.name}" for a in node.names
                      if a.name.split(".")[0] == "robustprune" and a.name != "robustprune"]
    return wrong


def test_the_public_api_check_finds_engine_imports():
    source = ("from robustprune import Suite\nfrom robustprune.plugin.masks import Masks\n"
              "from robustprune.engine.engine import Engine\nfrom robustprune.plugin.masks import _x\n")
    assert _non_public_imports(source) == ["line 3: from robustprune.engine.engine import Engine",
                                           "line 4: from robustprune.plugin.masks import _x"]


@pytest.mark.parametrize("path", sorted(PLUGINS.rglob("*.py")), ids=lambda p: p.relative_to(PLUGINS).as_posix())
def test_first_party_plugins_use_only_the_public_plugin_api(path):
    """The built-ins prove the public API is enough: they import robustprune's public names and toolkit only."""
    assert _non_public_imports(path.read_text()) == []


@pytest.mark.parametrize("subpackage", TORCH_FREE)
def test_subpackage_imports_without_torch(subpackage):
    """Every module of the subpackage, imported in a fresh interpreter, loads no torch and no numpy."""
    names = sorted(name for name in _modules() if name == f"robustprune.{subpackage}"
                   or name.startswith(f"robustprune.{subpackage}."))
    assert names
    code = ("import importlib, json, sys\n"
            f"for name in {names!r}:\n"
            "    importlib.import_module(name)\n"
            f"print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "[]", f"robustprune.{subpackage} loaded {run.stdout.strip()}"


def test_the_public_package_and_the_cli_import_without_torch_or_pytest():
    """Suites and plugins import robustprune; `robustprune --version` or `report` need no pytest either."""
    code = ("import sys, robustprune, robustprune.cli; "
            "print(sorted(m for m in ('torch', 'numpy', 'pytest') if m in sys.modules))")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "[]"


def test_the_pytest11_entry_point_is_the_torch_free_harness():
    """The module every pytest run of the environment loads is the harness's, checked torch-free above."""
    from importlib.metadata import entry_points

    (entry,) = [ep for ep in entry_points(group="pytest11") if ep.name == "robustprune"]
    assert entry.value == "robustprune.harness.plugin"


def test_prune_context_accepts_the_old_private_spellings():
    import torch

    from robustprune import PruneContext

    network = torch.nn.Linear(2, 2)
    context = PruneContext(masks={}, generator=torch.Generator(), example_input=torch.zeros(1, 2),
                           _network=network, _groups=[])
    assert context.network is network and context.groups == [] and context.channel_groups == []


def test_sparsity_tolerance_of_the_gate_is_the_hosts_ratio_tolerance():
    from robustprune.core.gate import SPARSITY_TOLERANCE
    from robustprune.plugin.masks import RATIO_TOLERANCE

    assert SPARSITY_TOLERANCE == RATIO_TOLERANCE


# Every public name the flat layout's plugin-facing modules had in robustprune 0.1 (read off their source).
OLD_PUBLIC_NAMES: dict[str, list[str]] = {
    "api": ["DataSplits", "DatasetRequest", "DatasetSpec", "ImageSet", "ModelSpec", "PROJECT_NAME", "PixelShift",
            "PruneContext", "PruneMethod", "PublishedShift", "Recipe", "SEVERITY", "ShiftGroup", "ShiftParam",
            "ShiftedSet", "TensorShift", "check_name", "describe_sequence", "hookimpl"],
    "hookspecs": ["PROJECT_NAME", "hookspec", "robustprune_register_datasets", "robustprune_register_methods",
                  "robustprune_register_models", "robustprune_register_shifts"],
    "pruning": ["Masks", "PruneError", "RATIO_TOLERANCE", "apply_masks", "count_nonzero_prunable", "count_parameters",
                "full_masks", "global_top_masks", "prunable_weights", "ratio_of", "validate_masks",
                "within_tolerance"],
    "structure": ["ChannelGroup", "Consumer", "Masks", "PruneError", "RATIO_TOLERANCE", "StructureError",
                  "allocate_counts", "allocate_uniform", "channel_groups", "channel_masks", "explain_channels",
                  "prunable_weights", "within_tolerance"],
    "sensitivity": ["LayerInfo", "PruneError", "PruneMethod", "SampledSensitivityMethod",
                    "input_channel_sensitivities", "layer_info", "prunable_weights", "sample_size",
                    "weight_sensitivities"],
    "datafiles": ["DataFileError", "stratified_subset", "subset_size"],
    "compaction": ["ChannelGroup", "Compacted", "CompactionError", "Masks", "PruneError", "apply_masks",
                   "channel_groups", "compact", "prunable_weights", "removable_channels"],
    "costs": ["NetworkCosts", "count_macs", "count_params", "inference_form", "machine_fingerprint",
              "measure_latency", "network_costs", "prunable_weights"],
}
NEW_HOMES = ("plugin.api", "plugin.hookspecs", "plugin.masks", "plugin.channels", "plugin.allocation",
             "plugin.sensitivity", "plugin.datafiles", "compute.compaction", "compute.costs")


@pytest.mark.parametrize("old", sorted(OLD_PUBLIC_NAMES))
def test_old_plugin_facing_import_paths_keep_working(old):
    """Third-party plugins written against the flat layout import the very same objects, name by name."""
    module = importlib.import_module(f"robustprune.{old}")
    homes = [importlib.import_module(f"robustprune.{home}") for home in NEW_HOMES]
    for name in OLD_PUBLIC_NAMES[old]:
        obj = getattr(module, name)  # AttributeError: the old path lost a name
        assert any(getattr(home, name, None) is obj for home in homes), f"robustprune.{old}.{name}"
    assert sorted(module.__all__) == sorted(OLD_PUBLIC_NAMES[old])
