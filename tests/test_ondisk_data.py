"""The real dataset loaders on tiny files written in the real on-disk formats."""

from __future__ import annotations

import pickle
import sys
import types

import numpy as np
import pytest
from ondisk_formats import (
    write_cifar10,
    write_cifar10_1,
    write_cifar100,
    write_corruption_arrays,
    write_image_folder,
)

from robustprune import DatasetRequest, ShiftedSet
from robustprune.plugin.datafiles import DataFileError, stratified_subset, subset_size
from robustprune_plugins.datasets import cifar, imagefolder


@pytest.fixture
def cifar_root(tmp_path):
    written = write_cifar10(tmp_path)
    return tmp_path, written


def load10(root, **params):
    return cifar.load_cifar(cifar.CIFAR10, "cifar10", DatasetRequest(seed=0, root=root, params=params))


# --------------------------------------------------------------------------- CIFAR batches


def test_cifar10_batches_load_as_written(cifar_root):
    root, written = cifar_root
    splits = load10(root)
    # rows of R, G, B planes come back as the (N, 32, 32, 3) images they were made from
    np.testing.assert_array_equal(splits.train.images, written["train_images"])
    np.testing.assert_array_equal(splits.train.labels, written["train_labels"])
    np.testing.assert_array_equal(splits.test.images, written["test_images"])
    np.testing.assert_array_equal(splits.test.labels, written["test_labels"])
    assert splits.num_classes == 10
    assert splits.class_names[:2] == ("airplane", "automobile")
    assert splits.mean == (0.4914, 0.4822, 0.4465) and splits.std == (0.2023, 0.1994, 0.2010)


def test_root_may_be_the_batches_folder_itself(cifar_root):
    root, written = cifar_root
    splits = load10(root / "cifar-10-batches-py")
    np.testing.assert_array_equal(splits.test.labels, written["test_labels"])


def test_cifar100_fine_labels(tmp_path):
    written = write_cifar100(tmp_path)
    splits = cifar.load_cifar(cifar.CIFAR100, "cifar100", DatasetRequest(root=tmp_path))
    assert splits.num_classes == 100
    np.testing.assert_array_equal(splits.train.images, written["train_images"])
    np.testing.assert_array_equal(splits.test.labels, written["test_labels"])
    assert splits.class_names[5] == "class5"
    assert splits.mean == cifar.CIFAR100_MEAN


def test_missing_cifar_names_folder_files_and_fix(tmp_path):
    with pytest.raises(DataFileError) as info:
        load10(tmp_path)
    message = str(info.value)
    assert str(tmp_path / "cifar-10-batches-py") in message
    assert "test_batch" in message and "data_batch_1" in message  # what is missing / expected
    assert "--rp-data" in message and "ROBUSTPRUNE_DATA" in message and "--rp-download" in message


def test_missing_single_batch_is_named(cifar_root):
    root, _ = cifar_root
    (root / "cifar-10-batches-py" / "data_batch_3").unlink()
    with pytest.raises(DataFileError, match=r"CIFAR-10 not found \(data_batch_3 missing\)"):
        load10(root)


@pytest.mark.parametrize(
    "damage, problem",
    [
        (lambda p: p.write_bytes(p.read_bytes()[:100]), "unreadable"),
        (lambda p: p.write_bytes(pickle.dumps({"data": np.zeros((2, 3072), np.uint8)}, protocol=2)),
         "wrong content"),
        (lambda p: p.write_bytes(pickle.dumps({"data": np.zeros((2, 100), np.uint8), "labels": [1, 2]}, protocol=2)),
         "data of shape (2, 100)"),
        (lambda p: p.write_bytes(pickle.dumps({"data": np.zeros((2, 3072), np.uint8), "labels": [1, 12]}, protocol=2)),
         "labels outside 0..9"),
    ],
    ids=["truncated", "no-labels", "wrong-shape", "bad-labels"],
)
def test_malformed_batch_names_path_layout_and_fix(cifar_root, damage, problem):
    root, _ = cifar_root
    path = root / "cifar-10-batches-py" / "test_batch"
    damage(path)
    with pytest.raises(DataFileError) as info:
        load10(root)
    message = str(info.value)
    assert problem in message
    assert str(path) in message
    assert "expected: a pickled dict with 'data' (N x 3072 uint8" in message
    assert "fix: download and extract the archive again" in message


