"""Box geometry of region crops: corners in order, clipping, refusals, margin, squaring, drafts."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
from PIL import Image

from embedder_service import regions
from embedder_service.regions import MARGIN, PAD_COLOUR, crop, crop_rect, draft_size, normalise_box
from fashionrag.errors import InvalidArgument


def test_reversed_corners_are_swapped() -> None:
    assert normalise_box((60, 80, 10, 20), 100, 100) == (10, 20, 60, 80)


def test_box_past_the_edges_is_clipped() -> None:
    assert normalise_box((-5, -10, 150, 90), 100, 80) == (0, 0, 100, 80)


@pytest.mark.parametrize(
    ("box", "message"),
    [
        ((math.nan, 0, 10, 10), "not four finite numbers"),
        ((0, 0, math.inf, 10), "not four finite numbers"),
        ((0, 0, 10), "not four finite numbers"),
        ((10, 10, 10, 50), "is empty"),
        ((10, 10, 50, 10), "is empty"),
        ((10, 10, 10.5, 50), "is empty"),
        ((120, 10, 150, 50), "outside the 100x80 image"),
        ((-50, -50, -10, -10), "outside the 100x80 image"),
        ((10, 80, 50, 120), "outside the 100x80 image"),
    ],
)
def test_bad_boxes_are_refused_saying_what_is_allowed(box: tuple[float, ...], message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        normalise_box(box, 100, 80)


def test_square_crop_grows_the_longer_side_by_the_margin_around_the_box() -> None:
    x0, y0, x1, y1 = crop_rect((100, 200, 160, 380), 400, 500, margin=0.1, square=True)
    assert x1 - x0 == pytest.approx(180 * 1.2) == pytest.approx(y1 - y0)
    assert ((x0 + x1) / 2, (y0 + y1) / 2) == pytest.approx((130, 290))


def test_square_crop_moves_inside_the_image_rather_than_past_its_edge() -> None:
    rect = crop_rect((0, 10, 20, 30), 400, 500, margin=0.5, square=True)
    assert rect == pytest.approx((0, 0, 40, 40))


def test_square_crop_wider_than_the_image_stays_on_the_box_capped_at_its_longer_side() -> None:
    # A full-height box in a portrait photo: the square, centred on the box, reaches past both
    # sides (padding there), and is no higher than the photo.
    x0, y0, x1, y1 = crop_rect((100, 0, 200, 600), 400, 600, margin=0.1, square=True)
    assert (x0, y0, x1, y1) == pytest.approx((-150, 0, 450, 600))


def test_crop_without_squaring_is_clipped_to_the_image() -> None:
    assert crop_rect((10, 10, 90, 40), 100, 50, margin=0.1, square=False) == pytest.approx(
        (2, 2, 98, 48)
    )


def test_the_model_sees_the_whole_box_with_the_chosen_settings() -> None:
    # CLIP keeps the centred square of the crop's short side: with the chosen settings the
    # crop is that square already, so every box of any shape reaches the model whole.
    for box in [(10, 10, 30, 290), (10, 100, 290, 120), (0, 0, 300, 300), (5, 5, 6, 7)]:
        x0, y0, x1, y1 = crop_rect(normalise_box(box, 300, 300), 300, 300)
        assert x1 - x0 == pytest.approx(y1 - y0)
        assert x0 <= box[0] and y0 <= box[1] and x1 >= box[2] and y1 >= box[3]
    assert regions.SQUARE and 0 < MARGIN < 0.5


def test_crop_inside_the_image_is_its_pixels() -> None:
    pixels = np.random.default_rng(0).integers(0, 255, (50, 80, 3), dtype=np.uint8)
    image = Image.fromarray(pixels)
    out = crop(image, (10, 5, 30, 45), (80, 50))
    np.testing.assert_array_equal(np.asarray(out), pixels[5:45, 10:30])


def test_crop_past_the_image_is_padded_with_the_mean_colour() -> None:
    image = Image.new("RGB", (40, 20), (255, 0, 0))
    out = np.asarray(crop(image, (0, -10, 40, 30), (40, 20)))
    assert out.shape == (40, 40, 3)
    assert tuple(out[0, 0]) == PAD_COLOUR and tuple(out[39, 39]) == PAD_COLOUR
    assert tuple(out[20, 20]) == (255, 0, 0)


def test_crop_of_a_reduced_decode_scales_the_box() -> None:
    image = Image.new("RGB", (50, 40), (0, 0, 255))
    assert crop(image, (20, 40, 60, 80), (100, 80)).size == (20, 20)


@pytest.mark.parametrize(
    ("rects", "reduction"),
    [
        ([], 8),  # the whole photo alone: 200x150 still covers 64 pixels
        ([(0.0, 0.0, 1600.0, 1200.0)], 8),
        ([(100.0, 100.0, 400.0, 500.0)], 4),  # 300 px: 75 px at 1/4
        ([(0.0, 0.0, 1600.0, 1200.0), (100.0, 100.0, 300.0, 300.0)], 2),  # 200 px: 100 at 1/2
        ([(100.0, 100.0, 140.0, 140.0)], 1),  # 40 px: no reduction at all
    ],
)
def test_draft_request_keeps_every_crop_as_large_as_the_whole_image_needs(
    rects: list[regions.Box], reduction: int
) -> None:
    out = io.BytesIO()
    Image.new("RGB", (1600, 1200), "white").save(out, "JPEG")
    image = Image.open(out)
    request = draft_size(rects, 1600, 1200, 64)
    image.draft("RGB", (request, request))
    assert 1600 / image.size[0] == reduction


def test_no_draft_stays_no_draft() -> None:
    assert draft_size([(0.0, 0.0, 10.0, 10.0)], 1600, 1200, 0) == 0
