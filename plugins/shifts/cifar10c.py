"""The 19 corruptions with the parameters of CIFAR-10-C, calibrated for 32x32 images, without OpenCV.

Hendrycks & Dietterich made CIFAR-10-C with their own parameters for 32x32
images (their CIFAR generation script states them); ImageNet-C's parameters,
which ``imagecorruptions`` uses, are made for 224x224 images and destroy some
32x32 images outright (fog, frost and contrast at severity 3). The values in
:data:`CIFAR10C_PARAMETERS` are that script's, per severity 1-5; the code is
ours, written on numpy, scipy and Pillow only, so this family runs where
OpenCV cannot be imported (a slim container without libGL).

Where the published script used OpenCV or ImageMagick, the operation is
reimplemented from its definition: ImageMagick's motion blur (a one-sided
Gaussian along a line), OpenCV's affine warp, Canny edges, distance
transform and histogram equalisation (for ``spatter``). The corruptions are
the same operations with the same parameters; pixel values differ slightly
from the published arrays (other random draws, other edge detector
details), and the published arrays win where they are on disk.

Every corruption draws from a generator seeded per image
(``numpy.random.default_rng(seed)``), never from numpy's global state, so a
set is the same whatever the worker count. Images of any size work; the
parameters stay those calibrated for 32x32 pixels (displacements, blur radii
and the frost photographs' scale in pixels; fog's fractal is made as large as
the image, with the published roughness).
"""

from __future__ import annotations

import functools
import importlib.util
import io
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
from scipy import ndimage

from robustprune import MissingDependencyError

__all__ = ["CIFAR10C_PARAMETERS", "corrupt_cifar", "frost_folder"]

# Per corruption, the parameter of severities 1..5, as the CIFAR-10-C generation script states them.
CIFAR10C_PARAMETERS: dict[str, tuple[object, ...]] = {
    "gaussian_noise": (0.04, 0.06, 0.08, 0.09, 0.10),  # std of additive noise on [0, 1]
    "shot_noise": (500, 250, 100, 75, 50),  # Poisson rate per unit intensity
    "impulse_noise": (0.01, 0.02, 0.03, 0.05, 0.07),  # salt-and-pepper amount
    "speckle_noise": (0.06, 0.10, 0.12, 0.16, 0.20),  # std of multiplicative noise
    "gaussian_blur": (0.4, 0.6, 0.7, 0.8, 1.0),  # sigma in pixels
    "glass_blur": ((0.05, 1, 1), (0.25, 1, 1), (0.4, 1, 1), (0.25, 1, 2), (0.4, 1, 2)),  # sigma, delta, iterations
    "defocus_blur": ((0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1)),  # disk radius, alias blur
    "motion_blur": ((6, 1), (6, 1.5), (6, 2), (8, 2), (9, 2.5)),  # radius, sigma
    "zoom_blur": (1.06, 1.11, 1.16, 1.21, 1.26),  # zoom factors 1, 1.01, ... up to (excluding) this
    "fog": ((0.2, 3), (0.5, 3), (0.75, 2.5), (1, 2), (1.5, 1.75)),  # strength, fractal wibble decay
    "frost": ((1, 0.2), (1, 0.3), (0.9, 0.4), (0.85, 0.4), (0.75, 0.45)),  # image weight, frost weight
    "snow": (
        (0.1, 0.2, 1, 0.6, 8, 3, 0.95),
        (0.1, 0.2, 1, 0.5, 10, 4, 0.9),
        (0.15, 0.3, 1.75, 0.55, 10, 4, 0.9),
        (0.25, 0.3, 2.25, 0.6, 12, 6, 0.85),
        (0.3, 0.3, 1.25, 0.65, 14, 12, 0.8),
    ),  # flake mean, std, zoom, threshold, blur radius, blur sigma, image weight
    "spatter": (
        (0.62, 0.1, 0.7, 0.7, 0.5, 0),
        (0.65, 0.1, 0.8, 0.7, 0.5, 0),
        (0.65, 0.3, 1, 0.69, 0.5, 0),
        (0.65, 0.1, 0.7, 0.69, 0.6, 1),
        (0.65, 0.1, 0.5, 0.68, 0.6, 1),
    ),  # liquid mean, std, blur sigma, threshold, intensity, mud (1) or water (0)
    "contrast": (0.75, 0.5, 0.4, 0.3, 0.15),  # contrast factor
    "brightness": (0.05, 0.1, 0.15, 0.2, 0.3),  # added to HSV value
    "saturate": ((0.3, 0), (0.1, 0), (1.5, 0), (2, 0.1), (2.5, 0.2)),  # HSV saturation factor, offset
    "jpeg_compression": (80, 65, 58, 50, 40),  # JPEG quality
    "pixelate": (0.95, 0.9, 0.85, 0.75, 0.65),  # downsampling factor
    "elastic_transform": (
        (0.0, 0.0, 2.56),
        (1.6, 6.4, 2.24),
        (2.56, 1.92, 1.92),
        (3.2, 1.28, 1.6),
        (3.2, 0.96, 0.96),
    ),  # displacement scale, displacement smoothness (sigma), affine jitter; in pixels (fractions of 32)
}

