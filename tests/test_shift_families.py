"""Parameter families of shifts: chosen by image size or by the suite, in the store keys and the report; the
preview command; and machines without OpenCV (a slim container: libGL missing)."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from suite_runner import run, write_suite

from robustprune import PixelShift, Suite
from robustprune.cli import main
from robustprune.core.shifts import image_seeds, parse_shift
from robustprune.engine.preview import preview_rows
from robustprune.report.tables import sources_footnote
from robustprune_plugins.shifts.cifar10c import corrupt_cifar
from robustprune_plugins.shifts.corruptions import OPENCV_FIX, corrupt_image, default_family


def _keep(image, param, seed):
    return image


def _invert(image, param, seed):
    return 255 - image


def _needs_gl(image, param, seed):
    from robustprune import MissingDependencyError

    raise MissingDependencyError("libGL.so.1 is missing")


FAMILIES = PixelShift("toy", _keep, families={"small": _invert, "large": _keep},
                      default_family=lambda height, width: "small" if max(height, width) <= 32 else "large")


# --------------------------------------------------------------------------- choosing a family


def test_family_is_chosen_by_image_size_unless_the_suite_names_one():
    assert FAMILIES.family_for("auto", 32, 32) == "small" and FAMILIES.family_for(None, 224, 224) == "large"
    assert FAMILIES.family_for("large", 32, 32) == "large"
    assert FAMILIES.implementation("small") is _invert and FAMILIES.implementation(None) is _keep
    with pytest.raises(ValueError, match="no parameter family 'medium'; its families: large, small"):
        FAMILIES.family_for("medium", 32, 32)
    plain = PixelShift("plain", _keep)  # a shift without families ignores the setting
    assert plain.family_for("cifar10-c", 32, 32) is None


def test_corruptions_default_to_cifar10c_up_to_32_pixels():
    assert default_family(32, 32) == "cifar10-c" and default_family(28, 28) == "cifar10-c"
    assert default_family(64, 64) == "imagenet-c" and default_family(224, 224) == "imagenet-c"


def test_suite_shift_family_is_checked_where_it_is_written():
    base = dict(models=["small_cnn"], datasets=["digits"], methods=["wt"], ratios=[0.5])
    assert Suite(**base).shift_family_for("digits") == "auto"
    assert Suite(**base, shift_family={"digits": "imagenet-c"}).shift_family_for("digits") == "imagenet-c"
    with pytest.raises(ValueError, match="names dataset\\(s\\) 'cifar10', not in the suite's datasets"):
        Suite(**base, shift_family={"cifar10": "imagenet-c"})
    with pytest.raises(TypeError, match="a family name or a \\{dataset: family\\} mapping"):
        Suite(**base, shift_family=3)


def test_a_family_no_shift_has_is_a_configuration_error_before_any_work(make_engine):
    base = dict(models=["small_cnn"], datasets=["digits"], methods=["wt"], ratios=[0.5])
    with pytest.raises(ValueError, match="shift 'fog' has no parameter family 'cifar-10c'; its families: "
                                         "cifar10-c, imagenet-c"):
        make_engine(Suite(**base, shifts=["fog@3"], shift_family="cifar-10c"))
    with pytest.raises(ValueError, match="no shift of the suite has parameter families"):
        make_engine(Suite(**base, shifts=["uniform_noise@0.1"], shift_family="imagenet-c"))


@pytest.mark.parametrize(("requested", "family", "corrupt"), [
    ("auto", "cifar10-c", corrupt_cifar), ("imagenet-c", "imagenet-c", corrupt_image)])
def test_the_family_makes_the_set_enters_its_key_and_is_named_as_its_source(make_engine, requested, family,
                                                                             corrupt):
    engine = make_engine(Suite(models=["small_cnn"], datasets=["digits"], methods=["wt"], ratios=[0.5],
                               shifts=["fog@3", "uniform_noise@0.1"], shift_family=requested))
    data = engine.data("digits")
    fog, noise = (s for s in engine.shifts if not s.is_nominal)
    assert engine.shifted.family(data, fog) == family and engine.shifted.family(data, noise) is None
    assert engine.shifted.identity(data, fog)["family"] == family
    assert engine.shifted.source(data, fog) == f"generated: {family}"
    assert engine.shifted.source(data, noise) == "generated"
    engine.shifted.ensure_pixel_sets(data, [fog])
    stored = engine.options.store.load("shifted", engine.shifted.generated_key(data, fog)).numpy()
    seeds = image_seeds(0, data.key, fog, len(data.test_labels))
    for i in (0, 7):
        assert np.array_equal(stored[i], corrupt("fog", data.splits.test.images[i], 3, seeds[i]))


def test_the_two_families_are_stored_apart(make_engine):
    def key(family):
        engine = make_engine(Suite(models=["small_cnn"], datasets=["digits"], methods=["wt"], ratios=[0.5],
                                   shifts=["fog@3"], shift_family=family))
        fog = next(s for s in engine.shifts if not s.is_nominal)
        return engine.shifted.generated_key(engine.data("digits"), fog)

    assert key("cifar10-c") == key("auto") != key("imagenet-c")


def test_the_sources_line_names_the_family():
    many = {f"c{i}@3": "generated: cifar10-c" for i in range(19)}
    assert sources_footnote({**many, "uniform_noise@0.1": "generated"}) == \
        "shift sources: all generated by robustprune; 19 shifts (c0@3, ...) with cifar10-c parameters"
    mixed = {"fog@3": "published: /data/CIFAR-10-C/fog.npy", "frost@3": "generated: imagenet-c"}
    assert sources_footnote(mixed) == ("shift sources: published, read from /data/CIFAR-10-C: fog@3 (fog.npy); "
                                       "generated: frost@3 with imagenet-c parameters")


# --------------------------------------------------------------------------- preview


def test_preview_shows_the_images_a_run_evaluates(registry):
    rows = preview_rows(registry, ["fog@1,3", "uniform_noise@0.2"], "digits", count=4)
    assert [r.label for r in rows] == ["clean", "fog@1 (cifar10-c)", "fog@3 (cifar10-c)", "uniform_noise@0.2"]
    assert all(r.images.shape == (4, 32, 32, 3) and r.images.dtype == np.uint8 for r in rows)
    from robustprune.engine.engine import load_dataset
    from robustprune.plugin.api import DatasetRequest

    data = load_dataset("digits", registry.get("dataset", "digits"), DatasetRequest(seed=0))
    labels = data.test_labels.numpy()
    first_of_class = [int(np.flatnonzero(labels == c)[0]) for c in range(4)]  # one column per class
    assert np.array_equal(rows[0].images, data.splits.test.images[first_of_class])
    (fog3,) = parse_shift("fog@3", registry).members
    seeds = image_seeds(0, data.key, fog3, len(labels))  # the run's per-image seeds
    for column, index in enumerate(first_of_class):
        expected = corrupt_cifar("fog", data.splits.test.images[index], 3, seeds[index])
        assert np.array_equal(rows[2].images[column], expected)


def test_preview_command_writes_a_png(tmp_path, capsys):
    out = tmp_path / "preview.png"
    assert main(["shifts", "preview", "contrast@3", "noise@1,5", "--images", "3", "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "7 shift(s) x 3 images of digits" in printed and "shot_noise@5 (cifar10-c)" in printed
    with Image.open(out) as image:
        assert image.format == "PNG" and image.height == 8 * (96 + 4)  # clean + 7 shifts, 96-pixel tiles
    assert [p.name for p in tmp_path.iterdir()] == ["preview.png"]  # no temporary file left


@pytest.mark.parametrize(("args", "status", "message"), [
    (["fgo@3"], 2, "unknown shift 'fgo'"),
    (["fog@7"], 2, "severity must be an integer from 1 to 5"),
    (["fog@3", "--dataset", "mnist"], 2, "unknown dataset 'mnist'"),
    (["uniform_noise@0.1", "--family", "cifar10-c"], 2, "none of these shifts has parameter families"),
    (["fog@3", "--family", "cifar"], 2, "no parameter family 'cifar'"),
    (["fog@3", "--images", "0"], 2, "--images must be from 1 to 64"),
    (["fog@3", "--plugin", "no_such_module"], 2, "plugin 'no_such_module' (local module) failed to load"),
    (["fog@3", "--param", "test_fraction"], 2, "write KEY=VALUE"),
    (["fog@3", "--param", "test_fraction=2"], 2, "test_fraction must be in (0, 1)"),
    (["cifar10_1@6"], 2, "is a published test set with images of its own"),
])
def test_preview_refuses_bad_input_with_what_to_write(tmp_path, capsys, args, status, message):
    assert main(["shifts", "preview", *args, "-o", str(tmp_path / "p.png")]) == status
    assert message in capsys.readouterr().err
    assert not (tmp_path / "p.png").exists()


def test_preview_output_must_be_a_png_in_an_existing_folder(tmp_path, capsys):
    assert main(["shifts", "preview", "fog@3", "-o", str(tmp_path / "p.jpg")]) == 2
    assert main(["shifts", "preview", "fog@3", "-o", str(tmp_path / "missing" / "p.png")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_preview_takes_the_datasets_parameters_as_a_suite_gives_them(registry):
    from robustprune.plugin.api import DatasetRequest

    default = preview_rows(registry, ["fog@3"], "digits", count=3)
    half = preview_rows(registry, ["fog@3"], "digits", count=3,
                        request=DatasetRequest(seed=0, params={"test_fraction": 0.5}))
    assert not np.array_equal(default[1].images, half[1].images)  # another split: another key, other draws


# --------------------------------------------------------------------------- without OpenCV


def test_a_missing_library_is_never_recorded_as_the_shifts_failure(tmp_path):
    from robustprune import MissingDependencyError
    from robustprune.compute.data import ShiftJob, generate_pixel_shifts

    failures = []
    images = np.zeros((4, 32, 32, 3), np.uint8)
    with pytest.raises(MissingDependencyError, match="libGL"):
        generate_pixel_shifts(images, [ShiftJob("needs_gl@3", _needs_gl, 3, [0, 1, 2, 3])], 1,
                              failed=lambda index, problem: failures.append(problem))
    assert failures == []  # a shift failure would be stored, and outlive the library's installation


# what `import cv2` raises in python:3.11-slim with opencv-python installed
_NO_LIBGL = 'raise ImportError("libGL.so.1: cannot open shared object file: No such file or directory")\n'


@pytest.fixture
def no_opencv(tmp_path) -> dict[str, str]:
    """An environment whose first sys.path entry has a cv2 that fails to import, as libGL's absence does."""
    shadow = tmp_path / "no_libgl"
    shadow.mkdir()
    (shadow / "cv2.py").write_text(_NO_LIBGL)
    return {"PYTHONPATH": str(shadow)}