class _RunsCode:
    """What a crafted data file holds: unpickling it calls ``os.system`` (here: touch a marker file)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        import os

        return os.system, (f"touch {self.marker}",)


@pytest.mark.parametrize("name", ["data_batch_1", "batches.meta"])
def test_a_crafted_batch_is_refused_before_it_runs_anything(cifar_root, tmp_path, name):
    root, _ = cifar_root
    marker = tmp_path / "ran"
    path = root / "cifar-10-batches-py" / name
    path.write_bytes(pickle.dumps({"data": _RunsCode(marker), "labels": [1]}, protocol=2))
    if name == "batches.meta":  # optional file: refused quietly, the class names fall back to numbers
        splits = load10(root)
        assert tuple(splits.class_names) == tuple(str(i) for i in range(10))
    else:
        with pytest.raises(DataFileError) as caught:
            load10(root)
        message = str(caught.value)
        assert str(path) in message and "refused to load posix.system" in message
        assert "asks to import code" in message
    assert not marker.exists()


def test_the_data_unpickler_loads_plain_data_as_pickle_does():
    import io

    from robustprune.plugin.datafiles import UnsafePickleError, load_data_pickle

    value = {"data": np.arange(12, dtype=np.uint8).reshape(3, 4), "labels": [1, 2, 3], "name": "b", b"k": (1.5, None),
             "scalar": np.float32(2.5)}
    for protocol in (2, 4, 5):
        loaded = load_data_pickle(io.BytesIO(pickle.dumps(value, protocol=protocol)))
        assert np.array_equal(loaded["data"], value["data"]) and loaded["labels"] == [1, 2, 3]
        assert loaded["name"] == "b" and loaded[b"k"] == (1.5, None) and loaded["scalar"] == np.float32(2.5)
    with pytest.raises(UnsafePickleError, match="refused to load builtins.eval"):
        load_data_pickle(io.BytesIO(b"cbuiltins\neval\n(S'1+1'\ntR."))


def test_check_says_what_is_missing_and_how_to_point_at_it(cifar_root, tmp_path_factory):
    root, _ = cifar_root
    assert cifar.missing_message(cifar.CIFAR10, "cifar10", DatasetRequest(root=root)) is None
    empty = tmp_path_factory.mktemp("empty")
    message = cifar.missing_message(cifar.CIFAR10, "cifar10", DatasetRequest(root=empty))
    assert f"looked for {empty / 'cifar-10-batches-py'}" in message
    for how in ("--rp-data DIR", "ROBUSTPRUNE_DATA=DIR", "'cifar10': {'root': DIR}", "--rp-download"):
        assert how in message
    assert "no data root is set" in cifar.missing_message(cifar.CIFAR10, "cifar10", DatasetRequest())
    # with the download switch a root is enough: load() will fetch the data
    assert cifar.missing_message(cifar.CIFAR10, "cifar10", DatasetRequest(root=empty, download=True)) is None


def test_download_switch_fetches_with_torchvision(tmp_path, monkeypatch):
    """--rp-download hands a missing CIFAR-10 to torchvision's downloader (faked here: no network)."""
    calls = []

    class FakeCIFAR10:
        def __init__(self, root, train, download):
            calls.append((root, train, download))
            write_cifar10(type(self).target)  # what torchvision's download and extraction leave behind

    FakeCIFAR10.target = tmp_path
    fake = types.ModuleType("torchvision.datasets")
    fake.CIFAR10 = FakeCIFAR10
    monkeypatch.setitem(sys.modules, "torchvision.datasets", fake)
    monkeypatch.setattr("torchvision.datasets", fake, raising=False)
    splits = cifar.load_cifar(cifar.CIFAR10, "cifar10", DatasetRequest(root=tmp_path, download=True))
    assert calls == [(str(tmp_path), True, True)]
    assert len(splits.train) == 200
    # present data is never downloaded again
    cifar.load_cifar(cifar.CIFAR10, "cifar10", DatasetRequest(root=tmp_path, download=True))
    assert len(calls) == 1


def test_unknown_parameter_lists_the_valid_ones(cifar_root):
    root, _ = cifar_root
    with pytest.raises(ValueError, match="unknown cifar10 parameter.*train_sbset.*valid: train_subset"):
        load10(root, train_sbset=10)


# --------------------------------------------------------------------------- subsets


def test_stratified_subset_keeps_class_shares_and_is_seeded():
    labels = np.repeat(np.arange(4), [10, 20, 30, 40])
    index = stratified_subset(labels, 50, seed=3, salt="train_subset")
    assert np.all(np.diff(index) > 0)
    np.testing.assert_array_equal(np.bincount(labels[index]), [5, 10, 15, 20])
    np.testing.assert_array_equal(index, stratified_subset(labels, 50, seed=3, salt="train_subset"))
    assert not np.array_equal(index, stratified_subset(labels, 50, seed=4, salt="train_subset"))
    assert not np.array_equal(index, stratified_subset(labels, 50, seed=3, salt="test_subset"))
    # largest remainders make the total exact
    assert len(stratified_subset(labels, 7, seed=0)) == 7
    np.testing.assert_array_equal(stratified_subset(labels, 100, seed=0), np.arange(100))


