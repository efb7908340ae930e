"""Decoding of untrusted image bytes: one bad image is one item's error, never the batch's."""

from __future__ import annotations

import io
import warnings

from PIL import Image, UnidentifiedImageError

from fashionrag.errors import InvalidArgument

ACCEPTED = "JPEG, PNG, WebP, GIF, BMP and TIFF"


def _open(data: bytes, max_pixels: int) -> Image.Image:
    """Open (read the header of) an image and check its size, before any pixel is decoded."""
    if not data:
        raise InvalidArgument("image is empty (0 bytes)")
    try:
        image = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise InvalidArgument(
            f"cannot identify an image in {len(data)} bytes; {ACCEPTED} are accepted"
        ) from None
    width, height = image.size
    if width * height > max_pixels:
        raise InvalidArgument(
            f"image is {width}x{height} = {width * height} pixels; at most {max_pixels} are "
            "accepted"
        )
    return image


def check_header(data: bytes, max_pixels: int) -> tuple[str, int, int]:
    """The format, width and height from an image's header, its size checked.

    Raises:
        InvalidArgument: empty, not an image, or larger than `max_pixels`.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            image = _open(data, max_pixels)
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
            raise InvalidArgument(f"cannot read image header: {exc}") from None
        return image.format or "", image.width, image.height


def decode_image(data: bytes, max_pixels: int, draft_size: int = 0) -> tuple[Image.Image, int, int]:
    """Decode encoded image bytes into an RGB image.

    Args:
        data: the encoded file (JPEG, PNG, WebP or any format Pillow reads).
        max_pixels: the largest width x height accepted, a guard against decompression bombs.
        draft_size: when > 0, let a JPEG decode at a reduced scale (1/2, 1/4, 1/8) as long as
            both sides stay at least this many pixels: much less work for a large photo that
            the model will shrink anyway.

    Returns:
        The RGB image (possibly reduced) and the original width and height.

    Raises:
        InvalidArgument: the bytes are empty, not an image, truncated, or too large.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            image = _open(data, max_pixels)
            width, height = image.size
            if draft_size > 0 and image.format == "JPEG":
                image.draft("RGB", (draft_size, draft_size))
            return image.convert("RGB"), width, height
        except InvalidArgument:
            raise
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError, Warning) as exc:
            raise InvalidArgument(f"cannot decode image: {exc}") from None