_Image = np.ndarray  # float (H, W, 3) in [0, 1] inside this module, uint8 at its edges


def corrupt_cifar(name: str, image: np.ndarray, severity: int, seed: int) -> np.ndarray:
    """Corrupt one uint8 ``(H, W, 3)`` image with CIFAR-10-C's parameters for ``severity`` 1-5, deterministically."""
    if name not in _CORRUPTIONS:
        raise ValueError(f"unknown corruption {name!r}; known: {', '.join(sorted(_CORRUPTIONS))}")
    severity = int(severity)
    if not 1 <= severity <= 5:
        raise ValueError(f"severity must be 1..5, got {severity}")
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected a uint8 (H, W, 3) image, got {image.dtype} {image.shape}")
    rng = np.random.default_rng(seed % 2**64)
    out = _CORRUPTIONS[name](image, CIFAR10C_PARAMETERS[name][severity - 1], rng)
    # truncation, not rounding, as the published arrays were quantised
    return (np.clip(out, 0.0, 1.0) * 255).astype(np.uint8)


# --------------------------------------------------------------------------- helpers


def _float(image: np.ndarray) -> _Image:
    return image.astype(np.float64) / 255.0


def _blur(x: np.ndarray, sigma: float, mode: str = "nearest", truncate: float = 4.0) -> np.ndarray:
    """A Gaussian blur over the spatial axes only (scikit-image's ``gaussian`` defaults: nearest edges)."""
    if sigma <= 0:
        return x.astype(np.float64)
    sigmas = (sigma, sigma, 0.0) if x.ndim == 3 else sigma
    return ndimage.gaussian_filter(x.astype(np.float64), sigma=sigmas, mode=mode, truncate=truncate)


def _gray(x: _Image) -> np.ndarray:
    """Luma as OpenCV's RGB-to-gray conversion computes it."""
    return 0.299 * x[..., 0] + 0.587 * x[..., 1] + 0.114 * x[..., 2]


def _rgb_to_hsv(x: _Image) -> _Image:
    maximum, minimum = x.max(axis=-1), x.min(axis=-1)
    spread = maximum - minimum
    safe = np.where(spread == 0, 1.0, spread)
    r, g, b = x[..., 0], x[..., 1], x[..., 2]
    hue = np.where(maximum == r, ((g - b) / safe) % 6, np.where(maximum == g, (b - r) / safe + 2, (r - g) / safe + 4))
    hue = np.where(spread == 0, 0.0, hue / 6.0)
    saturation = np.where(maximum == 0, 0.0, spread / np.where(maximum == 0, 1.0, maximum))
    return np.stack([hue, saturation, maximum], axis=-1)


