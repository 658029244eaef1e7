"""The `robustprune` command's options come from the same table as the pytest plugin's."""

from __future__ import annotations

import pytest

from robustprune.cli import UsageError, main, pytest_args_for_run, run_help
from robustprune.harness.exitcodes import ExitStatus
from robustprune.harness.options import OPTIONS


def test_every_option_is_a_pytest_option_and_in_the_run_help(pytester: pytest.Pytester):
    pytest_help = pytester.runpytest_inprocess("--help").stdout.str()
    cli_help = run_help()
    for option in OPTIONS:
        assert option.pytest_flag in pytest_help, option.name
        assert f"  {option.cli_flag}" in cli_help, option.name
        # one help text: the first words of it are in both
        assert " ".join(option.help.split()[:4]) in " ".join(pytest_help.split()), option.name


@pytest.mark.parametrize("option", OPTIONS, ids=lambda option: option.name)
def test_run_spells_each_option_for_pytest(option, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "suite_x.py").write_text("")
    if option.metavar is None:
        assert option.pytest_flag in pytest_args_for_run(["suite_x.py", option.cli_flag])
    else:
        assert f"{option.pytest_flag}=V" in pytest_args_for_run(["suite_x.py", option.cli_flag, "V"])
        assert f"{option.pytest_flag}=V" in pytest_args_for_run(["suite_x.py", f"{option.cli_flag}=V"])


def test_an_option_without_its_value_is_refused(capsys):
    with pytest.raises(UsageError, match="--store needs a value"):
        pytest_args_for_run(["--store"])
    assert main(["run", "--store"]) == 2
    assert "robustprune run: --store needs a value" in capsys.readouterr().err


def test_python_m_robustprune_is_the_command(tmp_path):
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "robustprune", "--version"], capture_output=True, text=True,
                            cwd=tmp_path)
    assert result.returncode == 0 and result.stdout.startswith("robustprune ")


def test_a_closed_pipe_ends_the_command_quietly(tmp_path):
    """``robustprune plugins | head -1``: the reader goes away; no traceback, the shell's SIGPIPE status."""
    import subprocess
    import sys

    process = subprocess.Popen([sys.executable, "-m", "robustprune", "plugins"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, cwd=tmp_path)
    assert process.stdout is not None and process.stderr is not None
    process.stdout.close()  # before the command writes anything (it imports first)
    stderr = process.stderr.read().decode()
    assert process.wait() == 141, stderr
    assert "BrokenPipeError" not in stderr and "Traceback" not in stderr


def test_the_package_metadata_carries_the_license_classifiers_and_urls():
    import importlib.metadata

    metadata = importlib.metadata.metadata("robustprune")
    assert metadata["License-Expression"] == "MIT" and "LICENSE" in (metadata.get_all("License-File") or [])
    assert "Framework :: Pytest" in (metadata.get_all("Classifier") or [])
    urls = dict(entry.split(", ", 1) for entry in metadata.get_all("Project-URL") or [])
    assert urls["Paper"] == "https://arxiv.org/abs/2103.03014"
    assert urls["Paper's code"] == "https://github.com/lucaslie/torchprune"


def test_a_suite_folder_is_its_suite_files_on_pytests_command_line(tmp_path):
    from robustprune.cli import pytest_args_for_run

    (tmp_path / "suites" / "more").mkdir(parents=True)
    (tmp_path / "suites" / "gate.py").write_text("from robustprune import Suite\n\nsuite = Suite(models=['m'])\n")
    (tmp_path / "suites" / "more" / "test_extra.py").write_text("def test_x():\n    pass\n")
    (tmp_path / "suites" / "my_plugins.py").write_text("from robustprune import hookimpl\n")  # not a suite
    (tmp_path / "suites" / ".venv").mkdir()
    (tmp_path / "suites" / ".venv" / "test_vendored.py").write_text("def test_y():\n    pass\n")
    args = pytest_args_for_run([str(tmp_path / "suites"), "-q"])
    assert args[:2] == [str(tmp_path / "suites" / "gate.py"), str(tmp_path / "suites" / "more" / "test_extra.py")]
    assert "python_files=*.py" not in " ".join(args) and "test_vendored" not in " ".join(args)
    # a folder reached through a dotted parent or `..` is searched like any other
    hidden = tmp_path / ".work" / "inner"
    hidden.mkdir(parents=True)
    assert pytest_args_for_run([str(hidden / ".." / ".." / "suites")])[0].endswith("gate.py")


def test_a_folder_without_suites_is_a_configuration_error(tmp_path, capsys):
    from robustprune.cli import main

    (tmp_path / "empty").mkdir()
    assert main(["run", str(tmp_path / "empty")]) == ExitStatus.CONFIGURATION_ERROR
    assert "no suite in" in capsys.readouterr().err


def test_only_the_suites_of_a_folder_have_their_assertions_rewritten(tmp_path):
    """pytest rewrites the modules it collects; a module a suite imports keeps its plain asserts."""
    import subprocess
    import sys

    folder = tmp_path / "suites"
    folder.mkdir()
    (folder / "helper.py").write_text("def check(x):\n    assert x\n    return x\n")
    (folder / "suite_check.py").write_text(
        "import helper\n"
        "suite = None  # a suite module by its declaration; no Suite needed to test collection\n"
        "assert '@py_builtins' not in vars(helper), 'an imported module was rewritten'\n"
        "def test_rewritten():\n    assert '@py_builtins' in globals()\n")
    result = subprocess.run([sys.executable, "-m", "robustprune", "run", str(folder), "-q", "-p", "no:cacheprovider",
                             "--store", str(tmp_path / "store")], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "1 passed" in result.stdout


def test_packaged_suites_run_by_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = pytest_args_for_run(["segmentation", "-k", "quickstart", "-q"])
    assert args[0].endswith("robustprune/suites/segmentation.py")
    assert "-p" in args and "no:cacheprovider" in args  # packaged suites keep pytest's cache out of site-packages
    assert args[-3:] == ["-k", "quickstart", "-q"]  # the value of -k is not a suite
    both = pytest_args_for_run(["quickstart", "segmentation"])
    assert [a.rsplit("/", 1)[-1] for a in both[:2]] == ["quickstart.py", "segmentation.py"]
    (tmp_path / "segmentation").mkdir()  # a folder of that name in the working directory is the user's
    (tmp_path / "segmentation" / "test_mine.py").write_text("def test_mine():\n    pass\n")
    assert pytest_args_for_run(["segmentation"])[0] == "segmentation/test_mine.py"


def test_the_packaged_segmentation_suite_collects_its_grid(tmp_path, capsys):
    status = main(["run", "segmentation", "--collect-only", "-q", "--store", str(tmp_path / "store")])
    out = capsys.readouterr().out
    assert status == 0, out
    # per method: 1 nominal check, 2 group checks x 2 entries, 22 shift checks (19 corruptions, 3 noise levels)
    assert out.count("segmentation.py::") == 4 * (1 + 2 * 2 + 22), out[-2000:]