@pytest.mark.parametrize("value, message", [(0, "between 1 and"), (101, "between 1 and"), (1.5, "in (0, 1]"),
                                            (True, "a count"), ("10", "a count")])
def test_subset_size_rejects_bad_values(value, message):
    with pytest.raises(ValueError) as info:
        subset_size(value, 100, "train_subset")
    assert message in str(info.value)


def test_cifar_subsets(cifar_root):
    root, written = cifar_root
    splits = load10(root, train_subset=50, test_subset=0.5)
    assert len(splits.train) == 50 and len(splits.test) == 30
    np.testing.assert_array_equal(np.bincount(splits.test.labels), [3] * 10)
    # the chosen images are real test images with their own labels
    index = stratified_subset(written["test_labels"], 30, seed=0, salt="test_subset")
    np.testing.assert_array_equal(splits.test.images, written["test_images"][index])


# --------------------------------------------------------------------------- published shifts


def test_published_corruption_reads_the_severity_block(cifar_root):
    root, written = cifar_root
    write_corruption_arrays(root / "CIFAR-10-C", written["test_images"], written["test_labels"])
    splits = load10(root)
    found = splits.published_shift("contrast", 3)
    assert isinstance(found, ShiftedSet)
    assert found.source == str(root / "CIFAR-10-C" / "contrast.npy")
    expected = np.clip(written["test_images"].astype(int) - 90, 0, 255).astype(np.uint8)  # severity 3
    np.testing.assert_array_equal(found.test.images, expected)
    np.testing.assert_array_equal(found.test.labels, written["test_labels"])
    assert splits.published_shift("uniform_noise", 0.1) is None  # not a published corruption: generated


