"""``robustprune new plugin NAME`` and ``robustprune new suite NAME``: a package or a suite to start from.

The plugin package is ready to install and test as written: a pyproject
with the entry point, a method and a shift through the public plugin API,
contract tests through :mod:`robustprune.testing`, and a README saying how to
depend on robustprune (which is not on the package index).
"""

from __future__ import annotations

import keyword
import re
from pathlib import Path

__all__ = ["new_plugin", "new_suite"]

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")

_PYPROJECT = '''\
[build-system]
requires = ["setuptools>=64"]
build-backend = "setuptools.build_meta"

[project]
name = "{dist}"
version = "0.1.0"
description = "robustprune plugin: {name}"
requires-python = ">=3.10"
# robustprune is not on the package index: {dependency_note}
dependencies = [{dependency}]

[project.optional-dependencies]
test = ["pytest>=7"]

# the entry point robustprune finds the plugin by; its name is what `--disable` takes
[project.entry-points.robustprune]
{name} = "{name}"

[tool.setuptools.packages.find]
where = ["src"]

[tool.pytest.ini_options]
testpaths = ["tests"]
'''

_CONFTEST = '''\
# the fixtures tiny_data and tiny_parent of robustprune.testing
pytest_plugins = ["robustprune.testing"]
'''

_PLUGIN = '''\
"""{name}: a robustprune plugin with one prune method and one shift (rename and fill in)."""

from __future__ import annotations

import numpy as np

from robustprune import PixelShift, PruneMethod, ShiftParam, hookimpl
from robustprune.plugin.masks import global_top_masks, prunable_weights


class {cls}Magnitude(PruneMethod):
    """Unstructured magnitude pruning under one global threshold: replace the scores with your own."""

    name = "{name}_magnitude"
    description = "remove the smallest |w| (a starting point)"

    def prune(self, network, ratio, context):
        scores = {{n: w.detach().abs() for n, w in prunable_weights(network).items()}}
        # context.masks: what earlier steps removed; global_top_masks keeps it removed
        return global_top_masks(scores, ratio, context.masks)


def darken(image: np.ndarray, strength: float, seed: int) -> np.ndarray:
    """Scale the image towards black (0 = unchanged, 1 = black); deterministic given ``seed``."""
    return (image.astype(np.float32) * (1.0 - strength)).astype(np.uint8)


DARKEN = PixelShift("{name}_darken", darken, ShiftParam("strength", float, 0.0, 1.0), "scale towards black")


@hookimpl
def robustprune_register_methods(register):
    register({cls}Magnitude())


@hookimpl
def robustprune_register_shifts(register):
    register(DARKEN)
'''

_TESTS = '''\
"""The host's contract, checked without a suite (robustprune.testing); run with `pytest`."""

from robustprune.testing import check_method, check_shift

from {name} import DARKEN, {cls}Magnitude


def test_the_method_keeps_the_host_contract():
    check_method({cls}Magnitude(), models=("small_cnn",))


def test_the_shift_keeps_images_and_is_deterministic():
    check_shift(DARKEN, 0.5)


def test_the_method_prunes_a_trained_parent(tiny_parent):
    from robustprune import PruneContext
    import torch

    context = PruneContext.for_network(tiny_parent, torch.zeros(2, 3, 32, 32))
    masks = {cls}Magnitude().prune(tiny_parent, 0.5, context)
    assert set(masks) == set(context.masks)
'''

_README = '''\
# {dist}

A robustprune plugin: the method `{name}_magnitude` and the shift `{name}_darken@STRENGTH`.

robustprune is not on the package index. Install it first (from its repository or your mirror of it), then
this package:

```bash
pip install -e ".[test]"       # registers the entry point `{name}`
robustprune plugins            # lists {name} with what it registers
pytest                         # the contract tests in tests/ (conftest.py adds robustprune.testing's fixtures)
```

Use it in a suite: `Suite(methods=["wt", "{name}_magnitude"], shifts=["{name}_darken@0.5"], ...)`; leave it out
of a run with `--disable {name}`. Editing the package's source recomputes its results on the next run, version
bumped or not (robustprune hashes a plugin's source files into its store keys).
'''

