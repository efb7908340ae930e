"""The embedder as an operated server: batching across callers, a bounded queue, deadlines,
metrics, request ids, health while loading, and draining on SIGTERM."""

from __future__ import annotations

import signal
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from devstack import servers
from devstack.metrics import MetricsPage
from devstack.ports import free_port
from fashionrag.v1 import embedder_pb2, embedder_pb2_grpc
from tests.rich_status import details

pytestmark = pytest.mark.integration


class Tuned:
    def __init__(self, server: servers.Server, metrics_port: int) -> None:
        self.server = server
        self.metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
        self.stub = embedder_pb2_grpc.EmbedderServiceStub(grpc.insecure_channel(server.address))

    def metric(self, name: str, **labels: str) -> float:
        """The value of one series on the metrics page, which must be there."""
        return MetricsPage.fetch(self.metrics_url).require(name, **labels)

    def metric_or_zero(self, name: str, **labels: str) -> float:
        """The value of a labelled series before the first time it can have been counted: 0
        while absent (it is born on its first count)."""
        return MetricsPage.fetch(self.metrics_url).value(name, **labels) or 0.0


@pytest.fixture(scope="module")
def tuned(logs_dir: Path) -> Iterator[Tuned]:
    """An embedder with a long batching window and a small queue, metrics on."""
    metrics_port = free_port()
    server = servers.start_embedder(
        logs_dir / "embedder-tuned.log",
        "--max-delay-ms",
        "300",
        "--max-queue",
        "8",
        "--max-batch-size",
        "16",
        "--metrics-port",
        str(metrics_port),
    )
    yield Tuned(server, metrics_port)
    server.stop()


def texts(*items: str) -> embedder_pb2.EmbedTextsRequest:
    return embedder_pb2.EmbedTextsRequest(texts=list(items))


def test_concurrent_callers_share_forward_passes(tuned: Tuned) -> None:
    batches_before = tuned.metric_or_zero("fashionrag_embedder_batch_size_count", kind="texts")
    items_before = tuned.metric_or_zero("fashionrag_embedder_batch_size_sum", kind="texts")
    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(lambda i: tuned.stub.EmbedTexts(texts(f"text {i}")), range(6)))
    assert all(len(r.results) == 1 for r in results)
    batches = tuned.metric("fashionrag_embedder_batch_size_count", kind="texts") - batches_before
    items = tuned.metric("fashionrag_embedder_batch_size_sum", kind="texts") - items_before
    assert items == 6
    assert batches < 6  # several callers rode in one forward pass


def test_batched_vectors_equal_lone_ones(tuned: Tuned) -> None:
    lone = tuned.stub.EmbedTexts(texts("a long dress")).results[0].embedding.values
    with ThreadPoolExecutor(4) as pool:
        together = list(
            pool.map(
                lambda t: tuned.stub.EmbedTexts(texts(t)),
                ["a long dress", "red tops", "shoe", "belt"],
            )
        )
    assert together[0].results[0].embedding.values == pytest.approx(lone, abs=1e-5)


def test_full_queue_is_resource_exhausted_at_once(tuned: Tuned) -> None:
    requests = [texts(*[f"q{i}-{j}" for j in range(4)]) for i in range(4)]
    futures = [tuned.stub.EmbedTexts.future(r) for r in requests]
    codes = []
    for future in futures:
        try:
            future.result()
            codes.append(grpc.StatusCode.OK)
        except grpc.RpcError as exc:
            codes.append(exc.code())
            if exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
                assert "at most 8" in (exc.details() or "")
                assert details(exc).reason == "QUEUE_FULL"
                assert details(exc).metadata == {"queue": "texts", "max_queue": "8"}
    assert grpc.StatusCode.OK in codes
    assert grpc.StatusCode.RESOURCE_EXHAUSTED in codes


def test_caller_past_its_deadline_costs_no_model_work(tuned: Tuned) -> None:
    tuned.stub.EmbedTexts(texts("on time"))  # the series exists, so "unchanged" means something
    before = tuned.metric("fashionrag_embedder_items_total", kind="texts")
    with pytest.raises(grpc.RpcError) as info:
        tuned.stub.EmbedTexts(texts("too late"), timeout=0.1)
    assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    time.sleep(0.6)  # past the batching window: the batch would have run by now
    assert tuned.metric("fashionrag_embedder_items_total", kind="texts") == before


