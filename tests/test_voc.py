"""The ``voc`` dataset plugin on tiny files in Pascal VOC's real layout, loaded through the registry."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from robustprune import IGNORE_INDEX, DatasetRequest
from robustprune.plugin.datafiles import DataFileError
from robustprune.plugin.registry import load_registry

# (width, height) of each image; train and val ids as the ImageSets lists name them
SIZES = {"2007_000032": (40, 30), "2007_000039": (30, 44), "2008_000002": (36, 36), "2009_000010": (50, 24),
         "2010_000005": (32, 40)}
TRAIN, VAL = ["2009_000010", "2007_000032", "2010_000005"], ["2008_000002", "2007_000039"]


def voc_spec():
    return load_registry().dataset("voc").item


def mask_for(index: int, width: int, height: int) -> np.ndarray:
    """Background, one object of class ``index + 1`` and a second of class 15 (person), 255 around the first."""
    mask = np.zeros((height, width), dtype=np.uint8)
    mask[height // 4: 3 * height // 4, width // 4: 3 * width // 4] = IGNORE_INDEX
    mask[height // 4 + 2: 3 * height // 4 - 2, width // 4 + 2: 3 * width // 4 - 2] = index + 1
    mask[: height // 6, : width // 6] = 15
    return mask


def write_voc(root: Path, year: str = "2011", sizes: dict[str, tuple[int, int]] = SIZES,
              train: list[str] = TRAIN, val: list[str] = VAL) -> Path:
    """A VOC development kit under ``root/VOCdevkit/VOC<year>``; returns that folder."""
    from PIL import Image

    folder = root / "VOCdevkit" / f"VOC{year}"
    for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    palette = rng.integers(0, 256, size=768).astype(np.uint8).tolist()
    for index, (image_id, (width, height)) in enumerate(sizes.items()):
        pixels = np.clip(rng.integers(-20, 20, size=(height, width, 3)) + 40 * index + 30, 0, 255)
        Image.fromarray(pixels.astype(np.uint8)).save(folder / "JPEGImages" / f"{image_id}.jpg", quality=95)
        mask = Image.fromarray(mask_for(index, width, height), mode="P")
        mask.putpalette(palette)
        mask.save(folder / "SegmentationClass" / f"{image_id}.png")
    for split, ids in (("train", train), ("val", val)):
        (folder / "ImageSets" / "Segmentation" / f"{split}.txt").write_text("".join(f"{i}\n" for i in ids))
    return folder


def test_voc_loads_the_listed_splits_as_fixed_size_segmentation_data(tmp_path):
    write_voc(tmp_path)
    splits = voc_spec().load(DatasetRequest(root=tmp_path, params={"size": 16, "workers": 2}))
    assert splits.task == "segmentation" and splits.metric_name == "miou"
    assert splits.num_classes == 21 and len(splits.class_names) == 21
    assert splits.class_names[0] == "background" and splits.class_names[20] == "tvmonitor"
    assert splits.mean == (0.485, 0.456, 0.406) and splits.std == (0.229, 0.224, 0.225)
    assert splits.train.images.shape == (3, 16, 16, 3) and splits.test.images.shape == (2, 16, 16, 3)
    assert splits.train.labels.shape == (3, 16, 16) and splits.test.labels.shape == (2, 16, 16)
    assert splits.train.images.dtype == np.uint8 and splits.train.labels.dtype == np.uint8
    # train follows train.txt, test val.txt, in file order: each image's object class tells which id it is
    order = list(SIZES)
    for part, ids in ((splits.train, TRAIN), (splits.test, VAL)):
        for mask, image_id in zip(part.labels, ids):
            index = order.index(image_id)
            # nearest resizing: only the original mask's values survive, the 255 border included
            assert set(np.unique(mask)) <= {0, index + 1, 15, IGNORE_INDEX}
            assert {index + 1, IGNORE_INDEX} <= set(np.unique(mask))
        # the images carry their id's brightness (40 per index)
        brightness = part.images.reshape(len(part), -1).mean(axis=1)
        np.testing.assert_allclose(brightness, [40 * order.index(i) + 30 for i in ids], atol=6)


def test_voc_preprocessing_is_torchprunes_test_transform(tmp_path):
    """Shorter side to ``resize`` (bilinear image, nearest mask), then the center crop, as torchvision's
    functional resize and center_crop (torchprune's SegRandomResize(513, 513) + SegCenterCrop(513)) compute them."""
    from PIL import Image
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms import functional as F

    folder = write_voc(tmp_path)
    splits = voc_spec().load(DatasetRequest(root=tmp_path, params={"size": 16, "resize": 20}))
    for k, image_id in enumerate(TRAIN):  # 50x24 (odd crop offsets), 40x30, 32x40
        with Image.open(folder / "JPEGImages" / f"{image_id}.jpg") as image, \
                Image.open(folder / "SegmentationClass" / f"{image_id}.png") as mask:
            want_image = F.center_crop(F.resize(image.convert("RGB"), 20), 16)
            want_mask = F.center_crop(F.resize(mask, 20, interpolation=InterpolationMode.NEAREST), 16)
        np.testing.assert_array_equal(splits.train.images[k], np.asarray(want_image))
        np.testing.assert_array_equal(splits.train.labels[k], np.asarray(want_mask))


@pytest.mark.parametrize("where", ["VOCdevkit", "VOCdevkit/VOC2012", "TrainVal"])
def test_voc_root_may_be_the_devkit_the_year_folder_or_the_2011_archive_layout(tmp_path, where):
    if where == "TrainVal":
        write_voc(tmp_path / "TrainVal", year="2011")
        root, year = tmp_path, "2011"
    else:
        write_voc(tmp_path, year="2012")
        root, year = tmp_path / where, "2012"
    request = DatasetRequest(root=root, params={"year": year, "size": 8, "train_subset": 1, "test_subset": 1})
    assert voc_spec().check(request) is None
    splits = voc_spec().load(request)
    assert len(splits.train) == 1 and len(splits.test) == 1


def test_voc_subsets_are_seeded_and_chosen_from_the_lists(tmp_path):
    write_voc(tmp_path)
    params = {"size": 8, "train_subset": 2, "test_subset": 0.5}
    first = voc_spec().load(DatasetRequest(root=tmp_path, seed=3, params=params))
    again = voc_spec().load(DatasetRequest(root=tmp_path, seed=3, params=params))
    assert len(first.train) == 2 and len(first.test) == 1
    np.testing.assert_array_equal(first.train.labels, again.train.labels)


def test_voc_missing_data_names_the_folder_and_the_fix(tmp_path):
    spec = voc_spec()
    with pytest.raises(DataFileError) as info:
        spec.load(DatasetRequest(root=tmp_path))
    message = str(info.value)
    assert str(tmp_path / "VOCdevkit" / "VOC2011") in message
    assert "host.robots.ox.ac.uk" in message and "VOCtrainval_25-May-2011.tar" in message
    assert "--rp-data DIR" in message and "ROBUSTPRUNE_DATA" in message and "{'voc': {'root': DIR}}" in message

    check = spec.check(DatasetRequest(root=tmp_path, params={"year": "2012"}))
    assert check is not None and f"looked for {tmp_path / 'VOCdevkit' / 'VOC2012'}" in check
    assert "VOCtrainval_11-May-2012.tar" in check and "--rp-data DIR" in check
    assert "no data root is set" in spec.check(DatasetRequest())

    write_voc(tmp_path, year="2011")
    assert spec.check(DatasetRequest(root=tmp_path)) is None
    # another year's folder: the message says which year is there
    message = spec.check(DatasetRequest(root=tmp_path, params={"year": "2012"}))
    assert "found VOC2011" in message and "year" in message
    # a part of the layout missing: named with the folder
    (tmp_path / "VOCdevkit" / "VOC2011" / "ImageSets" / "Segmentation" / "val.txt").unlink()
    message = spec.check(DatasetRequest(root=tmp_path))
    assert f"looked for {tmp_path / 'VOCdevkit' / 'VOC2011'}" in message
    assert "ImageSets/Segmentation/val.txt missing" in message
    with pytest.raises(DataFileError, match="val.txt missing"):
        spec.load(DatasetRequest(root=tmp_path))


def test_voc_download_asks_torchvision_for_the_years_archive(tmp_path, monkeypatch):
    import torchvision.datasets

    asked = []

    def fake(root, year, image_set, download):
        asked.append((root, year, download))
        write_voc(Path(root) / "TrainVal", year=year)

    monkeypatch.setattr(torchvision.datasets, "VOCSegmentation", fake)
    request = DatasetRequest(root=tmp_path / "data", download=True, params={"size": 8})
    assert voc_spec().check(request) is None
    splits = voc_spec().load(request)
    assert asked == [(str(tmp_path / "data"), "2011", True)] and len(splits.train) == 3
    voc_spec().load(request)
    assert len(asked) == 1  # on disk now: not fetched again


def test_voc_malformed_files_are_named(tmp_path):
    from PIL import Image

    folder = write_voc(tmp_path)
    params = {"size": 8}
    # a mask of another size than its image
    wrong = folder / "SegmentationClass" / f"{TRAIN[1]}.png"
    Image.fromarray(np.zeros((10, 12), dtype=np.uint8), mode="P").save(wrong)
    with pytest.raises(DataFileError) as info:
        voc_spec().load(DatasetRequest(root=tmp_path, params=params))
    assert str(wrong) in str(info.value) and "mask is 12x10" in str(info.value)
    assert f"{TRAIN[1]}.jpg is 40x30" in str(info.value)

    # an id listed but its image missing
    write_voc(tmp_path)
    (folder / "ImageSets" / "Segmentation" / "val.txt").write_text("2008_000002\n2011_999999\n")
    with pytest.raises(DataFileError) as info:
        voc_spec().load(DatasetRequest(root=tmp_path, params=params))
    assert "image listed in the split but not found" in str(info.value)
    assert str(folder / "JPEGImages" / "2011_999999.jpg") in str(info.value)

    # a recoloured (RGB) mask and a mask value that is no class
    write_voc(tmp_path)
    rgb = folder / "SegmentationClass" / f"{VAL[0]}.png"
    Image.new("RGB", SIZES[VAL[0]]).save(rgb)
    with pytest.raises(DataFileError, match="not a palette") as info:
        voc_spec().load(DatasetRequest(root=tmp_path, params=params))
    assert str(rgb) in str(info.value)
    stray = Image.fromarray(np.full(SIZES[VAL[0]][::-1], 40, dtype=np.uint8), mode="P")
    stray.putpalette(list(range(256)) * 3)  # with a palette Pillow keeps the indices as written
    stray.save(rgb)
    with pytest.raises(DataFileError, match="mask holds value 40"):
        voc_spec().load(DatasetRequest(root=tmp_path, params=params))

    # a truncated image
    write_voc(tmp_path)
    broken = folder / "JPEGImages" / f"{TRAIN[0]}.jpg"
    broken.write_bytes(b"\xff\xd8 truncated")
    with pytest.raises(DataFileError, match="image unreadable") as info:
        voc_spec().load(DatasetRequest(root=tmp_path, params=params))
    assert str(broken) in str(info.value)


def test_voc_parameters_are_checked(tmp_path):
    write_voc(tmp_path)
    with pytest.raises(ValueError, match=r"unknown voc parameter\(s\) crop_size; valid: year, size, resize"):
        voc_spec().load(DatasetRequest(root=tmp_path, params={"crop_size": 8}))
    with pytest.raises(ValueError, match="year must be one of 2011, 2012"):
        voc_spec().load(DatasetRequest(root=tmp_path, params={"year": 2007}))
    with pytest.raises(ValueError, match="resize >= size"):
        voc_spec().load(DatasetRequest(root=tmp_path, params={"size": 16, "resize": 8}))
    with pytest.raises(ValueError, match="size must be a positive integer"):
        voc_spec().load(DatasetRequest(root=tmp_path, params={"size": 0}))
    # a parameter error is not missing data: check leaves it to load (no skip)
    assert voc_spec().check(DatasetRequest(root=tmp_path, params={"crop_size": 8})) is None
    # year may be written as a number
    assert len(voc_spec().load(DatasetRequest(root=tmp_path, params={"year": 2011, "size": 8})).test) == 2
