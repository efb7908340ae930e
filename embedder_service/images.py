"""Decoding of untrusted image bytes: one bad image is one item's error, never the batch's."""

from __future__ import annotations

import io
import warnings

from PIL import Image, UnidentifiedImageError

from fashionrag.errors import InvalidArgument


def decode_image(data: bytes, max_pixels: int) -> Image.Image:
    """Decode encoded image bytes into an RGB image.

    Args:
        data: the encoded file (JPEG, PNG, WebP or any format Pillow reads).
        max_pixels: the largest width x height accepted, a guard against decompression bombs.

    Raises:
        InvalidArgument: the bytes are empty, not an image, truncated, or too large.
    """
    if not data:
        raise InvalidArgument("image is empty (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            width, height = image.size
            if width * height > max_pixels:
                raise InvalidArgument(
                    f"image is {width}x{height} = {width * height} pixels; at most "
                    f"{max_pixels} are accepted"
                )
            image.draft("RGB", image.size)
            return image.convert("RGB")
    except InvalidArgument:
        raise
    except UnidentifiedImageError:
        raise InvalidArgument(
            f"cannot identify an image in {len(data)} bytes; JPEG, PNG, WebP, GIF, BMP and "
            "TIFF are accepted"
        ) from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError, Warning) as exc:
        raise InvalidArgument(f"cannot decode image: {exc}") from None
