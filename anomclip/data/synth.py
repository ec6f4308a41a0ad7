"""A small synthetic anomaly-detection benchmark with two domains, generated in seconds.

:func:`make_synthetic` writes two dataset roots, each an MVTec-style tree with a ``meta.json``::

    out/textures/{weave,marble,grid,dots}/...      periodic / noisy textures filling the frame
    out/objects/{disc,ring,square,capsule}/...     one centred shape on a plain background

    <cls>/train/good/NNN.png
    <cls>/test/good/NNN.png
    <cls>/test/<defect>/NNN.png                    defect ∈ scratch, hole, stain, crack
    <cls>/ground_truth/<defect>/NNN_mask.png       255 = defect pixel, 0 elsewhere

The categories of the two domains are disjoint and their normal appearance differs, while the
**defects look alike in both** (that is what a zero-shot detector must transfer):

* ``scratch`` — a near-white line, ~3 px wide at 128 px, 30–55 % of the image side long;
* ``hole`` — a near-black irregular blob, 12–20 % of the side across;
* ``stain`` — an irregular blob tinted with a saturated, off-palette colour, 16–26 % across;
* ``crack`` — a near-black, thin, branching polyline spanning ~25–40 % of the side.

Normal images use muted mid-tone colours only (channel values ≈ 50–215), so the near-black,
near-white and saturated defects stand out even after resizing to ~96 px. On objects, defects
are clipped to the object's silhouette.

Everything is drawn with numpy and PIL from ``np.random.default_rng`` seeded by
``[seed, domain, category, kind, index]`` (positions in fixed tuples, never ``hash()``), and
saved as PNG without metadata: the same arguments give byte-identical files.
"""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image, ImageDraw

from ..errors import AnomclipError
from .index import write_meta
from .releases.mvtec import index_mvtec

DOMAINS = ("textures", "objects")
TEXTURES = ("weave", "marble", "grid", "dots")
OBJECTS = ("disc", "ring", "square", "capsule")
CATEGORIES = {"textures": TEXTURES, "objects": OBJECTS}
DEFECTS = ("scratch", "hole", "stain", "crack")
#: Saturated stain colours; normal images never use saturated colours.
STAIN_COLOURS = ((235, 30, 210), (40, 225, 40), (250, 210, 15), (30, 200, 245), (250, 60, 20))

#: Fraction of colourfulness kept in normal images: both domains are nearly grey, so the
#: saturated, near-black and near-white defects are what sets anomalies apart in either.
MUTED_CHROMA = 0.15

# kinds of generated images, part of the RNG seed
_TRAIN, _GOOD, _BAD, _PAIR = 0, 1, 2, 3

Array = np.ndarray


# --------------------------------------------------------------------------- helpers


def _grid(size: int) -> tuple[Array, Array]:
    """Pixel-centre coordinates (x, y) as float arrays [size, size]."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float64) + 0.5
    return x, y


def _rotate(x: Array, y: Array, cx: float, cy: float, angle: float) -> tuple[Array, Array]:
    """Coordinates relative to (cx, cy), rotated by ``-angle`` (radians)."""
    c, s = np.cos(angle), np.sin(angle)
    dx, dy = x - cx, y - cy
    return c * dx + s * dy, -s * dx + c * dy


def _lerp(a: Array, b: Array, t: Array) -> Array:
    """Per-pixel blend of colours ``a`` (t = 0) and ``b`` (t = 1): [H, W, 3]."""
    t = np.asarray(t)[..., None]
    return np.asarray(a, float) * (1 - t) + np.asarray(b, float) * t


def _jitter(rng: np.random.Generator, colour: tuple[int, int, int], amount: float = 12) -> Array:
    """A colour moved by up to ±``amount`` per channel."""
    return np.asarray(colour, float) + rng.uniform(-amount, amount, size=3)


def _smooth_noise(rng: np.random.Generator, size: int, cells: int) -> Array:
    """Low-frequency noise in about [-1, 1]: a random ``cells``² grid upsampled bicubically."""
    coarse = rng.standard_normal((cells, cells)).astype(np.float32)
    img = Image.fromarray(coarse, mode="F").resize((size, size), Image.BICUBIC)
    return np.asarray(img, dtype=np.float64) / 1.5


def mute(rgb: Array, chroma: float = MUTED_CHROMA) -> Array:
    """Normal appearance: keep ``chroma`` of each pixel's colourfulness (distance from its grey)."""
    grey = rgb.mean(axis=-1, keepdims=True)
    return grey + chroma * (rgb - grey)


