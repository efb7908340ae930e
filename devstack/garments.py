"""Generated photos of a figure wearing garments of known colours, with Fashionpedia-like boxes.

Each photo has a background (plain, gradient, striped or blotchy), a figure in a skin tone (head,
neck, arms, legs) and garments drawn over it: a top (or a dress, a jacket, a coat), a bottom
(pants, shorts or a skirt) unless the top is a dress, two shoes, and sometimes a hat and a bag.
Garments are textured (weave, heather noise, stripes of a second colour), shaded (a lighting
gradient, folds), the scene has a slight colour cast, and the photo is JPEG-compressed. Each
garment's box is a little larger than the garment, so background and skin show at its edges, as
in Fashionpedia's boxes.

    rng = np.random.default_rng(seed)
    outfit = draw_outfit(rng, 480, 640)
    outfit.jpeg, [(g.category, g.box, g.colour, g.secondary) for g in outfit.garments]

The colours are drawn from shades a shopper calls by each palette name (fashionrag.colours),
chosen apart from the reference values the embedder names colours with, so the benchmark does
not grade the namer on its own references.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from fashionrag.colours import COLOURS
from fashionrag.fashionpedia import GARMENTS

# Shades a shopper gives each palette name, as sRGB.
SHADES: dict[str, tuple[str, ...]] = {
    "black": ("#0a0a0a", "#111111", "#1c1c1c", "#0b0b12", "#161310"),
    "white": ("#fafafa", "#ffffff", "#f5f5f5", "#fdfdf8", "#f7f9fc"),
    "grey": ("#8c8c8c", "#9e9e9e", "#6e6e6e", "#b5b5b5", "#7a7d80", "#595959"),
    "beige": ("#e6d3b3", "#d9c5a0", "#f0e0c8", "#cdb891", "#e1c699", "#d6c6a8"),
    "brown": ("#7a4a24", "#5d3a1a", "#8e5a33", "#4a2c17", "#6b3e26", "#9a6035"),
    "red": ("#e0201b", "#c41e3a", "#b0171f", "#ee2c2c", "#9b1b30", "#d2222d"),
    "pink": ("#ff9ec4", "#f78fa7", "#ff85a2", "#e86a92", "#ffb6c1", "#f06eaa"),
    "orange": ("#ff7f00", "#f58025", "#ff9933", "#e86100", "#fa8c35", "#ff8243"),
    "yellow": ("#ffe135", "#fada5e", "#ffd300", "#f8de7e", "#fce205", "#ffea00"),
    "green": ("#2e8b57", "#3cb371", "#1f7a3a", "#4caf50", "#2a7f2a", "#6b8e23"),
    "blue": ("#2f6fd6", "#3a75c4", "#1f4fbf", "#4682b4", "#5b92e5", "#2a52be"),
    "navy": ("#1a2340", "#0f1c3f", "#192a56", "#0b1d51", "#22304f"),
    "purple": ("#6a0dad", "#7b3fa0", "#9b59b6", "#663399", "#8e44ad", "#5d2b7d"),
}

# Skin tones from light to dark.
SKIN_TONES = (
    "#ffdbac",
    "#f3d3c2",
    "#f1c27d",
    "#e0ac69",
    "#c68642",
    "#a1665e",
    "#8d5524",
    "#5c3a21",
)

TOPS = ("top, t-shirt, sweatshirt", "shirt, blouse", "sweater", "cardigan", "jacket", "coat")
BOTTOMS = ("pants", "shorts", "skirt")

RGB = tuple[float, float, float]


@dataclass(frozen=True)
class Garment:
    """One garment in a generated photo.

    Attributes:
        category: its Fashionpedia category name (one of fashionrag.fashionpedia.GARMENTS).
        box: (x0, y0, x1, y1) in the photo's pixels, a little larger than the garment.
        colour: the palette name of its main colour.
        secondary: the palette name of its stripes' colour, "" for a garment of one colour.
    """

    category: str
    box: tuple[float, float, float, float]
    colour: str
    secondary: str = ""


@dataclass(frozen=True)
class Outfit:
    """A generated photo: the JPEG file's bytes, its size and the garments in it."""

    jpeg: bytes
    width: int
    height: int
    garments: tuple[Garment, ...]


def _hex(value: str) -> RGB:
    return (int(value[1:3], 16), int(value[3:5], 16), int(value[5:7], 16))


