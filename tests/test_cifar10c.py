"""The CIFAR-10-C parameter family: the published parameters, degradation growing with severity, determinism,
and the reimplemented OpenCV / scikit-image operations checked against those libraries."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from robustprune_plugins.shifts import cifar10c
from robustprune_plugins.shifts.cifar10c import CIFAR10C_PARAMETERS, corrupt_cifar
from robustprune_plugins.shifts.corruptions import ALL, SUBSETS

structural_similarity = pytest.importorskip("skimage.metrics").structural_similarity
HAVE_CV2 = importlib.util.find_spec("cv2") is not None


def _colour_images(count: int = 12) -> list[np.ndarray]:
    """Smooth colour fields with a flat patch of another colour: texture, edges and saturation to lose."""
    rng = np.random.default_rng(1)
    out = []
    for _ in range(count):
        base = ndimage.gaussian_filter(rng.random((32, 32, 3)), (1.5, 1.5, 0))
        base = (base - base.min()) / (base.max() - base.min())
        base[8:20, 10:24] = rng.random(3)
        out.append((base * 255).astype(np.uint8))
    return out


def _digit_images(count: int = 12) -> list[np.ndarray]:
    """The quickstart's images: scikit-learn's 8x8 digits, upsampled to 32x32 grey RGB."""
    from sklearn.datasets import load_digits

    digits = load_digits().images[:count] / 16.0
    out = []
    for digit in digits:
        big = Image.fromarray((digit * 255).astype(np.uint8)).resize((32, 32), Image.Resampling.BILINEAR)
        out.append(np.repeat(np.asarray(big)[..., None], 3, axis=-1))
    return out


COLOUR, DIGITS = _colour_images(), _digit_images()


def _mean_ssim(name: str, severity: int, images: list[np.ndarray]) -> float:
    return float(np.mean([structural_similarity(image, corrupt_cifar(name, image, severity, seed),
                                                channel_axis=-1, data_range=255)
                          for seed, image in enumerate(images)]))


def _ssims(name: str, images: list[np.ndarray]) -> dict[int, float]:
    return {severity: _mean_ssim(name, severity, images) for severity in range(1, 6)}


# --------------------------------------------------------------------------- the published table


def test_every_corruption_has_five_published_severities_and_the_plugins_names():
    assert set(CIFAR10C_PARAMETERS) == set(ALL) and len(ALL) == 19
    assert all(len(values) == 5 for values in CIFAR10C_PARAMETERS.values())
    assert SUBSETS["validation"] == ("speckle_noise", "gaussian_blur", "spatter", "saturate")


@pytest.mark.skipif(not HAVE_CV2, reason="imagecorruptions' name lists import OpenCV")
def test_names_and_subsets_match_imagecorruptions():
    from imagecorruptions import get_corruption_names

    assert tuple(get_corruption_names("all")) == ALL
    for subset, members in SUBSETS.items():
        assert members == tuple(get_corruption_names(subset)), subset


@pytest.mark.parametrize(("name", "severity", "value"), [
    # spot values from Hendrycks & Dietterich's CIFAR-10-C generation script
    ("gaussian_noise", 1, 0.04), ("gaussian_noise", 5, 0.10),
    ("shot_noise", 1, 500), ("shot_noise", 5, 50),
    ("impulse_noise", 3, 0.03), ("speckle_noise", 5, 0.2),
    ("gaussian_blur", 1, 0.4), ("glass_blur", 5, (0.4, 1, 2)),
    ("defocus_blur", 4, (1, 0.2)), ("motion_blur", 5, (9, 2.5)), ("zoom_blur", 3, 1.16),
    ("fog", 1, (0.2, 3)), ("fog", 5, (1.5, 1.75)), ("frost", 3, (0.9, 0.4)),
    ("snow", 5, (0.3, 0.3, 1.25, 0.65, 14, 12, 0.8)), ("spatter", 4, (0.65, 0.1, 0.7, 0.69, 0.6, 1)),
    ("contrast", 1, 0.75), ("contrast", 5, 0.15), ("brightness", 5, 0.3), ("saturate", 3, (1.5, 0)),
    ("jpeg_compression", 1, 80), ("jpeg_compression", 5, 40), ("pixelate", 5, 0.65),
    ("elastic_transform", 3, (32 * 0.08, 32 * 0.06, 32 * 0.06)),
])
def test_parameters_are_the_published_ones(name, severity, value):
    assert CIFAR10C_PARAMETERS[name][severity - 1] == pytest.approx(value)


# --------------------------------------------------------------------------- what each corruption does


@pytest.mark.parametrize("name", ALL)
def test_deterministic_per_seed_uint8_and_shape_kept(name):
    image = COLOUR[0]
    for severity in (1, 3, 5):
        first = corrupt_cifar(name, image, severity, seed=11)
        assert first.dtype == np.uint8 and first.shape == image.shape
        assert np.array_equal(first, corrupt_cifar(name, image, severity, seed=11))
        np.random.seed(5)  # numpy's global state plays no part
        assert np.array_equal(first, corrupt_cifar(name, image, severity, seed=11))
        assert not np.array_equal(first, image) or (name, severity) == ("saturate", 1), f"{name}@{severity}"


RANDOM = ("gaussian_noise", "shot_noise", "impulse_noise", "speckle_noise", "glass_blur", "motion_blur", "snow",
          "frost", "fog", "spatter", "elastic_transform")


@pytest.mark.parametrize("name", RANDOM)
def test_random_corruptions_draw_per_image_seed(name):
    assert not np.array_equal(corrupt_cifar(name, COLOUR[1], 3, seed=1), corrupt_cifar(name, COLOUR[1], 3, seed=2))


# the published parameters grow the damage from severity 1 to 3 to 5 for these (mean SSIM against the clean
# image falls), on colour images and on the quickstart's digits
MONOTONE = ("gaussian_noise", "shot_noise", "impulse_noise", "speckle_noise", "gaussian_blur", "defocus_blur",
            "motion_blur", "zoom_blur", "fog", "frost", "snow", "contrast", "brightness", "jpeg_compression")


@pytest.mark.parametrize("name", MONOTONE)
def test_degradation_grows_from_severity_1_to_3_to_5(name):
    for images in (COLOUR, DIGITS):
        ssim = _ssims(name, images)
        assert ssim[1] > ssim[3] > ssim[5], f"{name}: mean SSIM by severity {ssim}"


def test_pixelate_degrades_with_severity_on_digits_and_from_3_to_5_on_colour():
    # on sharp colour patches the 30-pixel grid of severity 1 (int(32 * 0.95)) misaligns edges more than the
    # 27-pixel grid of severity 3; coarser grids then win
    digits = _ssims("pixelate", DIGITS)
    assert digits[1] > digits[3] > digits[5], digits
    colour = _ssims("pixelate", COLOUR)
    assert colour[3] > colour[4] > colour[5], colour


def test_saturate_desaturates_at_1_and_2_and_oversaturates_from_3_to_5():
    # the published factors: x0.3, x0.1, then x1.5, x2 + 0.1, x2.5 + 0.2 (not one direction)
    ssim = _ssims("saturate", COLOUR)
    assert ssim[1] > ssim[2] and ssim[3] > ssim[4] > ssim[5], ssim
    hsv = cifar10c._rgb_to_hsv(COLOUR[2] / 255.0)
    for severity, direction in ((1, -1), (2, -1), (4, 1), (5, 1)):
        shifted = cifar10c._rgb_to_hsv(corrupt_cifar("saturate", COLOUR[2], severity, 0) / 255.0)
        assert np.sign(shifted[..., 1].mean() - hsv[..., 1].mean()) == direction, severity


def test_glass_blur_two_shuffle_passes_degrade_more_than_one():
    # severities 1-3 shuffle once (blur 0.05, 0.25, 0.4), 4-5 twice: the extra pass dominates
    for images in (COLOUR, DIGITS):
        ssim = _ssims("glass_blur", images)
        assert max(ssim[4], ssim[5]) < min(ssim[1], ssim[2], ssim[3]), ssim


def test_spatter_water_then_mud_each_grows():
    # severities 1-3 are water drops of growing spread, 4-5 mud of growing size
    for images in (COLOUR, DIGITS):
        ssim = _ssims("spatter", images)
        assert ssim[1] > ssim[2] > ssim[3] and ssim[4] > ssim[5], ssim


def test_elastic_transform_warps_at_every_severity():
    # not monotone by SSIM: the published affine jitter shrinks with severity (2.56 -> 0.96 px) while the smooth
    # displacement field grows (scale 0 at severity 1); every severity warps the images
    for severity in range(1, 6):
        assert _mean_ssim("elastic_transform", severity, COLOUR) < 0.9, severity


def test_glass_blur_moves_pixels_as_the_published_script_did():
    # its `x[h, w], x[h', w'] = x[h', w'], x[h, w]` assigns numpy views: a copy from the neighbour, not a swap
    image, seed = COLOUR[6], 21
    for severity in (2, 5):
        sigma, delta, iterations = CIFAR10C_PARAMETERS["glass_blur"][severity - 1]
        rng = np.random.default_rng(seed)
        x = (np.clip(cifar10c._blur(image / 255.0, sigma), 0, 1) * 255).astype(np.uint8)
        rows, cols = range(32 - delta, delta, -1), range(32 - delta, delta, -1)
        for _ in range(iterations):
            offsets = rng.integers(-delta, delta, size=(len(rows), len(cols), 2))
            for i, h in enumerate(rows):
                for j, w in enumerate(cols):
                    dx, dy = offsets[i, j]
                    x[h, w], x[h + dy, w + dx] = x[h + dy, w + dx], x[h, w]  # the published statement, verbatim
        expected = (np.clip(cifar10c._blur(x / 255.0, sigma), 0, 1) * 255).astype(np.uint8)
        assert np.array_equal(corrupt_cifar("glass_blur", image, severity, seed), expected)


def test_contrast_keeps_each_channels_mean():
    out = corrupt_cifar("contrast", COLOUR[3], 5, 0) / 255.0
    assert np.allclose(out.mean(axis=(0, 1)), (COLOUR[3] / 255.0).mean(axis=(0, 1)), atol=2 / 255)


def test_larger_images_work_with_the_same_parameters():
    image = np.asarray(Image.fromarray(COLOUR[0]).resize((48, 40)))
    for name in ALL:
        out = corrupt_cifar(name, image, 3, 0)
        assert out.shape == image.shape and out.dtype == np.uint8, name


def test_bad_input_is_refused_with_what_was_wrong():
    with pytest.raises(ValueError, match="severity must be 1..5"):
        corrupt_cifar("fog", COLOUR[0], 6, 0)
    with pytest.raises(ValueError, match="uint8 \\(H, W, 3\\)"):
        corrupt_cifar("fog", COLOUR[0].astype(np.float32), 3, 0)
    with pytest.raises(ValueError, match="unknown corruption 'fgo'"):
        corrupt_cifar("fgo", COLOUR[0], 3, 0)


# --------------------------------------------------------------------------- our operations against the libraries


def test_hsv_round_trip_matches_scikit_image():
    from skimage.color import hsv2rgb, rgb2hsv

    x = COLOUR[4] / 255.0
    assert np.allclose(cifar10c._rgb_to_hsv(x), rgb2hsv(x), atol=1e-12)
    assert np.allclose(cifar10c._hsv_to_rgb(rgb2hsv(x)), hsv2rgb(rgb2hsv(x)), atol=1e-12)


@pytest.mark.skipif(not HAVE_CV2, reason="compares with OpenCV")
def test_opencv_operations_match_opencv():
    import cv2

    rng = np.random.default_rng(3)
    grey = (rng.random((32, 32)) * 40).astype(np.uint8)
    assert np.array_equal(cifar10c._equalize_histogram(grey), cv2.equalizeHist(grey))
    # the defocus disk: OpenCV blurs the aliased disk with a 3x3 Gaussian
    for radius, alias in CIFAR10C_PARAMETERS["defocus_blur"]:
        extent = np.arange(-8, 9)
        xx, yy = np.meshgrid(extent, extent)
        disk = ((xx**2 + yy**2) <= radius**2).astype(np.float32)
        expected = cv2.GaussianBlur(disk / disk.sum(), ksize=(3, 3), sigmaX=alias)
        assert np.allclose(cifar10c._disk(radius, alias), expected, atol=1e-6)
    # frost's photographs are shrunk as OpenCV's INTER_LINEAR does (sampling, no smoothing)
    photo = rng.random((120, 90, 3))
    assert np.allclose(cifar10c._linear_resize(photo, 0.2),
                       cv2.resize(photo.astype(np.float32), (0, 0), fx=0.2, fy=0.2), atol=1e-6)
    # the affine warp of elastic_transform
    source = np.float32([[26, 26], [26, 6], [6, 6]])
    target = source + rng.uniform(-2, 2, source.shape).astype(np.float32)
    matrix = cv2.getAffineTransform(source, target)
    assert np.allclose(cifar10c._affine_from_points(source.astype(float), target.astype(float)), matrix, atol=1e-9)
    # Canny: the same operator up to tie-breaking at a few pixels
    liquid = np.clip(ndimage.gaussian_filter(rng.normal(0.65, 0.3, (32, 32)), 1), 0, 1)
    liquid[liquid < 0.69] = 0
    liquid8 = (liquid * 255).astype(np.uint8)
    ours, theirs = cifar10c._canny(liquid8, 50, 150), cv2.Canny(liquid8, 50, 150) > 0
    assert (ours != theirs).mean() < 0.05 and abs(int(ours.sum()) - int(theirs.sum())) < 0.1 * theirs.sum()


@pytest.mark.skipif(not HAVE_CV2, reason="imagecorruptions imports OpenCV")
def test_motion_blur_matches_imagemagicks_kernel_as_imagecorruptions_implements_it():
    from imagecorruptions.corruptions import _motion_blur

    x = COLOUR[5] / 255.0
    for radius, sigma in CIFAR10C_PARAMETERS["motion_blur"]:
        for angle in (-40.0, 0.0, 30.0):
            assert np.allclose(cifar10c._motion_blur(x, radius, sigma, angle), _motion_blur(x, radius, sigma, angle))