def finish(rgb: Array, rng: np.random.Generator, noise: float = 4.0) -> Array:
    """Add mild Gaussian noise and convert to ``uint8``."""
    rgb = rgb + rng.normal(0.0, noise, size=rgb.shape)
    return np.clip(np.round(rgb), 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------- textures


def _weave(rng: np.random.Generator, size: int) -> tuple[Array, Array]:
    """A basket weave: alternating horizontal / vertical threads, brownish."""
    x, y = _grid(size)
    u, v = _rotate(x, y, size / 2, size / 2, rng.uniform(-0.08, 0.08))
    period = size / rng.uniform(9, 12)
    u, v = u / period + rng.uniform(0, 2), v / period + rng.uniform(0, 2)
    horizontal = (np.floor(u) + np.floor(v)) % 2 == 0
    profile = np.where(horizontal, np.sin(np.pi * (v % 1)), np.sin(np.pi * (u % 1)))
    dark, light = _jitter(rng, (95, 75, 55)), _jitter(rng, (175, 145, 110))
    return _lerp(dark, light, profile ** 0.7), np.ones((size, size), bool)


def _marble(rng: np.random.Generator, size: int) -> tuple[Array, Array]:
    """Veined marble: turbulent sine bands, beige-grey, low contrast."""
    x, y = _grid(size)
    angle = rng.uniform(0, np.pi)
    along = (x * np.cos(angle) + y * np.sin(angle)) / size
    turbulence = _smooth_noise(rng, size, 5) * 3.0 + _smooth_noise(rng, size, 11) * 0.8
    bands = 0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(1.5, 2.5) * along + turbulence)
    vein, base = _jitter(rng, (130, 125, 115), 8), _jitter(rng, (200, 192, 178), 8)
    return _lerp(vein, base, bands ** 0.5), np.ones((size, size), bool)


def _grid_texture(rng: np.random.Generator, size: int) -> tuple[Array, Array]:
    """A regular lattice of lighter lines on a blue-grey ground (a mesh / tiles)."""
    x, y = _grid(size)
    u, v = _rotate(x, y, size / 2, size / 2, rng.uniform(-0.07, 0.07))
    period = size / rng.uniform(7, 9)
    width = max(1.0, size / 64)
    du = np.abs(((u + rng.uniform(0, period)) % period) - period / 2)
    dv = np.abs(((v + rng.uniform(0, period)) % period) - period / 2)
    line = np.clip(np.maximum(du, dv) - (period / 2 - width), 0, 1)
    ground, lines = _jitter(rng, (80, 100, 125)), _jitter(rng, (135, 155, 175))
    shade = 1 + 0.08 * _smooth_noise(rng, size, 4)
    return _lerp(ground, lines, line) * shade[..., None], np.ones((size, size), bool)


def _dots(rng: np.random.Generator, size: int) -> tuple[Array, Array]:
    """Polka dots on a staggered lattice, olive on khaki."""
    x, y = _grid(size)
    period = size / rng.uniform(8, 10)
    radius = period * rng.uniform(0.22, 0.3)
    v = (y + rng.uniform(0, period)) / period
    row = np.floor(v)
    u = (x + rng.uniform(0, period)) / period + 0.5 * (row % 2)
    dist = np.hypot((u % 1) - 0.5, (v % 1) - 0.5) * period
    inside = np.clip(radius + 0.5 - dist, 0, 1)
    ground, dot = _jitter(rng, (150, 155, 100)), _jitter(rng, (95, 110, 65))
    return _lerp(ground, dot, inside), np.ones((size, size), bool)


# --------------------------------------------------------------------------- objects


def _object_colour(rng: np.random.Generator) -> Array:
    """A muted colour: random hue, saturation 0.2–0.45, value 0.5–0.8."""
    h, s, v = rng.uniform(0, 1), rng.uniform(0.2, 0.45), rng.uniform(0.5, 0.8)
    k = (np.array([5.0, 3.0, 1.0]) + h * 6) % 6
    rgb = v - v * s * np.clip(np.minimum(k, 4 - k), 0, 1)
    return rgb * 255


