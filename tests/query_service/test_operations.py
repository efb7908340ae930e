"""The query service as an operated server, over real servers: draining on SIGTERM, and the HTTP
status of each way a search fails for want of a backend (409 another model, 429 the embedder's
queue full, 503 ChromaDB down, 504 the embedder too slow)."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import httpx
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families

from devstack import servers
from devstack.ports import free_port
from embedder_service.client import EmbedderClient
from fashionrag.collection import ImageRecord, record_id
from fashionrag.collection_store import CollectionWriter, connect, open_collections
from query_service.client import QueryClient
from tests.polling import wait_until
from tests.query_service.conftest import COLLECTION

pytestmark = pytest.mark.integration

QUERY_SERVICE = "fashionrag.v1.QueryService"
SLOW_COLLECTION = "slow-embedder-collection"
# Each text waits this long in the slow embedder's batching window: far longer than the gRPC
# retries of a full queue (at most 0.2 + 0.4 + 0.8 + 1.6 s of backoff) and the test's own steps.
WINDOW_MS = 6000


class Slow:
    """An embedder (seed 3, so another model than the shared collection's) that holds each text
    for WINDOW_MS and queues at most one: a search is in flight as long as the test needs."""

    def __init__(self, server: servers.Server, metrics_port: int) -> None:
        self.server = server
        self.metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"

    def queued_texts(self) -> float:
        text = httpx.get(self.metrics_url, timeout=5).text
        return next(
            (
                sample.value
                for family in text_string_to_metric_families(text)
                for sample in family.samples
                if sample.name == "fashionrag_embedder_queue_depth"
                and sample.labels == {"kind": "texts"}
            ),
            0.0,
        )  # absent until the first text arrives

    def wait_queued(self, n: int) -> None:
        wait_until(lambda: self.queued_texts() == n, f"{n} text(s) in the embedder's queue")


@pytest.fixture(scope="module")
def slow(logs_dir: Path) -> Iterator[Slow]:
    metrics_port = free_port()
    server = servers.start_embedder(
        logs_dir / "embedder-slow.log",
        "--max-queue",
        "1",
        "--fixed-delay",
        "--max-delay-ms",
        str(WINDOW_MS),
        "--metrics-port",
        str(metrics_port),
        seed=3,
    )
    yield Slow(server, metrics_port)
    server.stop()


@pytest.fixture()
def idle(slow: Slow) -> Slow:
    """The slow embedder with nothing queued (a caller that gave up leaves its text queued
    until the window ends)."""
    slow.wait_queued(0)
    return slow


@pytest.fixture(scope="module")
def slow_collection(slow: Slow, chroma_url: str) -> str:
    """A one-photo collection of the slow embedder's model, so searches get past the model
    check and reach the embedder."""
    with EmbedderClient(slow.server.address) as client:
        model = client.model_info()
    chroma = connect(chroma_url)
    writer = CollectionWriter(
        chroma, open_collections(chroma, SLOW_COLLECTION, model, create=True, recreate=True)
    )
    photo = ImageRecord(record_id("train", 1), 1, "train", "/nowhere/1.jpg", 10, 10, ())
    vector = np.ones(model.dimension, dtype=np.float32) / np.sqrt(model.dimension)
    writer.upsert_photos([photo], [vector.tolist()])
    return SLOW_COLLECTION


def search(query: servers.Server, text: str) -> httpx.Response:
    return httpx.get(f"{query.http}/api/search", params={"q": text, "k": 1}, timeout=60)


def test_sigterm_finishes_the_search_in_flight_and_exits_within_the_grace(
    idle: Slow, slow_collection: str, chroma_url: str, logs_dir: Path
) -> None:
    grace = 20
    query = servers.start_query(
        logs_dir / "query-drain.log",
        idle.server.address,
        chroma_url,
        slow_collection,
        "--grace-seconds",
        str(grace),
    )
    try:
        with (
            grpc.insecure_channel(query.address) as channel,
            QueryClient(query.address) as client,
            ThreadPoolExecutor(1) as pool,
        ):
            watch = health_pb2_grpc.HealthStub(channel).Watch(
                health_pb2.HealthCheckRequest(service=QUERY_SERVICE), timeout=60
            )
            assert next(watch).status == health_pb2.HealthCheckResponse.SERVING
            in_flight = pool.submit(client.text, "in flight", top_k=1, timeout=60)
            idle.wait_queued(1)
            assert query.process is not None
            query.process.send_signal(signal.SIGTERM)
            stopped = time.monotonic()
            assert next(watch).status == health_pb2.HealthCheckResponse.NOT_SERVING
            watch.cancel()  # a watch is a call in flight too: the drain would wait for it
            assert [hit.record.id for hit in in_flight.result(timeout=60).hits] == ["train-1"]
        assert query.process.wait(grace + 10) == 0
        assert time.monotonic() - stopped < grace
    finally:
        query.stop()


def test_http_search_over_another_models_collection_is_409(
    slow: Slow, indexed: Path, chroma_url: str, logs_dir: Path
) -> None:
    query = servers.start_query(
        logs_dir / "query-409.log", slow.server.address, chroma_url, COLLECTION
    )
    try:
        response = search(query, "red tops")
        assert response.status_code == 409
        body = response.json()
        assert body["reason"] == "MODEL_MISMATCH"
        assert "seed 0" in body["error"] and "seed 3" in body["error"]
    finally:
        query.stop()


def test_http_search_is_429_while_the_embedder_queue_stays_full(
    idle: Slow, slow_collection: str, chroma_url: str, logs_dir: Path
) -> None:
    query = servers.start_query(
        logs_dir / "query-429.log", idle.server.address, chroma_url, slow_collection
    )
    try:
        with ThreadPoolExecutor(1) as pool:
            first = pool.submit(search, query, "first")
            idle.wait_queued(1)
            # Refused, and refused again on every retry while the first text waits.
            refused = search(query, "second")
            assert refused.status_code == 429
            assert refused.json()["reason"] == "QUEUE_FULL"
            assert refused.headers["Retry-After"] == "1"  # RFC 9110: when to ask again
            assert first.result(timeout=60).status_code == 200
    finally:
        query.stop()


def test_http_search_is_504_when_the_embedder_is_slower_than_the_deadline(
    idle: Slow, slow_collection: str, chroma_url: str, logs_dir: Path
) -> None:
    query = servers.start_query(
        logs_dir / "query-504.log",
        idle.server.address,
        chroma_url,
        slow_collection,
        "--embed-timeout",
        "1",
    )
    try:
        response = search(query, "too slow")
        assert response.status_code == 504
        assert response.json()["reason"] == "DEADLINE_EXCEEDED"
        assert response.json()["metadata"]["backend"] == "embedder"
    finally:
        query.stop()


def test_http_search_is_503_naming_chromadb_while_it_is_down(
    embedder: servers.Server, tmp_path: Path, logs_dir: Path
) -> None:
    chroma = servers.start_chroma(tmp_path / "chroma", logs_dir / "chroma-503.log")
    query = servers.start_query(
        logs_dir / "query-503.log", embedder.address, chroma.http, "any-collection"
    )
    try:
        chroma.stop()
        response = search(query, "red tops")
        assert response.status_code == 503
        body = response.json()
        assert body["reason"] == "BACKEND_UNAVAILABLE"
        assert body["metadata"] == {"backend": "chromadb"}
    finally:
        query.stop()
        chroma.stop()
