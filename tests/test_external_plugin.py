"""The plugin API through a real entry point: a separately installed third-party distribution."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from suite_runner import run, write_suite

pytestmark = pytest.mark.slow

PLUGIN_DIST = Path(__file__).parent / "plugin_dist"


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """pip-install the example plugin into its own folder (not into this environment)."""
    target = tmp_path_factory.mktemp("site")
    # build from a copy: pip writes build/ and egg-info next to the sources, which must stay clean
    source = tmp_path_factory.mktemp("src") / "plugin_dist"
    shutil.copytree(PLUGIN_DIST, source, ignore=shutil.ignore_patterns("build", "*.egg-info"))
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--target", str(target), str(source)],
        check=True, cwd=source, capture_output=True, text=True,
    )
    assert list(target.glob("robustprune_example_plugin-1.2.3.dist-info"))
    return target


def test_plugins_command_lists_the_third_party_plugin(installed, tmp_path):
    result = run(["-m", "robustprune.cli", "plugins"], cwd=tmp_path, env={"PYTHONPATH": str(installed)})
    assert result.returncode == 0, result.stdout + result.stderr
    line = next(text for text in result.stdout.splitlines() if text.startswith("example "))
    assert "robustprune-example-plugin 1.2.3" in line
    assert "methods: layer_magnitude" in line and "shifts: invert" in line
    # first-party plugins are listed the same way, through the same entry-point group
    assert re.search(r"^wt\s+robustprune 0\.1\.0\s+entry point\s+methods: wt", result.stdout, re.M)


def test_suite_runs_the_third_party_method_and_shift(installed, tmp_path):
    write_suite(tmp_path, methods=("wt", "layer_magnitude"), shifts=("invert@0.5",))
    result = run(["-m", "pytest", "suite_tiny.py", f"--rp-store={tmp_path / 'store'}", "-v"],
                 cwd=tmp_path, env={"PYTHONPATH": str(installed)})
    assert result.returncode == 0, result.stdout[-3000:]
    assert "test_shift[layer_magnitude-small_cnn-digits-invert@0.5] PASSED" in result.stdout
    assert re.search(r"^layer_magnitude\s", result.stdout, re.M)


def test_without_the_plugin_the_name_is_unknown(tmp_path):
    write_suite(tmp_path, methods=("layer_magnitude",))
    result = run(["-m", "pytest", "suite_tiny.py", f"--rp-store={tmp_path / 'store'}"], cwd=tmp_path)
    assert result.returncode == 2
    assert "unknown method 'layer_magnitude'" in result.stdout


def test_an_installed_third_party_plugin_can_be_disabled(installed, tmp_path):
    write_suite(tmp_path, methods=("wt", "layer_magnitude"))
    env = {"PYTHONPATH": str(installed)}
    result = run(["-m", "pytest", "suite_tiny.py", f"--rp-store={tmp_path / 'store'}", "--rp-disable=example"],
                 cwd=tmp_path, env=env)
    assert result.returncode == 2, result.stdout[-2000:]
    assert "unknown method 'layer_magnitude'" in result.stdout and "Disabled (not loaded): example." in result.stdout
    listing = run(["-m", "robustprune.cli", "plugins"], cwd=tmp_path,
                  env={**env, "ROBUSTPRUNE_DISABLE_PLUGINS": "example"})
    assert re.search(r"^example\s+disabled\s+\(not loaded\)", listing.stdout, re.M), listing.stdout