def _shape(name: str, rng: np.random.Generator, size: int) -> Array:
    """Boolean silhouette of an object with mild random position, size and rotation."""
    x, y = _grid(size)
    cx, cy = size * (0.5 + rng.uniform(-0.05, 0.05, size=2))
    angle = rng.uniform(-0.3, 0.3)
    u, v = _rotate(x, y, cx, cy, angle)
    if name == "disc":
        return np.hypot(u, v) < size * rng.uniform(0.28, 0.34)
    if name == "ring":
        outer = size * rng.uniform(0.33, 0.38)
        r = np.hypot(u, v)
        return (r < outer) & (r > outer * rng.uniform(0.42, 0.5))
    if name == "square":
        return np.maximum(np.abs(u), np.abs(v)) < size * rng.uniform(0.24, 0.29)
    if name == "capsule":
        half, radius = size * rng.uniform(0.2, 0.26), size * rng.uniform(0.14, 0.17)
        return np.hypot(np.abs(u) - np.minimum(np.abs(u), half), v) < radius
    raise ValueError(name)


#: Per-category background tone of the objects domain.
_BACKGROUNDS = {"disc": (70, 72, 78), "ring": (150, 146, 140), "square": (60, 78, 70),
                "capsule": (115, 105, 128)}


def _make_object(name: str) -> Callable[[np.random.Generator, int], tuple[Array, Array]]:
    """Generator of one object category: (rgb float [S, S, 3], silhouette [S, S])."""

    def draw(rng: np.random.Generator, size: int) -> tuple[Array, Array]:
        x, y = _grid(size)
        silhouette = _shape(name, rng, size)
        ground = _jitter(rng, _BACKGROUNDS[name], 6)
        rgb = np.broadcast_to(ground, (size, size, 3)) * (1 + 0.05 * (y / size - 0.5))[..., None]
        light = 1.08 - 0.25 * ((x + y) / (2 * size))  # lit from the top left
        body = _object_colour(rng) * light[..., None]
        return np.where(silhouette[..., None], body, rgb), silhouette

    return draw


GENERATORS: dict[str, Callable[[np.random.Generator, int], tuple[Array, Array]]] = {
    "weave": _weave, "marble": _marble, "grid": _grid_texture, "dots": _dots,
    **{name: _make_object(name) for name in OBJECTS},
}


# --------------------------------------------------------------------------- defects


def _blob(rng: np.random.Generator, size: int, centre: Array, radius: float) -> Array:
    """Boolean irregular blob: a polygon with a wobbly radius around ``centre``."""
    theta = np.linspace(0, 2 * np.pi, 48, endpoint=False)
    wobble = 1 + sum(rng.uniform(0.04, 0.14) * np.sin(k * theta + rng.uniform(0, 2 * np.pi))
                     for k in (2, 3, 5))
    stretch = rng.uniform(0.75, 1.25)
    xs = centre[0] + radius * wobble * np.cos(theta) * stretch
    ys = centre[1] + radius * wobble * np.sin(theta) / stretch
    canvas = Image.new("L", (size, size), 0)
    ImageDraw.Draw(canvas).polygon([(float(a), float(b)) for a, b in zip(xs, ys)], fill=255)
    return np.asarray(canvas) > 0


def _lines(size: int, polylines: list[list[tuple[float, float]]], width: int) -> Array:
    """Boolean mask of polylines drawn ``width`` px wide."""
    canvas = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(canvas)
    for points in polylines:
        draw.line(points, fill=255, width=width, joint="curve")
    return np.asarray(canvas) > 0


def _scratch_mask(rng: np.random.Generator, size: int, centre: Array) -> Array:
    """A long, slightly curved line through ``centre``."""
    angle = rng.uniform(0, np.pi)
    half = size * rng.uniform(0.15, 0.27)
    d = np.array([np.cos(angle), np.sin(angle)])
    bend = np.array([-d[1], d[0]]) * size * rng.uniform(-0.04, 0.04)
    points = [tuple(centre - d * half), tuple(centre + bend), tuple(centre + d * half)]
    return _lines(size, [points], max(2, round(size * 0.024)))


