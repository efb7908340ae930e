"""Generated photos of garments in known colours."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from devstack.garments import draw_outfit
from fashionrag.colours import COLOURS
from fashionrag.fashionpedia import GARMENTS


def test_the_same_seed_draws_the_same_outfit() -> None:
    first = draw_outfit(np.random.default_rng(3), 240, 320)
    again = draw_outfit(np.random.default_rng(3), 240, 320)
    other = draw_outfit(np.random.default_rng(4), 240, 320)
    assert first == again
    assert first.jpeg != other.jpeg


def test_garments_have_a_category_a_box_inside_the_photo_and_palette_colours() -> None:
    rng = np.random.default_rng(0)
    for _ in range(10):
        outfit = draw_outfit(rng, 240, 320, stripes=0.5)
        image = Image.open(io.BytesIO(outfit.jpeg))
        assert (image.format, image.size) == ("JPEG", (outfit.width, outfit.height))
        assert sum(g.category == "shoe" for g in outfit.garments) == 2
        for garment in outfit.garments:
            assert garment.category in GARMENTS
            x0, y0, x1, y1 = garment.box
            assert 0 <= x0 < x1 <= outfit.width and 0 <= y0 < y1 <= outfit.height
            assert garment.colour in COLOURS
            assert garment.secondary in (*COLOURS, "")
            assert garment.secondary != garment.colour
