"""Regions: an image's boxes embedded with it, over real gRPC and in the engine; bad boxes fail
alone; colour names come back; images without boxes are as before; limits."""

from __future__ import annotations

import asyncio
import io
import math

import grpc
import numpy as np
import open_clip
import pytest
import torch
from PIL import Image

from devstack import servers
from devstack.garments import draw_outfit
from embedder_service.client import EmbedderClient, ImageRequest
from embedder_service.engine import EmbedEngine, ImageItem, ImageOutcome
from embedder_service.regions import MARGIN
from embedder_service.settings import EmbedderSettings
from fashionrag.errors import InvalidArgument
from fashionrag.v1 import embedder_pb2, embedder_pb2_grpc

pytestmark = pytest.mark.integration

# A box well inside the 400x500 photo below, taller than wide.
BOX = (100.0, 200.0, 160.0, 380.0)


def noise_png(width: int = 400, height: int = 500, seed: int = 0) -> bytes:
    """A PNG (decoded the same way by everyone: no JPEG draft) of smooth random colours."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 255, (height // 20, width // 20, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(small).resize((width, height), Image.Resampling.BICUBIC).save(out, "PNG")
    return out.getvalue()


def open_clip_vector(image: Image.Image) -> np.ndarray:
    """The tiny model's fp32 vector of `image`, through open_clip's own preprocessing."""
    open_clip.add_model_config(servers.TINY_MODEL)
    torch.manual_seed(0)
    clip, _, preprocess = open_clip.create_model_and_transforms(servers.TINY_MODEL.stem)
    clip.eval()
    with torch.inference_mode():
        features = clip.encode_image(preprocess(image)[None])
    return torch.nn.functional.normalize(features, dim=-1)[0].numpy()


def test_box_vector_equals_open_clips_of_the_same_crop(embedder_client: EmbedderClient) -> None:
    data = noise_png()
    (result,) = embedder_client.embed_images([ImageRequest("p", data, [BOX])])
    (region,) = result.regions
    assert region.error is None and region.vector is not None
    # By hand: the square around the box's longer side (180 px) grown by the margin on each
    # side, centred on the box; it lies inside the photo.
    side = 180 * (1 + 2 * MARGIN)
    cx, cy = 130, 290
    left, top, right, bottom = (cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2)
    rect = (round(left), round(top), round(right), round(bottom))
    expected = open_clip_vector(Image.open(io.BytesIO(data)).convert("RGB").crop(rect))
    assert float(region.vector @ expected) >= 0.9999


def test_bad_boxes_fail_alone_and_the_image_and_other_boxes_succeed(
    embedder_client: EmbedderClient,
) -> None:
    data = noise_png()
    boxes = [
        BOX,
        (500.0, 10.0, 600.0, 50.0),  # wholly outside the 400x500 photo
        (10.0, 10.0, 10.0, 90.0),  # zero width
        (math.nan, 10.0, 50.0, 90.0),
        (BOX[2], BOX[3], BOX[0], BOX[1]),  # corners reversed: the same box
        (-50.0, -50.0, 60.0, 60.0),  # partly outside: clipped
    ]
    (result,) = embedder_client.embed_images([ImageRequest("p", data, boxes)])
    alone = embedder_client.embed_images([("p", data)])[0]
    assert result.error is None and result.vector is not None and alone.vector is not None
    np.testing.assert_allclose(result.vector, alone.vector, atol=1e-6)
    assert len(result.regions) == len(boxes)
    ok, outside, empty, nan, reversed_, clipped = result.regions
    assert "outside the 400x500 image" in (outside.error or "")
    assert "is empty" in (empty.error or "")
    assert "finite" in (nan.error or "")
    for bad in (outside, empty, nan):
        assert bad.vector is None and (bad.colour, bad.colour2) == ("", "")
    for good in (ok, reversed_, clipped):
        assert good.error is None and good.vector is not None and good.colour
    assert ok.vector is not None and reversed_.vector is not None
    np.testing.assert_allclose(ok.vector, reversed_.vector, atol=1e-6)


def test_region_errors_carry_invalid_argument(embedder: servers.Server) -> None:
    stub = embedder_pb2_grpc.EmbedderServiceStub(grpc.insecure_channel(embedder.address))
    box = embedder_pb2.Box(x0=5, y0=5, x1=5, y1=5)
    request = embedder_pb2.EmbedImagesRequest(
        images=[embedder_pb2.ImageInput(id="p", data=noise_png(), boxes=[box])]
    )
    (result,) = stub.EmbedImages(request).results
    assert result.HasField("embedding")
    assert result.regions[0].error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]


def test_colours_of_generated_garments_come_back(embedder_client: EmbedderClient) -> None:
    rng = np.random.default_rng(3)
    outfits = [draw_outfit(rng, 480, 640, stripes=0.0) for _ in range(8)]
    results = embedder_client.embed_images(
        [ImageRequest(str(i), o.jpeg, [g.box for g in o.garments]) for i, o in enumerate(outfits)]
    )
    named = [
        (region.colour, garment.colour)
        for outfit, result in zip(outfits, results, strict=True)
        for garment, region in zip(outfit.garments, result.regions, strict=True)
    ]
    assert len(named) >= 30
    assert sum(got == truth for got, truth in named) / len(named) >= 0.85


def test_image_without_boxes_is_as_before(embedder_client: EmbedderClient) -> None:
    plain = noise_png(seed=1)
    alone = embedder_client.embed_images([plain])[0]
    mixed = embedder_client.embed_images([ImageRequest("b", noise_png(), [BOX]), plain])[1]
    assert alone.regions == () and mixed.regions == ()
    assert alone.vector is not None and mixed.vector is not None
    np.testing.assert_allclose(alone.vector, mixed.vector, atol=1e-6)
    assert (mixed.width, mixed.height) == (400, 500)


def test_undecodable_image_with_boxes_fails_without_regions(
    embedder_client: EmbedderClient,
) -> None:
    (result,) = embedder_client.embed_images([ImageRequest("x", b"junk", [BOX])])
    assert result.vector is None and "cannot identify" in (result.error or "")
    assert result.regions == ()


def test_more_boxes_than_the_limit_refuse_the_request(embedder_client: EmbedderClient) -> None:
    with pytest.raises(InvalidArgument, match="65 boxes; at most 64 per image"):
        embedder_client.embed_images([ImageRequest("p", noise_png(), [BOX] * 65)])


def test_client_splits_requests_counting_boxes_as_items(
    embedder: servers.Server, embedder_client: EmbedderClient
) -> None:
    # 5 images x 60 boxes = 305 items, over the server's 256 in one request.
    requests = [ImageRequest(str(i), noise_png(120, 160, seed=i), [BOX] * 60) for i in range(5)]
    stub = embedder_pb2_grpc.EmbedderServiceStub(grpc.insecure_channel(embedder.address))
    raw = embedder_pb2.EmbedImagesRequest(
        images=[
            embedder_pb2.ImageInput(
                id=r.id, data=r.data, boxes=[embedder_pb2.Box(x0=1, y0=1, x1=50, y1=50)] * 60
            )
            for r in requests
        ]
    )
    with pytest.raises(grpc.RpcError) as info:
        stub.EmbedImages(raw)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "at most 256 items" in (info.value.details() or "")

    results = embedder_client.embed_images(requests)
    assert [r.id for r in results] == [str(i) for i in range(5)]
    assert all(len(r.regions) == 60 for r in results)
    # BOX lies outside these 120x160 photos.
    assert all("outside" in (g.error or "") for r in results for g in r.regions)


def _engine(**kw: object) -> EmbedEngine:
    settings = EmbedderSettings.model_validate(
        {
            "model": str(servers.TINY_MODEL),
            "pretrained": "none",
            "device": "cpu",
            "precision": "fp32",
            "max_delay_ms": 0,
            **kw,
        }
    )
    return EmbedEngine.load(settings)


def _embed(engine: EmbedEngine, items: list[ImageItem]) -> list[ImageOutcome]:
    async def run() -> list[ImageOutcome]:
        try:
            return await engine.embed_images(items)
        finally:
            await engine.close()

    return asyncio.run(run())


def _region_vectors(outcomes: list[ImageOutcome]) -> np.ndarray:
    return np.stack([r.vector for o in outcomes for r in o.regions])  # type: ignore[misc]


@pytest.fixture(scope="module")
def outfit_items() -> list[ImageItem]:
    rng = np.random.default_rng(7)
    outfits = [draw_outfit(rng, 960, 1280) for _ in range(3)]
    return [ImageItem(str(i), o.jpeg, [g.box for g in o.garments]) for i, o in enumerate(outfits)]


@pytest.fixture(scope="module")
def full_decode(outfit_items: list[ImageItem]) -> np.ndarray:
    return _region_vectors(_embed(_engine(jpeg_draft=False), outfit_items))


def test_draft_decoding_keeps_region_vectors(
    outfit_items: list[ImageItem], full_decode: np.ndarray
) -> None:
    drafted = _region_vectors(_embed(_engine(jpeg_draft=True), outfit_items))
    assert (drafted * full_decode).sum(axis=1).min() >= 0.999


def test_device_decoding_setting_still_embeds_regions(
    outfit_items: list[ImageItem], full_decode: np.ndarray
) -> None:
    engine = _engine(gpu_decode=True, jpeg_draft=False)
    vectors = _region_vectors(_embed(engine, outfit_items))
    np.testing.assert_allclose(vectors, full_decode, atol=1e-5)
    regions = engine.metrics.items.labels("regions")._value.get()
    assert regions == sum(len(i.boxes) for i in outfit_items)