def _crack_mask(rng: np.random.Generator, size: int, centre: Array) -> Array:
    """A jagged random walk with one or two side branches."""
    step = size * 0.05
    angle = rng.uniform(0, 2 * np.pi)
    trunk = [centre.copy()]
    for _ in range(int(rng.integers(6, 9))):
        angle += rng.uniform(-0.6, 0.6)
        trunk.append(trunk[-1] + step * np.array([np.cos(angle), np.sin(angle)]))
    trunk = [p - (trunk[-1] - trunk[0]) / 2 for p in trunk]  # centre the crack
    polylines = [[tuple(p) for p in trunk]]
    for _ in range(int(rng.integers(1, 3))):
        start = trunk[int(rng.integers(1, len(trunk) - 1))]
        branch_angle = angle + rng.choice([-1, 1]) * rng.uniform(0.7, 1.3)
        branch = [start]
        for _ in range(int(rng.integers(2, 4))):
            branch_angle += rng.uniform(-0.4, 0.4)
            direction = np.array([np.cos(branch_angle), np.sin(branch_angle)])
            branch.append(branch[-1] + step * 0.8 * direction)
        polylines.append([tuple(p) for p in branch])
    return _lines(size, polylines, max(2, round(size * 0.02)))


def _defect_mask(kind: str, rng: np.random.Generator, size: int, centre: Array) -> Array:
    """Boolean mask of one defect of type ``kind`` around ``centre``."""
    if kind == "scratch":
        return _scratch_mask(rng, size, centre)
    if kind == "hole":
        return _blob(rng, size, centre, size * rng.uniform(0.06, 0.1))
    if kind == "stain":
        return _blob(rng, size, centre, size * rng.uniform(0.08, 0.13))
    if kind == "crack":
        return _crack_mask(rng, size, centre)
    raise ValueError(kind)


def _paint(kind: str, rgb: Array, mask: Array, rng: np.random.Generator) -> Array:
    """Apply a defect's appearance to ``rgb`` inside ``mask``."""
    out = rgb.copy()
    if kind == "scratch":
        out[mask] = rng.uniform(235, 252)
    elif kind == "hole":
        out[mask] = rng.uniform(8, 22)
    elif kind == "crack":
        out[mask] = rng.uniform(15, 35)
    elif kind == "stain":
        colour = np.asarray(STAIN_COLOURS[int(rng.integers(len(STAIN_COLOURS)))], float)
        out[mask] = 0.2 * out[mask] + 0.8 * colour
    return out


def _add_defect(
    kind: str, rgb: Array, region: Array, rng: np.random.Generator, size: int
) -> tuple[Array, Array]:
    """Place a defect inside ``region`` (the object, or the whole texture): (rgb, mask).

    Tries a few centres until the clipped defect covers a visible area.
    """
    min_pixels = max(6, int(0.003 * size * size))
    ys, xs = np.nonzero(region)
    inner = (xs > 0.18 * size) & (xs < 0.82 * size) & (ys > 0.18 * size) & (ys < 0.82 * size)
    if inner.any():
        xs, ys = xs[inner], ys[inner]
    best = np.zeros_like(region)
    for _ in range(20):
        i = int(rng.integers(len(xs)))
        centre = np.array([xs[i] + 0.5, ys[i] + 0.5])
        mask = _defect_mask(kind, rng, size, centre) & region
        if mask.sum() > best.sum():
            best = mask
        if best.sum() >= min_pixels:
            break
    return _paint(kind, rgb, best, rng), best


# --------------------------------------------------------------------------- writing


