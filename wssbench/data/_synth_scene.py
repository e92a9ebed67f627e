"""Rendering of one synthetic scene: textured shapes over a cluttered photographic background.

Every picture used here ships inside the scikit-image wheel (no pooch download, works offline):

* object textures: ``grass``, ``brick``, ``gravel``, ``coins``, ``text`` (grey, tinted per class),
  ``immunohistochemistry`` and ``chelsea`` (colour, jittered);
* backgrounds and clutter: ``astronaut``, ``coffee``, ``rocket``, ``stereo_motorcycle`` (left view),
  ``camera``, ``hubble_deep_field``, ``page`` and ``retina``; a clutter patch sometimes borrows an object
  texture in a random tint, so texture alone does not tell objects from background;
* the horse silhouette: ``horse``.

Shapes are drawn once as templates with :mod:`skimage.draw` and mapped into the scene with a
random similarity-plus-aspect transform; textures are random rotated and scaled crops.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import skimage as ski  # submodules load on first use (scikit-image's lazy loader): listing the plugins stays fast

REF_SIZE = 128  # texture scales are set for this image size and follow the image size
_T = 96  # template side
_R = 0.46 * _T  # template radius: every shape fits the disc of this radius


@dataclass(frozen=True)
class Look:
    """How one class looks besides its shape (the template of the same name): a texture, tinted
    when ``hue`` is set."""

    texture: str
    hue: float | None = None  # None: a colour texture, kept in its own colours


# Pairs that share a texture (disc/square) or a colour (triangle/star, hexagon/horse) differ in
# shape; near-identical outlines (disc/hexagon/ring) differ in texture.
LOOKS: dict[str, Look] = {
    "disc": Look("grass", 0.28),
    "square": Look("grass", 0.28),
    "hexagon": Look("immunohistochemistry"),
    "triangle": Look("brick", 0.02),
    "star": Look("gravel", 0.02),
    "ring": Look("coins", 0.13),
    "cross": Look("text", 0.62),
    "horse": Look("chelsea"),
}
NAMES = tuple(LOOKS)  # class k (1-based) is NAMES[k - 1]
BACKGROUNDS = ("astronaut", "coffee", "rocket", "motorcycle", "camera", "hubble_deep_field", "page", "retina")


def _load(name: str) -> np.ndarray:
    """A bundled picture as float32: grey (H, W) stretched to [0, 1], or colour (H, W, 3)."""
    img = ski.data.stereo_motorcycle()[0] if name == "motorcycle" else getattr(ski.data, name)()
    img = np.asarray(img, dtype=np.float32)
    if max(img.shape[:2]) > 640:
        img = ski.transform.rescale(img, 512 / max(img.shape[:2]), channel_axis=-1 if img.ndim == 3 else None)
    if img.ndim == 3:
        return np.ascontiguousarray(img[..., :3] / 255.0, dtype=np.float32)
    lo, hi = np.percentile(img, (1, 99))
    return np.clip((img - lo) / (hi - lo), 0, 1).astype(np.float32)


@lru_cache(maxsize=None)
def sources() -> dict[str, np.ndarray]:
    """Every texture and background picture, loaded once per process."""
    names = {look.texture for look in LOOKS.values()} | set(BACKGROUNDS)
    return {name: _load(name) for name in sorted(names)}


def _polygon(radii: list[float], phase: float) -> np.ndarray:
    """Template mask of a polygon with vertices at equal angles and the given radii."""
    angles = phase + 2 * np.pi * np.arange(len(radii)) / len(radii)
    c = (_T - 1) / 2
    mask = np.zeros((_T, _T), dtype=bool)
    mask[ski.draw.polygon(c + np.sin(angles) * radii, c + np.cos(angles) * radii, mask.shape)] = True
    return mask


def _horse() -> np.ndarray:
    """The scikit-image horse silhouette, cropped and fitted into the template disc."""
    horse = ~ski.data.horse()
    rows, cols = np.nonzero(horse)
    horse = horse[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1].astype(np.float32)
    scale = 1.9 * _R / max(horse.shape)
    h, w = round(horse.shape[0] * scale), round(horse.shape[1] * scale)
    mask = np.zeros((_T, _T), dtype=bool)
    top, left = (_T - h) // 2, (_T - w) // 2
    mask[top : top + h, left : left + w] = ski.transform.resize(horse, (h, w)) > 0.5
    return mask


@lru_cache(maxsize=None)
def templates() -> dict[str, np.ndarray]:
    """Float32 (T, T) masks of every class's shape, centred in the template."""
    c = (_T - 1) / 2
    disc = np.zeros((_T, _T), dtype=bool)
    disc[ski.draw.disk((c, c), _R)] = True
    ring = disc.copy()
    ring[ski.draw.disk((c, c), 0.55 * _R)] = False
    cross = np.zeros((_T, _T), dtype=bool)
    arm, reach = 0.3 * _R, _R
    cross[ski.draw.rectangle((c - arm, c - reach), (c + arm, c + reach), shape=cross.shape)] = True
    cross[ski.draw.rectangle((c - reach, c - arm), (c + reach, c + arm), shape=cross.shape)] = True
    shapes = {
        "disc": disc,
        "ring": ring,
        "cross": cross,
        "square": _polygon([_R] * 4, np.pi / 4),
        "hexagon": _polygon([_R] * 6, 0.0),
        "triangle": _polygon([_R] * 3, -np.pi / 2),
        "star": _polygon([_R, 0.45 * _R] * 5, -np.pi / 2),
        "horse": _horse(),
    }
    return {name: mask.astype(np.float32) for name, mask in shapes.items()}


