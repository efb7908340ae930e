"""The engine's speed-ups keep the vectors: reduced decoding of large photos, bf16, decoding on
the device."""

from __future__ import annotations

import asyncio
import io
import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from devstack.sample_data import photo_jpeg as photo
from devstack.servers import TINY_MODEL
from embedder_service import model as model_module
from embedder_service.engine import EmbedEngine
from embedder_service.images import decode_reduced
from embedder_service.settings import EmbedderSettings
from fashionrag.errors import ConfigurationError

TOLERANCE = 0.999


def engine(model_name: str, **kw: object) -> EmbedEngine:
    settings = EmbedderSettings.model_validate(
        {"model": model_name, "pretrained": "none", "device": "cpu", "max_delay_ms": 0, **kw}
    )
    return EmbedEngine.load(settings)


def embed(e: EmbedEngine, images: list[bytes]) -> np.ndarray:
    async def run() -> np.ndarray:
        try:
            outcomes = await e.embed_images([(str(i), d) for i, d in enumerate(images)])
            assert all(o.vector is not None for o in outcomes)
            return np.stack([o.vector for o in outcomes])  # type: ignore[misc]
        finally:
            await e.close()

    return asyncio.run(run())


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(axis=1)


def png(jpeg: bytes) -> bytes:
    out = io.BytesIO()
    Image.open(io.BytesIO(jpeg)).save(out, "PNG")
    return out.getvalue()


@pytest.fixture(scope="module")
def photos() -> list[bytes]:
    """Photos large enough to be decoded reduced (the short side at least twice the 448 pixels
    kept, as many of Fashionpedia's are): a JPEG decodes at 1/2 or 1/4 scale, a PNG is shrunk
    right after. A 1024x768 photo is not reduced at all: 768 / 2 would fall under 448."""
    return [
        photo(2048, 1536, seed=0),
        photo(1800, 2400, seed=1),
        photo(3000, 2000, seed=2),
        png(photo(2000, 1500, seed=3)),
    ]


@pytest.fixture(scope="module")
def vit_fp32(photos: list[bytes]) -> np.ndarray:
    return embed(engine("ViT-B-32", precision="fp32", jpeg_draft=False), photos)


def test_large_photos_decode_reduced_but_covering_the_models_input(photos: list[bytes]) -> None:
    keep = 2 * 224  # ViT-B-32's input side, twice
    for data in photos:
        image, width, height = decode_reduced(data, 10**8, keep)
        assert image.width < width and image.height < height
        assert min(image.size) >= keep


def test_reduced_decoding_keeps_vectors_within_tolerance(
    photos: list[bytes], vit_fp32: np.ndarray
) -> None:
    drafted = embed(engine("ViT-B-32", precision="fp32", jpeg_draft=True), photos)
    assert cosines(drafted, vit_fp32).min() >= TOLERANCE


def test_decoding_on_the_device_keeps_vectors_within_tolerance(
    photos: list[bytes], vit_fp32: np.ndarray
) -> None:
    # On a CPU this runs the same torchvision path that decodes on the GPU with --gpu-decode.
    on_device = embed(engine("ViT-B-32", precision="fp32", gpu_decode=True), photos)
    assert cosines(on_device, vit_fp32).min() >= TOLERANCE


def test_bf16_keeps_vectors_within_tolerance(photos: list[bytes], vit_fp32: np.ndarray) -> None:
    bf16 = embed(engine("ViT-B-32", precision="bf16", jpeg_draft=False), photos)
    assert cosines(bf16, vit_fp32).min() >= TOLERANCE


def test_device_decoding_falls_back_to_pillow_for_png() -> None:
    out = io.BytesIO()
    Image.new("RGB", (40, 30), "red").save(out, "PNG")
    e = engine(str(TINY_MODEL), gpu_decode=True)
    assert e.model.decode_on_device(out.getvalue()) is None
    assert embed(e, [out.getvalue()]).shape == (1, 32)


@pytest.mark.parametrize(
    ("device", "amx", "expected"),
    [("cuda", False, "fp16"), ("cpu", True, "bf16"), ("cpu", False, "fp32")],
)
def test_auto_precision(
    monkeypatch: pytest.MonkeyPatch, device: str, amx: bool, expected: str
) -> None:
    monkeypatch.setattr(model_module, "cpu_has_amx", lambda: amx)
    assert model_module._resolve_precision("auto", device) == expected


def test_fp16_on_a_cpu_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="needs a CUDA device"):
        model_module._resolve_precision("fp16", "cpu")


# Run in a process of its own, so that no other test's threads come or go meanwhile. Texts run
# on one thread (--text-threads 1): each batch sets the count and sets it back, which a decode
# thread's first parallel operation would otherwise pick up.
OPENMP_PROBE = """
import asyncio, json, os
from devstack.sample_data import photo_jpeg
from embedder_service.engine import EmbedEngine
from embedder_service.settings import EmbedderSettings

settings = EmbedderSettings.model_validate({
    "model": "ViT-B-32", "pretrained": "none", "device": "cpu", "precision": "fp32",
    "max_delay_ms": 0, "decode_workers": 2, "text_threads": 1,
})
engine = EmbedEngine.load(settings)
photos = [(str(i), photo_jpeg(640, 480, seed=i)) for i in range(6)]
before = len(os.listdir("/proc/self/task"))

async def serve():
    try:
        for round in range(3):
            texts = [engine.embed_texts([f"red tops {round} {i}"]) for i in range(4)]
            await asyncio.gather(engine.embed_images(photos), *texts)
        return len(os.listdir("/proc/self/task")) - before
    finally:
        await engine.close()

print(json.dumps({"started": asyncio.run(serve())}))
"""


def test_serving_starts_no_openmp_team_beside_the_loads() -> None:
    """torch's OpenMP workers belong to the thread that first runs parallel work (see
    `EmbedEngine.load`). The model thread is the one that loaded the model, and decode threads
    run their tensor work on one thread even while the model thread changes its own count, so
    texts and images together start no OpenMP threads: only the two decode threads."""
    done = subprocess.run(
        [sys.executable, "-c", OPENMP_PROBE], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    started = json.loads(done.stdout.strip().splitlines()[-1])["started"]
    assert started <= 2, f"{started} threads started for 2 decode workers"