def test_metrics_count_requests_by_method_and_code(tuned: Tuned) -> None:
    ok = tuned.metric_or_zero("fashionrag_embedder_requests_total", method="EmbedTexts", code="OK")
    bad = tuned.metric_or_zero(
        "fashionrag_embedder_requests_total", method="EmbedTexts", code="INVALID_ARGUMENT"
    )
    seconds = tuned.metric_or_zero("fashionrag_embedder_request_seconds_count", method="EmbedTexts")
    tuned.stub.EmbedTexts(texts("fine"))
    with pytest.raises(grpc.RpcError):
        tuned.stub.EmbedTexts(texts(""))
    assert (
        tuned.metric("fashionrag_embedder_requests_total", method="EmbedTexts", code="OK") == ok + 1
    )
    assert (
        tuned.metric(
            "fashionrag_embedder_requests_total", method="EmbedTexts", code="INVALID_ARGUMENT"
        )
        == bad + 1
    )
    assert (
        tuned.metric("fashionrag_embedder_request_seconds_count", method="EmbedTexts")
        == seconds + 2
    )
    assert tuned.metric("fashionrag_embedder_queue_depth", kind="texts") == 0


def test_queue_wait_is_observed_once_per_request(tuned: Tuned) -> None:
    waits = tuned.metric_or_zero("fashionrag_embedder_queue_wait_seconds_count", kind="texts")
    waited = tuned.metric_or_zero("fashionrag_embedder_queue_wait_seconds_sum", kind="texts")
    tuned.stub.EmbedTexts(texts("one", "request", "of three"))
    assert tuned.metric("fashionrag_embedder_queue_wait_seconds_count", kind="texts") == waits + 1
    # Alone in its batching window (300 ms), the request waited it out.
    assert tuned.metric("fashionrag_embedder_queue_wait_seconds_sum", kind="texts") - waited >= 0.2


def test_item_errors_are_counted(tuned: Tuned) -> None:
    before = tuned.metric_or_zero("fashionrag_embedder_item_errors_total", kind="images")
    tuned.stub.EmbedImages(
        embedder_pb2.EmbedImagesRequest(images=[embedder_pb2.ImageInput(id="x", data=b"junk")])
    )
    assert tuned.metric("fashionrag_embedder_item_errors_total", kind="images") == before + 1


def test_request_id_is_echoed_and_logged(tuned: Tuned) -> None:
    _, call = tuned.stub.EmbedImages.with_call(
        embedder_pb2.EmbedImagesRequest(images=[embedder_pb2.ImageInput(id="x", data=b"??")]),
        metadata=(("x-request-id", "req-abc123"),),
    )
    assert ("x-request-id", "req-abc123") in tuple(call.trailing_metadata() or ())
    deadline = time.monotonic() + 5
    while "[req-abc123]" not in tuned.server.log() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "[req-abc123] image 'x' refused" in tuned.server.log()


def test_sigterm_lets_calls_in_flight_finish(logs_dir: Path) -> None:
    server = servers.start_embedder(logs_dir / "embedder-drain.log", "--max-delay-ms", "2000")
    stub = embedder_pb2_grpc.EmbedderServiceStub(grpc.insecure_channel(server.address))
    future = stub.EmbedTexts.future(texts("in flight"), timeout=30)
    time.sleep(0.5)  # the call now waits in the batching window
    assert server.process is not None
    server.process.send_signal(signal.SIGTERM)
    response = future.result()
    assert len(response.results[0].embedding.values) == 32
    assert server.process.wait(30) == 0


def test_health_is_not_serving_while_the_model_loads(tmp_path: Path, logs_dir: Path) -> None:
    # Offline, the ViT-B-32 download keeps the model loading for a while before it gives up.
    port = free_port()
    server = servers.Server(
        "embedder-loading",
        [
            sys.executable,
            "-m",
            "embedder_service",
            "--port",
            str(port),
            "--model",
            "ViT-B-32",
            "--pretrained",
            "laion2b_s34b_b79k",
            "--cache-dir",
            str(tmp_path),
        ],
        port,
        logs_dir / "embedder-loading.log",
        env=servers.child_env(HF_HUB_OFFLINE="0"),
    )
    server.start()
    try:
        channel = grpc.insecure_channel(server.address)
        health = health_pb2_grpc.HealthStub(channel)
        status = health.Check(
            health_pb2.HealthCheckRequest(service="fashionrag.v1.EmbedderService"),
            timeout=30,
            wait_for_ready=True,
        ).status
        assert status == health_pb2.HealthCheckResponse.NOT_SERVING
        with pytest.raises(grpc.RpcError) as info:
            embedder_pb2_grpc.EmbedderServiceStub(channel).EmbedTexts(texts("x"), timeout=10)
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "loading" in (info.value.details() or "")
        assert details(info.value).reason == "MODEL_LOADING"
    finally:
        server.stop(signal.SIGKILL)


def test_client_retries_a_full_queue_with_backoff(tuned: Tuned) -> None:
    from embedder_service.client import EmbedderClient

    with EmbedderClient(tuned.server.address) as client, ThreadPoolExecutor(4) as pool:
        batches = [[f"r{i}-{j}" for j in range(4)] for i in range(4)]
        results = list(pool.map(client.embed_texts, batches))
    assert [r.shape for r in results] == [(4, 32)] * 4
