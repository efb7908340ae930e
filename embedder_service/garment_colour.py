"""A garment's primary and secondary colour names, from the decoded pixels inside its box.

The pixels are read where the embedder has them decoded already, so this has to be cheap (well
under a millisecond a box): it looks only at the box's central part (the edges of a Fashionpedia
box show background and skin), subsamples it to a fixed budget of pixels, converts them to CIELAB
with LittleCMS (Pillow's ImageCms), clusters them with k-means (scipy), and names each cluster
from reference colours of the palette in `fashionrag.colours`. Clusters that look like skin count
for less, and pixels count more the nearer they lie to the box's centre.

The secondary colour is the second-heaviest name when it covers at least `SECONDARY_SHARE` of the
weighted pixels, and "" when one colour dominates: a plain garment has no secondary colour.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageCms
from scipy.cluster.vq import kmeans2

from fashionrag.colours import COLOURS
from fashionrag.errors import InvalidArgument

# The central part of the box kept on each axis: the outer 20 % on every side is mostly
# background, skin or a neighbouring garment.
CENTRAL = 0.6
# Pixels sampled from the central part at most (nearest-neighbour, so a stripe keeps its own
# colour rather than a blend); about 0.2 ms of k-means on this machine.
SAMPLE_BUDGET = 768
# Clusters found in each box: room for two garment colours, shading and a stray edge colour.
CLUSTERS = 4
# A secondary colour is named only when it covers at least this share of the weighted pixels.
SECONDARY_SHARE = 0.15
# A cluster that looks like skin and lies towards the edges weighs this much of its pixels: too
# little to beat the garment's own colour when arms or a neck show inside the box.
SKIN_WEIGHT = 0.35
# ...when its pixels lie this much further from the box's centre than the other pixels.
SKIN_EDGENESS = 1.1
# Lightness counts half in clustering: shading and folds spread a garment along L*, and one
# garment's light and dark sides should fall in one cluster.
L_CLUSTER_WEIGHT = 0.5
# Below this chroma (C*ab) a colour is black, grey or white, named by its lightness alone.
ACHROMATIC_CHROMA = 7.0
# Lightness (L*) bounds of black and white among achromatic colours.
BLACK_BELOW = 25.0
WHITE_ABOVE = 86.0
# In naming, lightness counts less than hue and chroma (a shaded red is still red), but not
# nothing: navy vs blue and brown vs orange differ mostly in lightness.
L_NAME_WEIGHT = 0.6

# Reference sRGB colours for each palette name: the names' own typical values and the everyday
# shades the query vocabulary maps to them (fashionrag.colours.COLOUR_SYNONYMS), so that "teal"
# is green and "turquoise" blue here as in a query.
REFERENCES: dict[str, tuple[str, ...]] = {
    "black": ("#000000", "#141414", "#202020"),
    "white": ("#ffffff", "#f4f4f4", "#fffff0", "#f8f8ff"),
    "grey": ("#808080", "#a9a9a9", "#c0c0c0", "#5a5a5a", "#404040", "#d3d3d3"),
    "beige": ("#f5f5dc", "#d2b48c", "#c19a6b", "#c3b091", "#e3c9a0", "#fffdd0", "#e8d4b8"),
    "brown": ("#8b4513", "#654321", "#a0522d", "#5c4033", "#7b3f00", "#3d2b1f", "#6f4e37"),
    "red": ("#ff0000", "#d00000", "#b22222", "#800020", "#dc143c", "#8b0000", "#722f37"),
    "pink": ("#ffc0cb", "#ff69b4", "#ff1493", "#f4a6b8", "#e75480", "#ff00ff", "#de5d83"),
    "orange": ("#ff8c00", "#ffa500", "#ff7f50", "#e2725b", "#b7410e", "#ff6700", "#f28500"),
    "yellow": ("#ffff00", "#ffd700", "#ffdb58", "#e1ad01", "#fff44f", "#f0e130"),
    "green": ("#008000", "#00c000", "#228b22", "#808000", "#98ff98", "#50c878", "#008080"),
    "blue": ("#0000ff", "#1e90ff", "#4169e1", "#87ceeb", "#40e0d0", "#1560bd", "#0047ab"),
    "navy": ("#000080", "#1b2a4a", "#202a44", "#000050", "#14213d"),
    "purple": (
        "#800080",
        "#8a2be2",
        "#9370db",
        "#b57edc",
        "#c8a2c8",
        "#8e4585",
        "#4b0082",
        "#4a235a",
    ),
}

Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class _Palette:
    """The reference colours in CIELAB, one row per reference, with the name of each row."""

    lab: np.ndarray
    names: tuple[str, ...]


@functools.cache
def _to_lab() -> ImageCms.ImageCmsTransform:
    # Built once: making a LittleCMS transform costs far more than applying it to a box.
    srgb = ImageCms.createProfile("sRGB")
    return ImageCms.buildTransform(srgb, ImageCms.createProfile("LAB"), "RGB", "LAB")


def to_lab(image: Image.Image) -> np.ndarray:
    """An RGB image's pixels in CIELAB (D50), as a float array of shape (height, width, 3)."""
    lab = ImageCms.applyTransform(image, _to_lab())
    assert lab is not None
    raw = np.asarray(lab)
    # Pillow stores L* scaled to 0..255 and a*, b* as signed bytes.
    out = np.empty(raw.shape, dtype=np.float64)
    out[..., 0] = raw[..., 0] * (100.0 / 255.0)
    out[..., 1:] = raw[..., 1:].view(np.int8)
    return out


