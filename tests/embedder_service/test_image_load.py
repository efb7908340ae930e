"""The embedder under a burst of large images, over real gRPC: texts keep their latency, the
memory the pictures took goes back, and one picture's size is bounded."""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest

from devstack import servers
from devstack.sample_data import large_png
from embedder_service.client import EmbedderClient, ImageEmbedding

pytestmark = pytest.mark.integration

# 16 Mpx, under the default limit (25 Mpx): a PNG of it decodes at full size whatever is asked.
SIDE = 4000
BURST = 6


@pytest.fixture(scope="module")
def big_png() -> bytes:
    return large_png(SIDE)


@pytest.fixture()
def fresh_embedder(logs_dir: Path) -> Iterator[servers.Server]:
    """An embedder of its own, so that its memory is this test's alone, with the real ViT-B-32
    architecture (random weights): loading its 350 MB of weights is what leaves glibc's malloc
    keeping large freed blocks (the tiny model's process returns them anyway), and its forward
    passes are what a text waits behind."""
    with servers.start_embedder(
        logs_dir / "embedder-load.log", "--device", "cpu", model="ViT-B-32", timeout=300
    ) as server:
        yield server


@pytest.fixture()
def client(fresh_embedder: servers.Server) -> Iterator[EmbedderClient]:
    with EmbedderClient(fresh_embedder.address, timeout=120) as client:
        client.embed_texts(["warm-up"])
        client.embed_images([large_png(300)])
        yield client


def text_latency(client: EmbedderClient) -> float:
    started = time.perf_counter()
    client.embed_text("red tops")
    return time.perf_counter() - started


def burst(
    pool: ThreadPoolExecutor, client: EmbedderClient, png: bytes
) -> list[Future[list[ImageEmbedding]]]:
    """BURST callers sending one large picture each, at once."""
    return [pool.submit(client.embed_images, [png]) for _ in range(BURST)]


def test_texts_keep_their_latency_while_large_images_decode(
    client: EmbedderClient, big_png: bytes
) -> None:
    idle = [text_latency(client) for _ in range(15)]
    loaded: list[float] = []
    with ThreadPoolExecutor(BURST) as pool:
        uploads = burst(pool, client, big_png)
        while not all(u.done() for u in uploads):
            loaded.append(text_latency(client))
        assert all(u.result()[0].vector is not None for u in uploads)
    assert len(loaded) >= 5, "the burst ended before texts could be measured under it"
    # Relative to the same server idle, in the same run (the machine's speed cancels out), and
    # generous: a text waits at most for one image forward pass and a share of a decode.
    print(
        f"text ms idle p50 {statistics.median(idle) * 1000:.1f}; loaded p50 "
        f"{statistics.median(loaded) * 1000:.1f} mean {statistics.mean(loaded) * 1000:.1f} "
        f"max {max(loaded) * 1000:.1f}, {len(loaded)} texts"
    )
    assert statistics.mean(loaded) <= 10 * statistics.median(idle) + 0.05
    assert max(loaded) < 3.0


def test_memory_goes_back_after_a_burst_of_large_images(
    fresh_embedder: servers.Server, client: EmbedderClient, big_png: bytes
) -> None:
    baseline = servers.resident_mb(fresh_embedder)
    peak = baseline
    with ThreadPoolExecutor(BURST) as pool:
        uploads = burst(pool, client, big_png)
        while not all(u.done() for u in uploads):
            peak = max(peak, servers.resident_mb(fresh_embedder))
            time.sleep(0.02)
        assert all(u.result()[0].vector is not None for u in uploads)
    after = servers.resident_mb(fresh_embedder)
    print(f"RSS MB baseline {baseline:.0f} peak {peak:.0f} after {after:.0f}")
    # One 16 Mpx picture is 64 MB of pixels: the burst may keep less than one of them.
    assert after - baseline < 50


def test_a_picture_over_the_default_pixel_limit_fails_only_its_item(
    embedder_client: EmbedderClient,
) -> None:
    over = large_png(5001)  # 25.01 Mpx
    outcomes = embedder_client.embed_images([("big", over), ("small", large_png(300))])
    assert outcomes[0].vector is None
    assert "5001x5001 = 25010001 pixels; at most 25000000" in (outcomes[0].error or "")
    assert "--max-image-pixels" in (outcomes[0].error or "")
    assert outcomes[1].vector is not None