def test_cifar10c_family_needs_no_opencv(tmp_path, no_opencv):
    script = textwrap.dedent("""
        import numpy as np
        try:
            import cv2
        except ImportError as exc:
            print("cv2:", exc)
        from robustprune_plugins.shifts.cifar10c import corrupt_cifar
        from robustprune_plugins.shifts.corruptions import ALL
        image = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
        print(sum(corrupt_cifar(name, image, 3, 1).shape == image.shape for name in ALL), "corruptions made")
    """)
    done = run(["-c", script], tmp_path, env=no_opencv)
    assert done.returncode == 0, done.stderr
    assert "cv2: libGL.so.1" in done.stdout and "19 corruptions made" in done.stdout


def test_imagenet_family_without_opencv_names_the_library_and_both_fixes():
    from robustprune import MissingDependencyError
    from robustprune_plugins.shifts.corruptions import check_ready

    saved = sys.modules.get("cv2")
    sys.modules["cv2"] = None  # type: ignore[assignment]  # makes `import cv2` raise ImportError
    try:
        with pytest.raises(MissingDependencyError) as caught:
            check_ready("fog", "imagenet-c")
        check_ready("fog", "cifar10-c")  # needs nothing of OpenCV
    finally:
        if saved is None:
            del sys.modules["cv2"]
        else:
            sys.modules["cv2"] = saved
    message = str(caught.value)
    for part in ("apt-get install -y libgl1 libglib2.0-0", "opencv-python-headless", "import cv2"):
        assert part in message
    assert OPENCV_FIX.split("{")[0] in message