@functools.cache
def _palette() -> _Palette:
    hexes = [(name, value) for name, values in REFERENCES.items() for value in values]
    pixels = Image.new("RGB", (len(hexes), 1))
    pixels.putdata([tuple(int(v[i : i + 2], 16) for i in (1, 3, 5)) for _, v in hexes])
    return _Palette(to_lab(pixels)[0], tuple(name for name, _ in hexes))


def colour_name(lab: Sequence[float]) -> str:
    """The palette name of one CIELAB colour: black, grey or white by lightness when it has
    almost no chroma, otherwise its nearest reference colour."""
    lightness, a, b = (float(v) for v in lab)
    if math.hypot(a, b) < ACHROMATIC_CHROMA:
        if lightness < BLACK_BELOW:
            return "black"
        return "white" if lightness > WHITE_ABOVE else "grey"
    palette = _palette()
    diff = palette.lab - np.array([lightness, a, b])
    diff[:, 0] *= L_NAME_WEIGHT
    return palette.names[int(np.argmin(np.einsum("ij,ij->i", diff, diff)))]


def _looks_like_skin(lab: np.ndarray) -> bool:
    # Human skin, light to dark, sits in a narrow wedge of warm hues at moderate chroma.
    lightness, a, b = lab
    hue = math.degrees(math.atan2(b, a))
    return 20.0 <= lightness <= 88.0 and 8.0 <= math.hypot(a, b) <= 48.0 and 20.0 <= hue <= 78.0


def _region(
    box: Sequence[float], size: tuple[int, int], original_size: tuple[int, int] | None
) -> Box:
    """The box in the decoded image's pixels, clipped to it; refuses boxes with no area."""
    if len(box) != 4 or not all(math.isfinite(v) for v in box):
        raise InvalidArgument(f"a box is four finite numbers (x0, y0, x1, y1), not {box!r}")
    x0, y0, x1, y1 = (float(v) for v in box)
    if x1 <= x0 or y1 <= y0:
        raise InvalidArgument(f"box {box!r} is empty: it needs x1 > x0 and y1 > y0")
    width, height = size
    if original_size is not None:
        if original_size[0] <= 0 or original_size[1] <= 0:
            raise InvalidArgument(f"original size {original_size!r} is not positive")
        sx, sy = width / original_size[0], height / original_size[1]
        x0, x1, y0, y1 = x0 * sx, x1 * sx, y0 * sy, y1 * sy
    x0, y0 = max(x0, 0.0), max(y0, 0.0)
    x1, y1 = min(x1, float(width)), min(y1, float(height))
    if x1 <= x0 or y1 <= y0:
        raise InvalidArgument(f"box {box!r} lies outside the {width}x{height} image")
    return x0, y0, x1, y1


def _sample(image: Image.Image, region: Box) -> Image.Image:
    """The box's central part, subsampled to at most SAMPLE_BUDGET pixels."""
    x0, y0, x1, y1 = region
    inset = (1.0 - CENTRAL) / 2.0
    dx, dy = (x1 - x0) * inset, (y1 - y0) * inset
    central = (x0 + dx, y0 + dy, x1 - dx, y1 - dy)
    w, h = central[2] - central[0], central[3] - central[1]
    shrink = min(1.0, math.sqrt(SAMPLE_BUDGET / max(w * h, 1e-9)))
    size = (max(1, round(w * shrink)), max(1, round(h * shrink)))
    return image.resize(size, Image.Resampling.NEAREST, box=central)