def _hsv_to_rgb(x: _Image) -> _Image:
    h, s, v = x[..., 0] * 6.0, x[..., 1], x[..., 2]
    sector = np.floor(h).astype(int) % 6
    f = h - np.floor(h)
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    choices = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)]
    out = np.zeros(x.shape)
    for index, (r, g, b) in enumerate(choices):
        where = sector == index
        out[where] = np.stack([r[where], g[where], b[where]], axis=-1)
    return out


def _clipped_zoom(x: np.ndarray, factor: float) -> np.ndarray:
    """Zoom into the centre by ``factor`` and crop back to the input's size."""
    height, width = x.shape[:2]
    crop_h, crop_w = int(np.ceil(height / factor)), int(np.ceil(width / factor))
    top, left = (height - crop_h) // 2, (width - crop_w) // 2
    zoom = (factor, factor) + (1,) * (x.ndim - 2)
    zoomed = ndimage.zoom(x[top : top + crop_h, left : left + crop_w], zoom, order=1)
    trim_h, trim_w = (zoomed.shape[0] - height) // 2, (zoomed.shape[1] - width) // 2
    return zoomed[trim_h : trim_h + height, trim_w : trim_w + width]


def _motion_blur(x: np.ndarray, radius: float, sigma: float, angle: float) -> np.ndarray:
    """ImageMagick's motion blur: a one-sided Gaussian of ``2 * ceil(radius) + 1`` taps along ``angle`` degrees,
    edges repeated."""
    width = 2 * math.ceil(radius) + 1
    taps = np.exp(-(np.arange(width) ** 2) / (2.0 * sigma * sigma))
    taps /= taps.sum()
    height, cols = x.shape[:2]
    cos, sin = math.cos(math.radians(angle)), math.sin(math.radians(angle))
    pad = width
    padded = np.pad(x, [(pad, pad), (pad, pad)] + [(0, 0)] * (x.ndim - 2), mode="edge")
    out = np.zeros(x.shape, dtype=np.float64)
    for i, weight in enumerate(taps):
        dx, dy = math.ceil(i * cos - 0.5), math.ceil(i * sin - 0.5)
        out += weight * padded[pad + dy : pad + dy + height, pad + dx : pad + dx + cols]
    return out


def _plasma_fractal(size: int, decay: float, rng: np.random.Generator) -> np.ndarray:
    """A ``size`` x ``size`` diamond-square height map in [0, 1] (``size`` a power of two); the random
    perturbation starts at 100 squared and shrinks by ``decay`` per level, as in the published script."""
    height_map = np.zeros((size, size))
    step, wibble = size, 100.0

    def perturbed_mean(total: np.ndarray) -> np.ndarray:
        return total / 4 + wibble * rng.uniform(-wibble, wibble, total.shape)

    while step >= 2:
        half = step // 2
        corners = height_map[0:size:step, 0:size:step]
        square = corners + np.roll(corners, -1, axis=0)
        square = square + np.roll(square, -1, axis=1)
        height_map[half:size:step, half:size:step] = perturbed_mean(square)
        centres = height_map[half:size:step, half:size:step]
        corners = height_map[0:size:step, 0:size:step]
        horizontal = centres + np.roll(centres, 1, axis=0) + corners + np.roll(corners, -1, axis=1)
        height_map[0:size:step, half:size:step] = perturbed_mean(horizontal)
        vertical = centres + np.roll(centres, 1, axis=1) + corners + np.roll(corners, -1, axis=0)
        height_map[half:size:step, 0:size:step] = perturbed_mean(vertical)
        step //= 2
        wibble /= decay
    height_map -= height_map.min()
    return height_map / height_map.max()


