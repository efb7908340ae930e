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
            "accepted (--max-image-pixels)"
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
            if image.mode == "RGB":
                image.load()  # convert() would copy an RGB image whole: twice the memory
            else:
                image = image.convert("RGB")
            return image, width, height
        except InvalidArgument:
            raise
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError, Warning) as exc:
            raise InvalidArgument(f"cannot decode image: {exc}") from None


def decode_reduced(data: bytes, max_pixels: int, min_side: int) -> tuple[Image.Image, int, int]:
    """`decode_image`, reduced as far as both sides keep `min_side` pixels: a JPEG while it
    decodes (Pillow's draft), any image still past twice that right after, so that the
    full-size pixels are freed at once and the model's own resize starts from a small image.

    Raises:
        InvalidArgument: as `decode_image`.
    """
    image, width, height = decode_image(data, max_pixels, min_side)
    return reduced(image, min_side), width, height


def reduced(image: Image.Image, min_side: int) -> Image.Image:
    """`image` shrunk by the largest integer factor that keeps both sides >= `min_side`, or as it
    is when that factor is 1 (or `min_side` is 0).

    The engine asks for twice the model's input side: a box-filter reduction to at least twice
    the final size is what Pillow's own `thumbnail` does before its last resampling
    (`reducing_gap=2`), the vectors stay within cosine 0.999 of a full-size decode
    (tests/embedder_service/test_engine.py), and the expensive bicubic runs on a small image.
    """
    factor = min(image.size) // min_side if min_side > 0 else 1
    return image.reduce(factor) if factor >= 2 else image