def _shade(rng: np.random.Generator, name: str) -> np.ndarray:
    """One shade of a palette colour, varied a little as dyes and fabrics vary."""
    shades = SHADES[name]
    base = np.array(_hex(shades[int(rng.integers(len(shades)))]), dtype=np.float64)
    return np.clip(base * rng.uniform(0.94, 1.04) + rng.uniform(-6, 6, 3), 0, 255)


class _Canvas:
    """The photo being drawn, as floats, with a helper to paint a textured shape onto it."""

    def __init__(self, rng: np.random.Generator, width: int, height: int) -> None:
        self.rng = rng
        self.width, self.height = width, height
        self.pixels = _background(rng, width, height)

    def paint(
        self, draw_mask: Callable[[ImageDraw.ImageDraw], None], texture: _Texture
    ) -> tuple[int, int, int, int] | None:
        """Paint the shape `draw_mask` draws, filled with `texture`; returns its bounding box."""
        mask_image = Image.new("L", (self.width, self.height))
        draw_mask(ImageDraw.Draw(mask_image))
        bounds = mask_image.getbbox()
        if bounds is None:
            return None
        x0, y0, x1, y1 = bounds
        mask = np.asarray(mask_image.crop(bounds), dtype=np.float64)[..., None] / 255.0
        fill = texture.render(self.rng, y1 - y0, x1 - x0)
        area = self.pixels[y0:y1, x0:x1]
        area[:] = area * (1 - mask) + fill * mask
        return x0, y0, x1, y1


@dataclass
class _Texture:
    """A fabric: its colour, an optional stripe colour, a weave or heather pattern, shading."""

    colour: np.ndarray
    stripe: np.ndarray | None = None
    pattern: str = "plain"
    shading: bool = True

    def render(self, rng: np.random.Generator, height: int, width: int) -> np.ndarray:
        y, x = np.mgrid[0:height, 0:width].astype(np.float64)
        fill = np.broadcast_to(self.colour, (height, width, 3)).copy()
        if self.stripe is not None:
            period = rng.uniform(10, 30)
            share = rng.uniform(0.2, 0.35)
            along = y if rng.random() < 0.6 else x
            phase = rng.uniform(0, period)
            fill[((along + phase) % period) < share * period] = self.stripe
        factor = np.ones((height, width))
        if self.pattern == "weave":
            period = rng.uniform(2.5, 5)
            factor *= 1 + 0.06 * np.sin(2 * np.pi * x / period) * np.sin(2 * np.pi * y / period)
        elif self.pattern == "heather":
            factor *= 1 + rng.normal(0, 0.07, (height, width))
        if self.shading:
            angle = rng.uniform(0, 2 * np.pi)
            span = max(width, height)
            ramp = (np.cos(angle) * x + np.sin(angle) * y) / span
            factor *= 1 + rng.uniform(0.0, 0.14) * (ramp - ramp.mean())
            period = rng.uniform(0.15, 0.4) * width + 4
            folds = np.maximum(0, np.sin(2 * np.pi * x / period + rng.uniform(0, 6))) ** 4
            factor *= 1 - rng.uniform(0.0, 0.22) * folds
        fill = fill * factor[..., None] + rng.normal(0, rng.uniform(1.5, 5), (height, width, 3))
        return np.clip(fill, 0, 255)