def _crop(src: np.ndarray, size: int, rng: np.random.Generator, zoom: tuple[float, float]) -> np.ndarray:
    """A randomly rotated crop of ``src`` resampled to (size, size); ``zoom`` is source px per px at REF_SIZE."""
    h, w = src.shape[:2]
    z = min(rng.uniform(*zoom) * REF_SIZE / size, min(h, w) / (1.42 * size))
    half = 0.71 * z * size  # radius of the rotated crop in source pixels
    cy, cx = rng.uniform(half, max(h - half, half)), rng.uniform(half, max(w - half, half))
    tform = (
        ski.transform.AffineTransform(translation=(-size / 2, -size / 2))
        + ski.transform.AffineTransform(scale=z, rotation=rng.uniform(0, 2 * np.pi))
        + ski.transform.AffineTransform(translation=(cx, cy))
    )
    return ski.transform.warp(src, tform, output_shape=(size, size), order=1, mode="reflect").astype(np.float32)


def _tint(grey: np.ndarray, hue: float, saturation: tuple[float, float], rng: np.random.Generator) -> np.ndarray:
    """Colour a grey texture with a jittered version of ``hue``."""
    hsv = [(hue + rng.uniform(-0.03, 0.03)) % 1.0, rng.uniform(*saturation), rng.uniform(0.7, 1.0)]
    rgb = ski.color.hsv2rgb(np.array(hsv, dtype=np.float32).reshape(1, 1, 3)).reshape(3)
    grey = grey[..., None]
    return np.clip(grey * (0.2 + 0.95 * rgb) + 0.15 * rgb * (1 - grey), 0, 1)


def _texture(
    name: str, hue: float | None, size: int, rng: np.random.Generator, zoom: tuple[float, float]
) -> np.ndarray:
    """An (size, size, 3) texture patch: grey sources tinted with ``hue`` (or a random, paler hue
    if None), colour ones jittered."""
    patch = _crop(sources()[name], size, rng, zoom)
    if patch.ndim == 2:
        if hue is None:
            return _tint(patch, rng.uniform(), (0.1, 0.5), rng)
        return _tint(patch, hue, (0.45, 0.9), rng)
    gains = rng.uniform(0.85, 1.15, 3) * rng.uniform(0.8, 1.15)
    return np.clip(patch * gains, 0, 1)