@pytest.mark.slow
def test_suite_without_opencv_runs_on_digits_and_stops_before_any_work_with_imagenet_parameters(
        tmp_path, no_opencv):
    suite = write_suite(tmp_path, shifts=("fog@3", "frost@3"))
    done = run(["-m", "robustprune.cli", "run", str(suite), "--store", str(tmp_path / "store"), "-q"], tmp_path,
               env=no_opencv)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "with cifar10-c parameters" in done.stdout

    forced = write_suite(tmp_path, "suite_imagenet.py", shifts=("fog@3",), fields='shift_family="imagenet-c",')
    store = tmp_path / "store2"
    done = run(["-m", "robustprune.cli", "run", str(forced), "--store", str(store)], tmp_path, env=no_opencv)
    assert done.returncode == 6, done.stdout[-3000:] + done.stderr[-3000:]
    output = done.stdout + done.stderr
    assert "libGL.so.1" in output and "apt-get install -y libgl1 libglib2.0-0" in output
    assert "opencv-python-headless" in output
    log = store / "work.log"
    assert not log.exists() or "network" not in log.read_text()  # nothing trained


def test_registering_the_corruptions_imports_no_opencv(tmp_path, no_opencv):
    done = run(["-m", "robustprune.cli", "plugins"], tmp_path, env=no_opencv)
    assert done.returncode == 0, done.stderr
    assert "gaussian_noise" in done.stdout and "failed to load" not in done.stdout


def test_unpicklable_family_functions_are_refused_at_registration(tmp_path):
    from robustprune.plugin.registry import load_registry

    module = tmp_path / "lambda_family.py"
    module.write_text(textwrap.dedent("""
        from robustprune import PixelShift, hookimpl

        def keep(image, param, seed):
            return image

        @hookimpl
        def robustprune_register_shifts(register):
            register(PixelShift("lam", keep, families={"x": lambda image, param, seed: image}))
    """))
    sys.path.insert(0, str(tmp_path))
    try:
        registry = load_registry(["lambda_family"], search_path=Path(tmp_path))
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("lambda_family", None)
    assert any("family 'x' function that cannot be pickled" in f.error for f in registry.failures)