def _background(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """A random backdrop: plain, a gradient, stripes or soft blotches, with sensor noise."""
    first = rng.uniform(0, 255, 3)
    second = rng.uniform(0, 255, 3)
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    kind = rng.integers(4)
    if kind == 0:
        weight = np.zeros((height, width))
    elif kind == 1:
        weight = (y / height * rng.uniform(0.3, 1) + x / width * rng.uniform(0, 0.5)).clip(0, 1)
    elif kind == 2:
        period = rng.uniform(20, 80)
        weight = ((x + y * rng.uniform(-1, 1)) % period < period / 2).astype(np.float64)
    else:
        blobs = Image.fromarray(rng.uniform(0, 255, (height // 32 + 2, width // 32 + 2)))
        blobs = blobs.convert("L").resize((width, height), Image.Resampling.BICUBIC)
        weight = np.asarray(blobs, dtype=np.float64) / 255.0
    pixels = first * (1 - weight[..., None]) + second * weight[..., None]
    return pixels + rng.normal(0, 3, (height, width, 3))


def _texture(rng: np.random.Generator, colour: str, stripe: str) -> _Texture:
    pattern = ("plain", "weave", "heather")[int(rng.integers(3))]
    return _Texture(_shade(rng, colour), _shade(rng, stripe) if stripe else None, pattern)


def _colours(rng: np.random.Generator, stripes: float) -> tuple[str, str]:
    """A garment's colour and, with probability `stripes`, a different stripe colour."""
    colour = COLOURS[int(rng.integers(len(COLOURS)))]
    if rng.random() >= stripes:
        return colour, ""
    others = [c for c in COLOURS if c != colour]
    return colour, others[int(rng.integers(len(others)))]


def _box(
    bounds: tuple[int, int, int, int], rng: np.random.Generator, width: int, height: int
) -> tuple[float, float, float, float]:
    """The garment's box as an annotator draws it: a few per cent larger on every side."""
    x0, y0, x1, y1 = bounds
    pad_x = (x1 - x0) * rng.uniform(0.03, 0.1) + 2
    pad_y = (y1 - y0) * rng.uniform(0.03, 0.1) + 2
    return (
        float(max(0.0, x0 - pad_x)),
        float(max(0.0, y0 - pad_y)),
        float(min(float(width), x1 + pad_x)),
        float(min(float(height), y1 + pad_y)),
    )


def draw_outfit(
    rng: np.random.Generator,
    width: int = 480,
    height: int = 640,
    stripes: float = 0.2,
    quality: int | None = None,
) -> Outfit:
    """A JPEG photo of a figure in garments of known colours, and those garments.

    Args:
        rng: the source of every random choice: the same seed gives the same photo.
        width: the photo's width in pixels.
        height: the photo's height in pixels.
        stripes: the chance that a garment has stripes of a second colour.
        quality: the JPEG quality; None draws one between 55 and 92.

    Returns:
        The photo and its garments, in the order drawn (later ones lie over earlier ones).
    """
    canvas = _Canvas(rng, width, height)
    u = height * rng.uniform(0.82, 0.95)
    top = rng.uniform(0.01, 0.99) * (height - u)
    cx = width * rng.uniform(0.42, 0.58)
    skin = _Texture(
        np.array(_hex(SKIN_TONES[int(rng.integers(len(SKIN_TONES)))]), dtype=np.float64)
        * rng.uniform(0.92, 1.05),
        pattern="plain",
    )

    def at(dx: float, dy: float) -> tuple[float, float]:
        return cx + dx * u, top + dy * u

    shoulder, hip = 0.17, 0.5
    half_shoulder = 0.11
    hands = {side: at(side * (half_shoulder + rng.uniform(0.03, 0.07)), 0.52) for side in (-1, 1)}
    feet = {side: at(side * rng.uniform(0.045, 0.07), 0.93) for side in (-1, 1)}
    limb = max(2, round(0.05 * u))

    def figure(draw: ImageDraw.ImageDraw) -> None:
        draw.ellipse((*at(-0.05, 0.0), *at(0.05, 0.14)), fill=255)
        draw.rectangle((*at(-0.025, 0.12), *at(0.025, 0.19)), fill=255)
        draw.polygon([at(-0.1, shoulder), at(0.1, shoulder), at(0.09, hip), at(-0.09, hip)], 255)
        for side in (-1, 1):
            draw.line(
                (at(side * half_shoulder, shoulder + 0.01), hands[side]), fill=255, width=limb
            )
            hx, hy = hands[side]
            draw.ellipse((hx - limb * 0.7, hy - limb * 0.5, hx + limb * 0.7, hy + limb * 1.2), 255)
        for side in (-1, 1):
            draw.line((at(side * 0.05, hip - 0.02), feet[side]), fill=255, width=round(0.07 * u))

    canvas.paint(figure, skin)
    garments: list[Garment] = []

    def wear(
        category: str,
        shape: Callable[[ImageDraw.ImageDraw], None],
        colours: tuple[str, str] | None = None,
    ) -> None:
        colour, stripe = colours or _colours(rng, stripes)
        bounds = canvas.paint(shape, _texture(rng, colour, stripe))
        if bounds is not None:
            garments.append(Garment(category, _box(bounds, rng, width, height), colour, stripe))

    dress = rng.random() < 0.15
    top_category = "dress" if dress else TOPS[int(rng.integers(len(TOPS)))]
    if not dress:
        # A coat hides most of a skirt or shorts: over those, the bottom's colour is unknowable.
        bottom = "pants" if top_category == "coat" else BOTTOMS[int(rng.integers(len(BOTTOMS)))]
        hem = {"pants": 0.91, "shorts": 0.66, "skirt": rng.uniform(0.66, 0.82)}[bottom]

        def bottoms(draw: ImageDraw.ImageDraw) -> None:
            if bottom == "skirt":
                flare = rng.uniform(0.1, 0.17)
                draw.polygon(
                    [at(-0.09, hip - 0.03), at(0.09, hip - 0.03), at(flare, hem), at(-flare, hem)],
                    255,
                )
                return
            draw.rectangle((*at(-0.095, hip - 0.03), *at(0.095, hip + 0.1)), fill=255)
            for side in (-1, 1):
                fx = feet[side][0]
                knee = (cx + (fx - cx) * (hem - hip) / (0.93 - hip), top + hem * u)
                draw.line((at(side * 0.05, hip), knee), fill=255, width=round(0.085 * u))

        wear(bottom, bottoms)

    sleeve = rng.uniform(0.0, 1.0) if top_category not in ("jacket", "coat") else 1.0
    hem = {"dress": rng.uniform(0.7, 0.82), "coat": rng.uniform(0.6, 0.66)}.get(
        top_category, hip + rng.uniform(0.0, 0.05)
    )

    def upper(draw: ImageDraw.ImageDraw) -> None:
        flare = 0.1 if top_category not in ("dress", "coat") else rng.uniform(0.13, 0.18)
        waist = hip if top_category not in ("dress", "coat") else 0.38
        draw.polygon(
            [
                at(-0.115, shoulder - 0.01),
                at(0.115, shoulder - 0.01),
                at(0.1, waist),
                at(flare, hem),
                at(-flare, hem),
                at(-0.1, waist),
            ],
            255,
        )
        if sleeve > 0.2:
            for side in (-1, 1):
                (sx, sy), (hx, hy) = at(side * half_shoulder, shoulder + 0.01), hands[side]
                end = (sx + (hx - sx) * sleeve * 0.92, sy + (hy - sy) * sleeve * 0.92)
                draw.line(((sx, sy), end), fill=255, width=round(limb * 1.3))

    wear(top_category, upper)
    canvas.paint(lambda d: d.ellipse((*at(-0.03, 0.15), *at(0.03, 0.2)), fill=255), skin)

    shoe_colours = _colours(rng, stripes / 2)
    for side in (-1, 1):
        fx, fy = feet[side]

        def shoe(
            draw: ImageDraw.ImageDraw, fx: float = fx, fy: float = fy, side: int = side
        ) -> None:
            # The toe points outwards: the shoe reaches further on the figure's outer side.
            toe = side * 0.03 * u
            left, right = fx - 0.04 * u + min(toe, 0), fx + 0.04 * u + max(toe, 0)
            draw.rounded_rectangle(
                (left, fy - 0.015 * u, right, fy + 0.045 * u),
                radius=0.015 * u,
                fill=255,
            )

        wear("shoe", shoe, shoe_colours)

    if rng.random() < 0.25:
        wear("hat", lambda d: d.chord((*at(-0.08, -0.01), *at(0.08, 0.11)), 180, 360, fill=255))
    if rng.random() < 0.3:
        side = -1 if rng.random() < 0.5 else 1
        bag_top = rng.uniform(0.38, 0.5)

        def bag(draw: ImageDraw.ImageDraw) -> None:
            inner, outer = sorted((side * 0.13, side * 0.27))
            draw.rounded_rectangle(
                (*at(inner, bag_top), *at(outer, bag_top + 0.13)), radius=0.02 * u, fill=255
            )

        wear("bag, wallet", bag)

    assert all(g.category in GARMENTS for g in garments)
    image = Image.fromarray(
        np.clip(canvas.pixels * rng.uniform(0.96, 1.04, 3), 0, 255).astype(np.uint8)
    )
    image = image.filter(ImageFilter.GaussianBlur(0.6))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=int(quality or rng.integers(55, 93)))
    return Outfit(out.getvalue(), width, height, tuple(garments))
