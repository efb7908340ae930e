"""Where a box of an image is cropped for its own vector: corners put in order, clipped to the
image, grown by a margin and squared up, and cut out of the decoded (maybe reduced) image.

CLIP's preprocessing resizes a picture's short side to the model's input and centre-crops a
square, so a tall box (pants, a dress) given as it is loses its top and bottom, and a wide one (a
belt, shoes) its sides. Squaring the crop around the box first keeps the whole box in the model's
input; the margin adds a ring of context. benchmarks/bench_regions.py measures both on
Fashionpedia-like boxes (898 garments of generated outfits): unsquared, the model sees 68 % of a
box on average with no margin, 84 % with 10 % and 96 % with 20 %, and only 57-59 % of pants,
dresses and coats without margin; squared, it sees all of every box, and the box fills a median
61 % of the input with no margin, 50 % with 5 %, 42 % with 10 %, 31 % with 20 %.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from PIL import Image

from fashionrag.errors import InvalidArgument

Box = tuple[float, float, float, float]

# Each side of the crop lies this share of the box's longer side beyond the box (before the
# image's edges cut it): a thin ring of context so the garment's outline does not lie on the
# input's edge, while the box still fills half the input in the median (38 % at the 10th
# percentile); larger margins shrink the garment for background the model does not need.
MARGIN = 0.05
# Crops are squared up around their box (so CLIP's own centre crop cuts nothing of the box).
SQUARE = True
# A box narrower or lower than this, in the original image's pixels, has nothing to embed.
MIN_SIDE = 1.0
# Where a square crop reaches past the image, the missing part is CLIP's mean colour: after the
# model's normalisation it is zero, the least informative input.
PAD_COLOUR = (122, 116, 104)


def normalise_box(box: Sequence[float], width: int, height: int) -> Box:
    """The box with its corners in order (x0 < x1, y0 < y1), clipped to a `width` x `height`
    image.

    Raises:
        InvalidArgument: not four finite numbers, narrower or lower than MIN_SIDE pixels, or
            (almost) wholly outside the image.
    """
    if len(box) != 4 or not all(math.isfinite(v) for v in box):
        raise InvalidArgument(
            f"box {tuple(box)!r} is not four finite numbers; a box is (x0, y0, x1, y1) in the "
            "original image's pixels"
        )
    x0, x1 = sorted((float(box[0]), float(box[2])))
    y0, y1 = sorted((float(box[1]), float(box[3])))
    if x1 - x0 < MIN_SIDE or y1 - y0 < MIN_SIDE:
        raise InvalidArgument(
            f"box {tuple(box)!r} is empty: it needs at least {MIN_SIDE:g} pixel between x0 and x1 "
            "and between y0 and y1"
        )
    clipped = (max(x0, 0.0), max(y0, 0.0), min(x1, float(width)), min(y1, float(height)))
    if clipped[2] - clipped[0] < MIN_SIDE or clipped[3] - clipped[1] < MIN_SIDE:
        raise InvalidArgument(
            f"box {tuple(box)!r} lies outside the {width}x{height} image; boxes are in its "
            f"pixels, 0 <= x <= {width} and 0 <= y <= {height}"
        )
    return clipped


def _place(start: float, end: float, size: float, limit: float) -> tuple[float, float]:
    """A span of `size` centred on [start, end], moved (not shrunk) to stay inside [0, limit]
    where it fits, else to cover the whole of [0, limit] (the rest is padding)."""
    centre = (start + end) / 2
    lowest, highest = min(0.0, limit - size), max(0.0, limit - size)
    first = min(max(centre - size / 2, lowest), highest)
    return first, first + size


def crop_rect(
    box: Box, width: int, height: int, margin: float = MARGIN, square: bool = SQUARE
) -> Box:
    """The rectangle to cut out for a normalised `box` of a `width` x `height` image.

    The box grows by `margin` of its longer side on every side; with `square`, the rectangle is
    the square centred on it, moved to stay inside the image where it fits, no larger than the
    image's longer side, and past the shorter side where it must be (that part is padding).
    Without `square` the rectangle is clipped to the image.
    """
    x0, y0, x1, y1 = box
    grow = margin * max(x1 - x0, y1 - y0)
    if square:
        side = min(max(x1 - x0, y1 - y0) + 2 * grow, float(max(width, height)))
        cx0, cx1 = _place(x0, x1, side, float(width))
        cy0, cy1 = _place(y0, y1, side, float(height))
        return cx0, cy0, cx1, cy1
    return (
        max(x0 - grow, 0.0),
        max(y0 - grow, 0.0),
        min(x1 + grow, float(width)),
        min(y1 + grow, float(height)),
    )


def draft_size(rects: Sequence[Box], width: int, height: int, draft: int) -> int:
    """The size to pass as a JPEG draft request so that every crop in `rects` keeps at least
    `draft` pixels on its shorter side after the reduced decode (and so does the image)."""
    if draft <= 0 or not rects:
        return draft
    smallest = min(min(r[2] - r[0], r[3] - r[1]) for r in rects)
    # Pillow reduces by the largest of 1/2, 1/4, 1/8 that keeps both sides >= the request, so
    # asking for the image's short side scaled as `smallest` would be to `draft` bounds the
    # reduction to smallest / draft.
    return max(draft, math.ceil(min(width, height) * draft / max(smallest, 1.0)))


def crop(image: Image.Image, rect: Box, original_size: tuple[int, int]) -> Image.Image:
    """Cut `rect` (in the original image's pixels) out of `image`, which may be a reduced decode
    of it; what lies outside the image is PAD_COLOUR."""
    sx, sy = image.width / original_size[0], image.height / original_size[1]
    left, top = round(rect[0] * sx), round(rect[1] * sy)
    right = max(round(rect[2] * sx), left + 1)
    bottom = max(round(rect[3] * sy), top + 1)
    if left >= 0 and top >= 0 and right <= image.width and bottom <= image.height:
        return image.crop((left, top, right, bottom))
    canvas = Image.new("RGB", (right - left, bottom - top), PAD_COLOUR)
    inside = (max(left, 0), max(top, 0), min(right, image.width), min(bottom, image.height))
    canvas.paste(image.crop(inside), (inside[0] - left, inside[1] - top))
    return canvas