def frost_folder() -> Path:
    """The frost photographs shipped with ``imagecorruptions`` (found without importing it: that imports
    OpenCV)."""
    spec = importlib.util.find_spec("imagecorruptions")
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependencyError("frost needs the frost photographs of the imagecorruptions package, which "
                                     "is not installed; install it: pip install imagecorruptions-imaug")
    return Path(next(iter(spec.submodule_search_locations))) / "frost"


def _linear_resize(image: np.ndarray, scale: float) -> np.ndarray:
    """OpenCV's ``resize(..., fx=scale, fy=scale)`` with ``INTER_LINEAR``: output pixel x samples the input at
    (x + 0.5) / scale - 0.5, bilinearly, without smoothing first (shrinking keeps the texture's grain)."""
    height, width = image.shape[:2]
    out_h, out_w = max(1, round(height * scale)), max(1, round(width * scale))
    rows = np.clip((np.arange(out_h) + 0.5) / scale - 0.5, 0, height - 1)
    cols = np.clip((np.arange(out_w) + 0.5) / scale - 0.5, 0, width - 1)
    grid = np.meshgrid(rows, cols, indexing="ij")
    return np.stack([ndimage.map_coordinates(image[..., d], grid, order=1) for d in range(image.shape[2])],
                    axis=-1)


@functools.lru_cache(maxsize=8)
def _frost_image(index: int, scale: float) -> np.ndarray:
    from PIL import Image

    names = ("frost1.png", "frost2.png", "frost3.png", "frost4.jpg", "frost5.jpg", "frost6.jpg")
    path = frost_folder() / names[index]
    with Image.open(path) as opened:
        picture = np.asarray(opened.convert("RGB"), dtype=np.float64) / 255.0
    return _linear_resize(picture, scale)


# --------------------------------------------------------------------------- noise


def _gaussian_noise(image: np.ndarray, c: float, rng: np.random.Generator) -> _Image:
    x = _float(image)
    return x + rng.normal(scale=c, size=x.shape)


def _shot_noise(image: np.ndarray, c: float, rng: np.random.Generator) -> _Image:
    return rng.poisson(_float(image) * c) / c


def _impulse_noise(image: np.ndarray, c: float, rng: np.random.Generator) -> _Image:
    x = _float(image)
    flipped = rng.random(x.shape) < c  # each value, channels independently, as scikit-image's "s&p" mode
    salt = rng.random(x.shape) < 0.5
    x[flipped & salt] = 1.0
    x[flipped & ~salt] = 0.0
    return x


def _speckle_noise(image: np.ndarray, c: float, rng: np.random.Generator) -> _Image:
    x = _float(image)
    return x + x * rng.normal(scale=c, size=x.shape)


# --------------------------------------------------------------------------- blur


def _gaussian_blur(image: np.ndarray, c: float, rng: np.random.Generator) -> _Image:
    return _blur(_float(image), c)


def _glass_blur(image: np.ndarray, c: tuple[float, int, int], rng: np.random.Generator) -> _Image:
    sigma, delta, iterations = c
    blurred = (np.clip(_blur(_float(image), sigma), 0, 1) * 255).astype(np.uint8)
    height, width = blurred.shape[:2]
    # pixel indices moved in a list, then gathered once: ~50x faster than moving pixels one by one
    order = list(range(height * width))
    rows = range(height - delta, delta, -1)
    cols = range(width - delta, delta, -1)
    for _ in range(iterations):
        # offsets in [-delta, delta): the published script's randint excludes its upper bound
        offsets = rng.integers(-delta, delta, size=(len(rows), len(cols), 2)).tolist()
        for i, h in enumerate(rows):
            for j, w in enumerate(cols):
                dx, dy = offsets[i][j]
                # the script's "swap" `x[h, w], x[h', w'] = x[h', w'], x[h, w]` assigns numpy views: it copies
                # the neighbour into (h, w) and leaves the neighbour as it was; the published arrays did that
                order[h * width + w] = order[(h + dy) * width + (w + dx)]
    shuffled = blurred.reshape(height * width, -1)[order].reshape(blurred.shape)
    return _blur(shuffled / 255.0, sigma)