def _edge_distances(height: int, width: int) -> np.ndarray:
    """Each sampled pixel's squared distance from the sample's centre, 0 there and 2 at a
    corner, in the sample's row-major order."""
    v = np.linspace(-1.0, 1.0, height)[:, None] if height > 1 else np.zeros((1, 1))
    u = np.linspace(-1.0, 1.0, width)[None, :] if width > 1 else np.zeros((1, 1))
    return (u**2 + v**2).ravel()


def _clusters(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """k-means centroids of the pixels (in CIELAB) and each pixel's cluster."""
    scaled = points * np.array([L_CLUSTER_WEIGHT, 1.0, 1.0])
    k = min(CLUSTERS, len(points))
    if k < 2 or np.ptp(scaled, axis=0).max() < 1.0:
        return points.mean(axis=0, keepdims=True), np.zeros(len(points), dtype=np.int64)
    with warnings.catch_warnings():
        # An empty cluster is harmless here: it simply gets no pixels and no weight.
        warnings.simplefilter("ignore")
        _, labels = kmeans2(scaled, k, iter=10, minit="++", rng=np.random.default_rng(0))
    centroids = np.zeros((k, 3))
    counts = np.bincount(labels, minlength=k)
    for axis in range(3):
        centroids[:, axis] = np.bincount(labels, points[:, axis], minlength=k)
    centroids /= np.maximum(counts, 1)[:, None]
    return centroids, labels


def garment_colours(
    image: Image.Image,
    box: Sequence[float],
    original_size: tuple[int, int] | None = None,
) -> tuple[str, str]:
    """The primary and secondary colour names of the garment inside `box`.

    Args:
        image: the decoded photo, RGB.
        box: (x0, y0, x1, y1), Fashionpedia's layout, in the pixels of `image` or, when
            `original_size` is given, in those of the original photo (the decoded image may be a
            reduced JPEG draft of it). Parts outside the image are clipped away.
        original_size: the original photo's (width, height) when `box` is in its pixels.

    Returns:
        (primary, secondary), both names from `fashionrag.colours.COLOURS`; secondary is ""
        when one colour covers all but `SECONDARY_SHARE` of the garment.

    Raises:
        InvalidArgument: the box is not four finite numbers, has no area, or lies wholly outside
            the image.
    """
    region = _region(box, image.size, original_size)
    sample = _sample(image if image.mode == "RGB" else image.convert("RGB"), region)
    points = to_lab(sample).reshape(-1, 3)
    edge = _edge_distances(sample.height, sample.width)
    # Within the central part still, the middle is the surest: weight falls from 1 to 0.4.
    weights = 1.0 - 0.3 * edge
    centroids, labels = _clusters(points)
    k = len(centroids)
    cluster_weight = np.bincount(labels, weights, minlength=k)
    pixels = np.bincount(labels, minlength=k)
    edge_sum = np.bincount(labels, edge, minlength=k)
    # Mean distance from the centre of each cluster's pixels, and of all the other pixels.
    cluster_edge = edge_sum / np.maximum(pixels, 1)
    others_edge = (edge_sum.sum() - edge_sum) / np.maximum(len(edge) - pixels, 1)
    by_name: dict[str, float] = {}
    for i, centroid in enumerate(centroids):
        weight = cluster_weight[i]
        if weight <= 0:
            continue
        # Skin shows at a garment's edges (arms, neck, legs); skin-coloured stripes or a
        # skin-coloured garment spread over the whole box and keep their weight.
        if cluster_edge[i] > SKIN_EDGENESS * others_edge[i] and _looks_like_skin(centroid):
            weight *= SKIN_WEIGHT
        name = colour_name(centroid)
        by_name[name] = by_name.get(name, 0.0) + weight
    ranked = sorted(by_name.items(), key=lambda kv: (-kv[1], COLOURS.index(kv[0])))
    primary = ranked[0][0]
    total = sum(by_name.values())
    secondary = ranked[1][0] if len(ranked) > 1 and ranked[1][1] >= SECONDARY_SHARE * total else ""
    return primary, secondary
