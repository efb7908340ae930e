"""Naming a garment's colours from the pixels inside its box."""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image, ImageDraw

from devstack.garments import draw_outfit
from embedder_service.garment_colour import colour_name, garment_colours, to_lab
from fashionrag.colours import COLOURS
from fashionrag.errors import InvalidArgument

# A plain, everyday shade of each palette colour.
SOLID = {
    "black": "#101010",
    "white": "#fcfcfc",
    "grey": "#888888",
    "beige": "#e8d8b8",
    "brown": "#6b4226",
    "red": "#d01010",
    "pink": "#ff9eb5",
    "orange": "#ff8000",
    "yellow": "#ffe020",
    "green": "#2e9e40",
    "blue": "#2060d0",
    "navy": "#101c48",
    "purple": "#7030a0",
}
SKIN = "#e0ac69"


def jpeg_round_trip(image: Image.Image, quality: int = 80) -> Image.Image:
    out = io.BytesIO()
    image.save(out, "JPEG", quality=quality)
    return Image.open(io.BytesIO(out.getvalue())).convert("RGB")


def test_the_solid_shades_cover_the_whole_palette() -> None:
    assert set(SOLID) == set(COLOURS)


@pytest.mark.parametrize("name", COLOURS)
def test_a_solid_garment_is_named_its_colour_with_no_secondary(name: str) -> None:
    image = Image.new("RGB", (60, 80), SOLID[name])
    assert garment_colours(image, (0, 0, 60, 80)) == (name, "")


@pytest.mark.parametrize("name", COLOURS)
def test_one_lab_colour_is_named_from_the_palette(name: str) -> None:
    lab = to_lab(Image.new("RGB", (1, 1), SOLID[name]))[0, 0]
    assert colour_name(lab) == name


def test_white_and_black_are_named_by_lightness_not_by_a_faint_tint() -> None:
    assert colour_name((97.0, 1.5, 4.0)) == "white"
    assert colour_name((55.0, -2.0, 3.0)) == "grey"
    assert colour_name((8.0, 2.0, -3.0)) == "black"


def shaded_red_top_between_arms() -> tuple[Image.Image, tuple[float, float, float, float]]:
    """A narrow red top with folds between bare arms, a green wall behind: in its box the top
    covers a quarter, skin more than a third, the wall the rest."""
    image = Image.new("RGB", (200, 240), "#3c8c50")
    draw = ImageDraw.Draw(image)
    draw.rectangle((48, 20, 152, 240), fill=SKIN)
    draw.rectangle((84, 40, 116, 220), fill="#c81e1e")
    for x in range(88, 116, 12):
        draw.rectangle((x, 40, x + 4, 220), fill="#961414")
    return jpeg_round_trip(image, quality=70), (0, 0, 200, 240)


def test_a_red_garment_with_skin_and_background_at_its_edges_is_red() -> None:
    image, box = shaded_red_top_between_arms()
    assert garment_colours(image, box)[0] == "red"


def test_skin_coloured_stripes_across_a_garment_still_count() -> None:
    image = Image.new("RGB", (120, 120), SOLID["blue"])
    draw = ImageDraw.Draw(image)
    for y in range(0, 120, 20):
        draw.rectangle((0, y, 120, y + 7), fill=SKIN)
    primary, secondary = garment_colours(jpeg_round_trip(image), (0, 0, 120, 120))
    assert (primary, secondary) == ("blue", "beige")


def test_a_two_colour_striped_garment_is_named_both_colours() -> None:
    image = Image.new("RGB", (160, 200), SOLID["navy"])
    draw = ImageDraw.Draw(image)
    for y in range(0, 200, 20):
        draw.rectangle((0, y, 160, y + 7), fill=SOLID["white"])
    primary, secondary = garment_colours(jpeg_round_trip(image), (0, 0, 160, 200))
    assert (primary, secondary) == ("navy", "white")


def test_a_box_partly_outside_the_image_is_clipped() -> None:
    image = Image.new("RGB", (100, 100), SOLID["green"])
    assert garment_colours(image, (-60.0, -40.0, 50.0, 130.0)) == ("green", "")


def test_a_box_in_the_original_pixels_is_scaled_to_a_reduced_decode() -> None:
    original = Image.new("RGB", (400, 200), SOLID["red"])
    ImageDraw.Draw(original).rectangle((200, 0, 400, 200), fill=SOLID["blue"])
    reduced = original.resize((100, 50))
    assert garment_colours(reduced, (220, 20, 380, 180), original_size=(400, 200)) == ("blue", "")
    assert garment_colours(reduced, (20, 20, 180, 180), original_size=(400, 200)) == ("red", "")


def test_a_box_of_a_single_pixel_is_named() -> None:
    image = Image.new("RGB", (10, 10), SOLID["orange"])
    assert garment_colours(image, (3, 3, 4, 4)) == ("orange", "")


@pytest.mark.parametrize(
    "box",
    [
        (10, 10, 10, 40),
        (10, 40, 30, 10),
        (0, 0, 0, 0),
        (math.nan, 0, 10, 10),
        (0, 0, math.inf, 10),
        (0, 0, 10),
        (150, 150, 300, 300),
        (-30, -30, -1, -1),
    ],
)
def test_an_empty_degenerate_or_outside_box_is_refused(box: Sequence[float]) -> None:
    with pytest.raises(InvalidArgument):
        garment_colours(Image.new("RGB", (100, 100), "red"), box)


def test_a_non_positive_original_size_is_refused() -> None:
    with pytest.raises(InvalidArgument):
        garment_colours(Image.new("RGB", (10, 10)), (0, 0, 5, 5), original_size=(0, 10))


def test_names_are_the_same_from_many_decode_threads() -> None:
    rng = np.random.default_rng(5)
    items = []
    for _ in range(4):
        outfit = draw_outfit(rng, 240, 320)
        image = Image.open(io.BytesIO(outfit.jpeg)).convert("RGB")
        items += [(image, garment.box) for garment in outfit.garments]
    alone = [garment_colours(image, box) for image, box in items]
    with ThreadPoolExecutor(8) as pool:
        together = list(pool.map(lambda item: garment_colours(*item), items * 4))
    assert together == alone * 4