def _place(shape: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """Soft (size, size) alpha of ``shape`` at a random position, size, rotation, aspect and flip."""
    d = rng.uniform(0.38, 0.7) * size  # diameter of the template disc in the scene
    s, aspect = d / (2 * _R), np.exp(rng.uniform(-0.25, 0.25))
    flip = rng.choice([-1.0, 1.0])
    rotation = rng.uniform(-0.35, 0.35) if shape == "horse" else rng.uniform(0, 2 * np.pi)
    cy, cx = rng.uniform(0.3 * d, size - 0.3 * d, 2)
    c = (_T - 1) / 2
    tform = (
        ski.transform.AffineTransform(translation=(-c, -c))
        + ski.transform.AffineTransform(scale=(flip * s * aspect, s / aspect), rotation=rotation)
        + ski.transform.AffineTransform(translation=(cx, cy))
    )
    return ski.transform.warp(templates()[shape], tform.inverse, output_shape=(size, size), order=1)


def _blob(size: int, rng: np.random.Generator) -> np.ndarray:
    """Soft alpha of an irregular clutter region covering roughly 15-40% of the image."""
    field = ski.transform.resize(rng.standard_normal((6, 6)), (size, size), order=3)
    threshold = np.quantile(field, 1 - rng.uniform(0.15, 0.4))
    return np.clip((field - threshold) / (0.15 * field.std() + 1e-6), 0, 1)


def _background(size: int, rng: np.random.Generator) -> np.ndarray:
    """A photo crop overlaid with one to three irregular patches of other photos or object textures."""
    textures = [look.texture for look in LOOKS.values()]
    image = _texture(rng.choice(BACKGROUNDS), None, size, rng, (1.2, 3.0))
    for _ in range(rng.integers(1, 4)):
        source = rng.choice(textures) if rng.uniform() < 0.3 else rng.choice(BACKGROUNDS)
        alpha = _blob(size, rng)[..., None]
        image = alpha * _texture(source, None, size, rng, (0.8, 3.0)) + (1 - alpha) * image
    return image


def _layout(
    size: int, classes: list[int], min_visible: float, rng: np.random.Generator
) -> list[tuple[int, np.ndarray]]:
    """Place objects bottom to top; one that would hide too much of another is re-drawn, then skipped.

    Every placed object keeps at least ``min_visible`` of the image and 40% of its own area visible.
    """
    min_area = min_visible * size * size
    placed: list[tuple[int, np.ndarray]] = []
    owner = np.zeros((size, size), dtype=np.int32)  # 0 = background, k = k-th placed object
    for cls in classes:
        for _ in range(20):
            alpha = _place(NAMES[cls - 1], size, rng)
            area = int((alpha > 0.5).sum())
            if area < min_area:
                continue
            trial = np.where(alpha > 0.5, len(placed) + 1, owner)
            visible = np.bincount(trial.ravel(), minlength=len(placed) + 2)[1:]
            full = [int((a > 0.5).sum()) for _, a in placed] + [area]
            if all(v >= max(min_area, 0.4 * f) for v, f in zip(visible, full)):
                placed.append((cls, alpha))
                owner = trial
                break
    return placed


def render_scene(
    rng: np.random.Generator, first: int, size: int, max_objects: int, border: int, min_visible: float
) -> tuple[np.ndarray, np.ndarray]:
    """One scene: (size, size, 3) uint8 image and (size, size) uint8 mask (255 on object borders).

    ``first`` (1-based) is the class of the bottom object, which is always placed (every shape
    covers more than ``min_visible`` at the sizes drawn); up to ``max_objects - 1`` more of random
    classes follow on top of it. Borders between objects, and between an object and the
    background, get a 255 band about ``border`` pixels wide (rounded up to even).
    """
    classes = [first, *rng.integers(1, len(NAMES) + 1, rng.integers(0, max_objects))]
    image = _background(size, rng)
    owner = np.zeros((size, size), dtype=np.int32)
    label_of = [0]
    for cls, alpha in _layout(size, classes, min_visible, rng):
        look = LOOKS[NAMES[cls - 1]]
        texture = _texture(look.texture, look.hue, size, rng, (0.8, 1.8))
        image = alpha[..., None] * texture + (1 - alpha[..., None]) * image
        label_of.append(cls)
        owner[alpha > 0.5] = len(label_of) - 1
    image = ski.filters.gaussian(image, sigma=rng.uniform(0.3, 0.8), channel_axis=-1)
    image = image + rng.normal(0, rng.uniform(0.005, 0.02), image.shape)
    mask = np.asarray(label_of, dtype=np.uint8)[owner]
    if border > 0:
        band = ski.segmentation.find_boundaries(owner, mode="thick")
        if border > 2:
            band = ski.morphology.dilation(band, ski.morphology.disk((border - 1) // 2))
        mask[band] = 255
    return (np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8), mask