def _disk(radius: float, alias_blur: float) -> np.ndarray:
    extent = np.arange(-8, 9) if radius <= 8 else np.arange(-math.ceil(radius), math.ceil(radius) + 1)
    ksize = 3 if radius <= 8 else 5
    xx, yy = np.meshgrid(extent, extent)
    disk = ((xx**2 + yy**2) <= radius**2).astype(np.float64)
    disk /= disk.sum()
    # anti-aliasing: a ksize x ksize Gaussian of sigma alias_blur, reflected edges (OpenCV's default border)
    taps = np.exp(-((np.arange(ksize) - ksize // 2) ** 2) / (2 * alias_blur**2))
    taps /= taps.sum()
    return ndimage.correlate(disk, np.outer(taps, taps), mode="mirror")


def _defocus_blur(image: np.ndarray, c: tuple[float, float], rng: np.random.Generator) -> _Image:
    kernel = _disk(*c)
    x = _float(image)
    return np.stack([ndimage.correlate(x[..., d], kernel, mode="mirror") for d in range(3)], axis=-1)


def _motion_blur_image(image: np.ndarray, c: tuple[float, float], rng: np.random.Generator) -> _Image:
    radius, sigma = c
    return _motion_blur(_float(image), radius, sigma, rng.uniform(-45, 45))


def _zoom_blur(image: np.ndarray, c: float, rng: np.random.Generator) -> _Image:
    x = _float(image)
    factors = np.arange(1, c, 0.01)
    out = np.zeros_like(x)
    for factor in factors:
        out += _clipped_zoom(x, factor)
    return (x + out) / (len(factors) + 1)


# --------------------------------------------------------------------------- weather


def _snow(image: np.ndarray, c: tuple[float, ...], rng: np.random.Generator) -> _Image:
    mean, std, zoom, threshold, radius, sigma, weight = c
    x = _float(image)
    height, width = x.shape[:2]
    flakes = _clipped_zoom(rng.normal(loc=mean, scale=std, size=(height, width)), zoom)
    flakes[flakes < threshold] = 0
    flakes = (np.clip(flakes, 0, 1) * 255).astype(np.uint8) / 255.0  # an 8-bit layer, as the script's PNG
    flakes = _motion_blur(flakes, radius, sigma, rng.uniform(-135, -45))[..., None]
    x = weight * x + (1 - weight) * np.maximum(x, _gray(x)[..., None] * 1.5 + 0.5)
    return x + flakes + np.rot90(flakes, k=2)


def _frost(image: np.ndarray, c: tuple[float, float], rng: np.random.Generator) -> _Image:
    image_weight, frost_weight = c
    height, width = image.shape[:2]
    index = int(rng.integers(5))  # the published script draws from the first five photographs
    frost = _frost_image(index, 0.2)
    if frost.shape[0] <= height or frost.shape[1] <= width:  # images larger than the 0.2-scaled photographs
        frost = _frost_image(index, 0.2 * (1 + max(height / frost.shape[0], width / frost.shape[1])))
    top = int(rng.integers(0, frost.shape[0] - height))
    left = int(rng.integers(0, frost.shape[1] - width))
    return image_weight * _float(image) + frost_weight * frost[top : top + height, left : left + width]


def _fog(image: np.ndarray, c: tuple[float, float], rng: np.random.Generator) -> _Image:
    strength, decay = c
    x = _float(image)
    height, width = x.shape[:2]
    size = max(32, 1 << (max(height, width) - 1).bit_length())
    peak = x.max()
    x = x + strength * _plasma_fractal(size, decay, rng)[:height, :width, None]
    return x * peak / (peak + strength)


def _brightness(image: np.ndarray, c: float, rng: np.random.Generator) -> _Image:
    hsv = _rgb_to_hsv(_float(image))
    hsv[..., 2] = np.clip(hsv[..., 2] + c, 0, 1)
    return _hsv_to_rgb(hsv)


# --------------------------------------------------------------------------- digital


def _contrast(image: np.ndarray, c: float, rng: np.random.Generator) -> _Image:
    x = _float(image)
    means = x.mean(axis=(0, 1), keepdims=True)
    return (x - means) * c + means


def _saturate(image: np.ndarray, c: tuple[float, float], rng: np.random.Generator) -> _Image:
    hsv = _rgb_to_hsv(_float(image))
    hsv[..., 1] = np.clip(hsv[..., 1] * c[0] + c[1], 0, 1)
    return _hsv_to_rgb(hsv)


def _jpeg_compression(image: np.ndarray, c: int, rng: np.random.Generator) -> _Image:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, "JPEG", quality=c)
    with Image.open(buffer) as decoded:
        return _float(np.asarray(decoded.convert("RGB")))


def _pixelate(image: np.ndarray, c: float, rng: np.random.Generator) -> _Image:
    from PIL import Image

    height, width = image.shape[:2]
    small = Image.fromarray(image).resize((int(width * c), int(height * c)), Image.Resampling.BOX)
    return _float(np.asarray(small.resize((width, height), Image.Resampling.BOX)))


def _affine_from_points(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The 2x3 matrix that maps three (x, y) points onto three others."""
    design = np.hstack([source, np.ones((3, 1))])
    return np.linalg.solve(design, target).T


def _elastic_transform(image: np.ndarray, c: tuple[float, float, float], rng: np.random.Generator) -> _Image:
    scale, smoothness, jitter = c
    x = _float(image)
    height, width = x.shape[:2]
    # a random affine warp: three points around the centre, each moved by up to `jitter` pixels
    centre = np.array([width // 2, height // 2], dtype=np.float64)
    arm = min(height, width) // 3
    points = np.array([centre + arm, [centre[0] + arm, centre[1] - arm], centre - arm])
    moved = points + rng.uniform(-jitter, jitter, size=points.shape)
    forward = np.vstack([_affine_from_points(points, moved), [0, 0, 1]])
    inverse = np.linalg.inv(forward)  # each output pixel reads from where the forward map came from
    rows, cols = np.mgrid[0:height, 0:width].astype(np.float64)
    src_x = inverse[0, 0] * cols + inverse[0, 1] * rows + inverse[0, 2]
    src_y = inverse[1, 0] * cols + inverse[1, 1] * rows + inverse[1, 2]
    x = np.stack([ndimage.map_coordinates(x[..., d], [src_y, src_x], order=1, mode="mirror") for d in range(3)],
                 axis=-1)
    # then a smooth random displacement field
    dx = _blur(rng.uniform(-1, 1, size=(height, width)), smoothness, mode="reflect", truncate=3) * scale
    dy = _blur(rng.uniform(-1, 1, size=(height, width)), smoothness, mode="reflect", truncate=3) * scale
    return np.stack([ndimage.map_coordinates(x[..., d], [rows + dy, cols + dx], order=1, mode="reflect")
                     for d in range(3)], axis=-1)


# --------------------------------------------------------------------------- spatter


def _canny(image: np.ndarray, low: float, high: float) -> np.ndarray:
    """Canny edges as OpenCV's default computes them: 3x3 Sobel, L1 gradient magnitude, no pre-smoothing,
    non-maximum suppression in four directions, hysteresis between ``low`` and ``high``."""
    x = image.astype(np.float64)
    gx = ndimage.sobel(x, axis=1, mode="mirror")
    gy = ndimage.sobel(x, axis=0, mode="mirror")
    magnitude = np.abs(gx) + np.abs(gy)
    angle = (np.rad2deg(np.arctan2(gy, gx)) + 180.0) % 180.0
    padded = np.pad(magnitude, 1)
    height, width = x.shape
    keep = np.zeros_like(magnitude, dtype=bool)
    for lower, upper, (dy, dx) in ((0, 22.5, (0, 1)), (157.5, 180.1, (0, 1)), (22.5, 67.5, (1, 1)),
                                   (67.5, 112.5, (1, 0)), (112.5, 157.5, (1, -1))):
        band = (angle >= lower) & (angle < upper)
        ahead = padded[1 + dy : 1 + dy + height, 1 + dx : 1 + dx + width]
        behind = padded[1 - dy : 1 - dy + height, 1 - dx : 1 - dx + width]
        keep |= band & (magnitude > ahead) & (magnitude >= behind)
    weak = keep & (magnitude > low)
    labels, _ = ndimage.label(weak, structure=np.ones((3, 3)))
    strong_labels = np.unique(labels[weak & (magnitude > high)])
    return np.isin(labels, strong_labels[strong_labels > 0])


def _equalize_histogram(image: np.ndarray) -> np.ndarray:
    """OpenCV's ``equalizeHist`` for a uint8 image."""
    counts = np.bincount(image.ravel(), minlength=256)
    cumulative = np.cumsum(counts)
    first = cumulative[counts > 0][0]
    total = image.size
    if total == first:
        return image.copy()
    table = np.clip(np.round((cumulative - first) * 255.0 / (total - first)), 0, 255).astype(np.uint8)
    return table[image]


def _spatter(image: np.ndarray, c: tuple[float, ...], rng: np.random.Generator) -> _Image:
    mean, std, sigma, threshold, intensity, mud = c
    x = _float(image)
    height, width = x.shape[:2]
    liquid = _blur(rng.normal(loc=mean, scale=std, size=(height, width)), sigma)
    liquid[liquid < threshold] = 0
    if not mud:  # water: pale turquoise drops with lit edges
        liquid8 = (liquid * 255).astype(np.uint8)
        edges = _canny(liquid8, 50, 150)
        if edges.any():
            distance = ndimage.distance_transform_edt(~edges)
        else:
            distance = np.full(liquid.shape, 20.0)
        distance = np.minimum(distance, 20)
        distance = ndimage.uniform_filter(distance, size=3, mode="mirror").astype(np.uint8)
        distance = _equalize_histogram(distance)
        emboss = np.array([[-2, -1, 0], [-1, 1, 1], [0, 1, 2]], dtype=np.float64)
        distance = np.clip(np.round(ndimage.correlate(distance.astype(np.float64), emboss, mode="mirror")), 0, 255)
        distance = ndimage.uniform_filter(distance, size=3, mode="mirror").astype(np.uint8).astype(np.float64)
        layer = liquid * distance
        peak = layer.max()
        layer = layer / peak * intensity if peak > 0 else layer
        colour = np.array([175, 238, 238]) / 255.0
        return x + layer[..., None] * colour
    drops = _blur((liquid > threshold).astype(np.float64), intensity)
    drops[drops < 0.8] = 0
    colour = np.array([63, 42, 20]) / 255.0  # mud brown
    return x * (1 - drops[..., None]) + colour * drops[..., None]


_CORRUPTIONS: dict[str, Callable[..., _Image]] = {
    "gaussian_noise": _gaussian_noise,
    "shot_noise": _shot_noise,
    "impulse_noise": _impulse_noise,
    "speckle_noise": _speckle_noise,
    "gaussian_blur": _gaussian_blur,
    "glass_blur": _glass_blur,
    "defocus_blur": _defocus_blur,
    "motion_blur": _motion_blur_image,
    "zoom_blur": _zoom_blur,
    "snow": _snow,
    "frost": _frost,
    "fog": _fog,
    "brightness": _brightness,
    "contrast": _contrast,
    "saturate": _saturate,
    "jpeg_compression": _jpeg_compression,
    "pixelate": _pixelate,
    "elastic_transform": _elastic_transform,
    "spatter": _spatter,
}