def test_published_corruption_follows_the_test_subset(cifar_root):
    root, written = cifar_root
    write_corruption_arrays(root / "CIFAR-10-C", written["test_images"], written["test_labels"])
    splits = load10(root, test_subset=20)
    found = splits.published_shift("brightness", 5)
    expected = np.clip(splits.test.images.astype(int) - 150, 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(found.test.images, expected)
    np.testing.assert_array_equal(found.test.labels, splits.test.labels)


def test_published_corruptions_off_or_absent_means_generated(cifar_root):
    root, written = cifar_root
    assert load10(root).published_shift("contrast", 3) is None  # no CIFAR-10-C folder
    write_corruption_arrays(root / "CIFAR-10-C", written["test_images"], written["test_labels"])
    assert load10(root, published_corruptions=False).published_shift("contrast", 3) is None
    with pytest.raises(DataFileError, match="published corruption folder not found"):
        load10(root, published_corruptions=str(root / "elsewhere"))


@pytest.mark.parametrize(
    "damage, problem",
    [
        (lambda folder: np.save(folder / "contrast.npy", np.zeros((7, 32, 32, 3), np.uint8)),
         "corruption array of shape (7, 32, 32, 3)"),
        (lambda folder: (folder / "contrast.npy").write_bytes(b"not an npy file"), "not a readable .npy file"),
        (lambda folder: (folder / "labels.npy").unlink(), "file not found"),
        (lambda folder: (folder / "contrast.npy").unlink(), "file not found"),
    ],
    ids=["wrong-shape", "garbage", "no-labels", "missing-file"],
)
def test_malformed_corruption_arrays(cifar_root, damage, problem):
    root, written = cifar_root
    folder = root / "CIFAR-10-C"
    write_corruption_arrays(folder, written["test_images"], written["test_labels"])
    damage(folder)
    with pytest.raises(DataFileError) as info:
        load10(root).published_shift("contrast", 3)
    message = str(info.value)
    assert problem in message
    assert str(folder) in message
    assert "severities 1-5 in blocks of 60" in message  # the expected layout, sized to this test set
    assert "published_corruptions=False" in message  # one of the fixes


def test_cifar10_1_as_a_shift_of_cifar10(cifar_root):
    root, _ = cifar_root
    written = write_cifar10_1(root / "CIFAR-10.1", n=30)
    found = load10(root).published_shift("cifar10_1", 6)
    assert found.source == str(root / "CIFAR-10.1" / "cifar10.1_v6_data.npy")
    np.testing.assert_array_equal(found.test.images, written["images"])
    np.testing.assert_array_equal(found.test.labels, written["labels"])
    assert found.test.images.flags.writeable  # tensors made from it must not alias a read-only map


def test_cifar10_1_in_the_repository_layout(cifar_root):
    root, _ = cifar_root
    write_cifar10_1(root / "CIFAR-10.1" / "datasets", n=12)  # a clone of the CIFAR-10.1 repository
    assert len(load10(root).published_shift("cifar10_1", 6).test) == 12


def test_cifar10_1_missing_or_wrong_version(cifar_root):
    root, _ = cifar_root
    with pytest.raises(DataFileError) as info:
        load10(root).published_shift("cifar10_1", 6)
    assert str(root / "CIFAR-10.1" / "cifar10.1_v6_data.npy") in str(info.value)
    assert "https://github.com/modestyachts/CIFAR-10.1" in str(info.value)
    with pytest.raises(ValueError, match="versions 4 and 6, not 5"):
        load10(root).published_shift("cifar10_1", 5)


def test_cifar10_1_is_not_a_shift_of_cifar100(tmp_path):
    write_cifar100(tmp_path)
    splits = cifar.load_cifar(cifar.CIFAR100, "cifar100", DatasetRequest(root=tmp_path))
    with pytest.raises(ValueError, match="dataset cifar100 does not provide cifar10_1"):
        splits.published_shift("cifar10_1", 6)


def test_cifar10_1_dataset(cifar_root):
    root, written10 = cifar_root
    written = write_cifar10_1(root / "CIFAR-10.1", n=30)
    request = DatasetRequest(root=root, params={"test_subset": 10})
    assert cifar.check_cifar10_1(request) is None
    splits = cifar.load_cifar10_1(request)
    np.testing.assert_array_equal(splits.train.images, written10["train_images"])
    index = stratified_subset(written["labels"], 10, seed=0, salt="test_subset")
    np.testing.assert_array_equal(splits.test.images, written["images"][index])
    message = cifar.check_cifar10_1(DatasetRequest(root=root, params={"version": 4}))
    assert "cifar10.1_v4_data.npy" in message and "--rp-data" in message


# --------------------------------------------------------------------------- image folders


def test_image_folder_loads_class_folders_with_resize_and_center_crop(tmp_path):
    from PIL import Image

    write_image_folder(tmp_path, per_class={"train": 4, "val": 2})
    request = DatasetRequest(root=tmp_path, params={"image_size": 24, "resize": 28})
    splits = imagefolder.load_image_folder(request)
    assert splits.class_names == ("ant", "bee", "cat")
    assert splits.train.images.shape == (12, 24, 24, 3) and splits.test.images.shape == (6, 24, 24, 3)
    np.testing.assert_array_equal(splits.train.labels, np.repeat([0, 1, 2], 4))
    assert splits.mean == imagefolder.IMAGENET_MEAN
    # the first training image, a 40x30 PNG: shorter side to 28 (37x28), then the central 24x24
    with Image.open(tmp_path / "train" / "ant" / "ant_0.png") as image:
        resized = np.asarray(image.convert("RGB").resize((37, 28), Image.BILINEAR))
    np.testing.assert_array_equal(splits.train.images[0], resized[2:26, 6:30])


def test_image_folder_subsets_are_chosen_before_decoding(tmp_path, monkeypatch):
    write_image_folder(tmp_path, per_class={"train": 6, "val": 4})
    decoded = []
    real = imagefolder.decode
    monkeypatch.setattr(imagefolder, "decode", lambda path, *a: decoded.append(path) or real(path, *a))
    splits = imagefolder.load_image_folder(DatasetRequest(
        root=tmp_path, params={"image_size": 16, "resize": 16, "train_subset": 6, "test_subset": 0.5, "workers": 1}))
    assert len(splits.train) == 6 and len(splits.test) == 6
    np.testing.assert_array_equal(np.bincount(splits.train.labels), [2, 2, 2])
    assert len(decoded) == 12  # only the chosen files were opened


def test_image_folder_errors_name_path_layout_and_fix(tmp_path):
    write_image_folder(tmp_path, per_class={"train": 2})
    with pytest.raises(DataFileError) as info:
        imagefolder.load_image_folder(DatasetRequest(root=tmp_path))
    message = str(info.value)
    assert f"test folder not found: {tmp_path / 'val'}" in message
    assert "<root>/train/<class>/<image>" in message and "'imagefolder': {'root': DIR}" in message
    assert f"looked for {tmp_path / 'val'}" in imagefolder.check_image_folder(DatasetRequest(root=tmp_path))

    write_image_folder(tmp_path, per_class={"val": 1})
    assert imagefolder.check_image_folder(DatasetRequest(root=tmp_path)) is None
    (tmp_path / "val" / "dog").mkdir()
    (tmp_path / "val" / "dog" / "x.png").write_bytes(b"")
    with pytest.raises(DataFileError, match="dog is not a class of the training split"):
        imagefolder.load_image_folder(DatasetRequest(root=tmp_path))


def test_broken_image_is_named(tmp_path):
    write_image_folder(tmp_path, per_class={"train": 2, "val": 1})
    broken = tmp_path / "val" / "bee" / "bee_0.png"
    broken.write_bytes(b"\x89PNG truncated")
    with pytest.raises(DataFileError) as info:
        imagefolder.load_image_folder(DatasetRequest(root=tmp_path, params={"image_size": 16, "resize": 16}))
    assert "image unreadable" in str(info.value) and str(broken) in str(info.value)
