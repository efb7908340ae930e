"""Decoding untrusted image bytes."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from embedder_service.images import decode_image, decode_reduced
from fashionrag.errors import InvalidArgument


def encode(image: Image.Image, fmt: str) -> bytes:
    out = io.BytesIO()
    image.save(out, format=fmt)
    return out.getvalue()


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_common_formats_decode_to_rgb(fmt: str) -> None:
    image, width, height = decode_image(encode(Image.new("RGB", (30, 20), "red"), fmt), 10**6)
    assert image.mode == "RGB"
    assert image.size == (width, height) == (30, 20)


def test_grayscale_and_alpha_become_rgb() -> None:
    assert decode_image(encode(Image.new("L", (8, 8)), "PNG"), 10**6)[0].mode == "RGB"
    assert decode_image(encode(Image.new("RGBA", (8, 8)), "PNG"), 10**6)[0].mode == "RGB"


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty"),
        (b"hello, not an image", "cannot identify"),
        (encode(Image.new("RGB", (64, 64), "blue"), "JPEG")[:200], "cannot decode"),
    ],
)
def test_bad_bytes_are_refused_with_the_reason(data: bytes, reason: str) -> None:
    with pytest.raises(InvalidArgument, match=reason):
        decode_image(data, 10**6)


def test_oversized_image_is_refused_before_decoding() -> None:
    data = encode(Image.new("RGB", (400, 300)), "PNG")
    with pytest.raises(
        InvalidArgument,
        match=r"400x300 = 120000 pixels; at most 100000 are accepted \(--max-image-pixels\)",
    ):
        decode_image(data, 100_000)


def test_a_large_jpeg_decodes_at_a_reduced_scale_that_covers_the_minimum_side() -> None:
    data = encode(Image.new("RGB", (2000, 1500), "red"), "JPEG")
    image, width, height = decode_reduced(data, 10**8, 300)
    assert (width, height) == (2000, 1500)
    assert image.size == (500, 375)  # 1/4: 1/8 would leave the short side under 300


def test_a_large_png_is_shrunk_after_decoding_by_an_integer_factor() -> None:
    data = encode(Image.new("RGBA", (3000, 1000), "red"), "PNG")
    image, width, height = decode_reduced(data, 10**8, 448)
    assert (width, height) == (3000, 1000)
    assert (image.size, image.mode) == ((1500, 500), "RGB")


def test_no_minimum_side_decodes_at_full_size() -> None:
    data = encode(Image.new("RGB", (2000, 1500), "red"), "JPEG")
    assert decode_reduced(data, 10**8, 0)[0].size == (2000, 1500)