def _save_png(array: Array, path: Path) -> None:
    """Save a uint8 array as PNG without metadata (byte-identical across runs)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = "L" if array.ndim == 2 else "RGB"
    Image.fromarray(array, mode).save(path, format="PNG", compress_level=6)


def draw_defective(name: str, defect: str, rng: np.random.Generator, size: int) -> tuple[Array, Array, Array]:
    """A normal image of category ``name`` before and after adding ``defect``, noise not yet added:
    ``(normal rgb, defective rgb, mask)``."""
    rgb, region = GENERATORS[name](rng, size)
    rgb = mute(rgb)
    defective, mask = _add_defect(defect, rgb, region, rng, size)
    return rgb, defective, mask


def _write_category(root: Path, domain_i: int, cat_i: int, name: str, seed: int,
                    n_train: int, n_normal: int, n_anomalous: int, size: int) -> None:
    """Write train/good, test/good, test/<defect> and ground_truth/<defect> of one category."""
    draw = GENERATORS[name]
    for kind, folder, count in ((_TRAIN, "train/good", n_train), (_GOOD, "test/good", n_normal)):
        for i in range(count):
            rng = np.random.default_rng([seed, domain_i, cat_i, kind, i])
            rgb, _ = draw(rng, size)
            rgb = mute(rgb)
            _save_png(finish(rgb, rng), root / name / folder / f"{i:03d}.png")
    for i in range(n_anomalous):
        rng = np.random.default_rng([seed, domain_i, cat_i, _BAD, i])
        defect = DEFECTS[i % len(DEFECTS)]
        stem = f"{i // len(DEFECTS):03d}"
        _, rgb, mask = draw_defective(name, defect, rng, size)
        _save_png(finish(rgb, rng), root / name / "test" / defect / f"{stem}.png")
        mask_path = root / name / "ground_truth" / defect / f"{stem}_mask.png"
        _save_png(mask.astype(np.uint8) * 255, mask_path)


def defect_pairs(n_per_category: int = 8, seed: int = 0, size: int = 128) -> list[dict]:
    """The same image without and with a defect, for every category of both domains (in memory).

    Returns dicts ``{domain, category, defect, normal, defective, mask}`` (uint8 RGB arrays
    [size, size, 3] and a bool mask): ``defective`` equals ``normal`` outside ``mask``, sensor
    noise included, so any difference in the features is caused by the defect alone. Defect
    types in turn, as in :func:`make_synthetic`; nothing is written to disk.
    """
    pairs = []
    for domain_i, domain in enumerate(DOMAINS):
        for cat_i, name in enumerate(CATEGORIES[domain]):
            for i in range(n_per_category):
                rng = np.random.default_rng([seed, domain_i, cat_i, _PAIR, i])
                defect = DEFECTS[i % len(DEFECTS)]
                rgb, bad, mask = draw_defective(name, defect, rng, size)
                state = rng.bit_generator.state
                normal = finish(rgb, rng)
                rng.bit_generator.state = state  # the same noise on both
                pairs.append(dict(domain=domain, category=name, defect=defect, normal=normal,
                                  defective=finish(bad, rng), mask=mask))
    return pairs


def make_synthetic(
    out: str | Path, seed: int = 0, n_normal: int = 8, n_anomalous: int = 12, size: int = 128
) -> dict[str, Path]:
    """Write the two synthetic domains under ``out`` and return ``{domain: root}``.

    Per category: ``n_normal`` normal and ``n_anomalous`` anomalous test images (defect types
    in turn: scratch, hole, stain, crack — all four appear when ``n_anomalous >= 4``) and
    ``max(2, n_normal // 2)`` normal training images, ``size``×``size`` px (16–256). Category
    folders of an earlier run in ``out/<domain>/`` are replaced; nothing else is touched.
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise AnomclipError(f"synthetic seed must be a non-negative integer, got {seed!r}")
    if not 16 <= int(size) <= 256:
        raise AnomclipError(f"synthetic image size must be between 16 and 256 px, got {size}")
    if n_normal < 1 or n_anomalous < 1:
        raise AnomclipError(
            f"synthetic data needs n_normal >= 1 and n_anomalous >= 1, got {n_normal}, {n_anomalous}"
        )
    out = Path(out)
    n_train = max(2, n_normal // 2)
    roots: dict[str, Path] = {}
    for domain_i, domain in enumerate(DOMAINS):
        root = out / domain
        root.mkdir(parents=True, exist_ok=True)
        for cat_i, name in enumerate(CATEGORIES[domain]):
            if (root / name).exists():
                shutil.rmtree(root / name)
            _write_category(root, domain_i, cat_i, name, int(seed), n_train, n_normal,
                            n_anomalous, int(size))
        write_meta(root, {**index_mvtec(root), "synthetic": True})  # marks generated data (data.is_synthetic)
        roots[domain] = root
    return roots