_SUITE = '''\
"""{name}: is a pruned network still deployable under shifts? (robustprune new suite; edit freely)

Run it with `robustprune run {file}` (or `pytest {file}`).
"""

from robustprune import DeployGate, Suite

suite = Suite(
    models=["small_cnn"],
    datasets=["digits"],
    methods=["wt", "ft"],
    shifts=["corruptions@3", "uniform_noise@0.1"],
    ratios=[0.3, 0.5, 0.7],
    repeats=3,
    gate_ratio={{"wt": 0.5, "ft": 0.3}},
    gate=DeployGate(shifts=["nominal", "uniform_noise@0.1"], mode="mean", max_accuracy_loss=0.03),
)


def test_prune_potential(case):
    """Nominal prune potential: the largest ratio within delta of the parent's accuracy."""
    assert case.prune_potential() >= case.gate_ratio
'''


def robustprune_requirement() -> str | None:
    """How this environment got robustprune, as a requirement that resolves again (PEP 610's direct_url.json:
    ``robustprune @ git+URL@COMMIT`` or ``robustprune @ file:///path``); ``None`` when pip did not record it."""
    import importlib.metadata
    import json

    try:
        text = importlib.metadata.distribution("robustprune").read_text("direct_url.json")
    except importlib.metadata.PackageNotFoundError:
        return None
    if not text:
        return None
    info = json.loads(text)
    url, vcs = info.get("url"), info.get("vcs_info")
    if not url:
        return None
    if vcs and vcs.get("vcs") == "git":
        return f"robustprune @ git+{url}@{vcs.get('commit_id') or vcs.get('requested_revision')}"
    return f"robustprune @ {url}"


def _check_name(name: str, *, plugin: bool = False) -> None:
    if not _NAME.match(name) or keyword.iskeyword(name):
        raise ValueError(f"{name!r} is not a usable name: lower-case letters, digits and _, starting with a letter "
                         "(it becomes a Python module and the plugin's entry-point name)")
    if plugin:
        import importlib.metadata
        import importlib.util

        if name in {ep.name for ep in importlib.metadata.entry_points(group="robustprune")}:
            raise ValueError(f"{name!r} is the name of an installed robustprune plugin: choose another (a prefix "
                             "such as mylab_ keeps names apart)")
        if importlib.util.find_spec(name) is not None:
            raise ValueError(f"{name!r} is the name of an importable module: the package would shadow it; "
                             "choose another")


def new_plugin(name: str, folder: Path) -> Path:
    """Write the plugin package ``robustprune-NAME`` into ``folder/robustprune-NAME``; returns that folder."""
    _check_name(name, plugin=True)
    dist = f"robustprune-{name.replace('_', '-')}"
    root = folder / dist
    if root.exists():
        raise FileExistsError(f"{root} exists already: choose another name or folder")
    cls = "".join(part.capitalize() for part in name.split("_"))
    requirement = robustprune_requirement()
    if requirement is not None:
        dependency, note = f'"{requirement}"', "this is where this environment installed it from (pip records it)"
    else:
        dependency, note = "", ("install it first (see README.md), or name it here with a direct reference, e.g. "
                                '"robustprune @ git+https://<your mirror>/robustprune@<tag>"')
    files = {
        "pyproject.toml": _PYPROJECT.format(dist=dist, name=name, dependency=dependency, dependency_note=note),
        f"src/{name}/__init__.py": _PLUGIN.format(name=name, cls=cls),
        "conftest.py": _CONFTEST,
        "tests/test_contract.py": _TESTS.format(name=name, cls=cls),
        "README.md": _README.format(dist=dist, name=name),
    }
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def new_suite(name: str, folder: Path) -> Path:
    """Write the suite ``folder/NAME.py``; returns its path."""
    _check_name(name)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.py"
    if path.exists():
        raise FileExistsError(f"{path} exists already: choose another name")
    path.write_text(_SUITE.format(name=name, file=path.name))
    return path
