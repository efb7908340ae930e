"""The embedder as an operated server: batching across callers, a bounded queue, deadlines,
metrics, request ids, health while loading, draining on SIGTERM, its settings from flags and
the environment, JSON logs, and the client's splitting and retries."""

from __future__ import annotations

import errno
import io
import json
import os
import signal
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from PIL import Image

from devstack import servers
from devstack.metrics import MetricsPage
from devstack.ports import free_port
from embedder_service.client import EmbedderClient
from fashionrag.grpc_options import MAX_MESSAGE_BYTES
from fashionrag.v1 import embedder_pb2, embedder_pb2_grpc
from tests.polling import wait_until
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


SERVICE = "fashionrag.v1.EmbedderService"


def jpeg(size: int = 24, colour: str = "red") -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (size, size), colour).save(out, "JPEG")
    return out.getvalue()


@pytest.fixture(scope="module")
def tuned(logs_dir: Path) -> Iterator[Tuned]:
    """An embedder with a long batching window and a small queue, metrics on."""
    metrics_port = free_port()
    server = servers.start_embedder(
        logs_dir / "embedder-tuned.log",
        "--fixed-delay",
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


@pytest.fixture(scope="module")
def metered(logs_dir: Path) -> Iterator[Tuned]:
    """An embedder with default limits and JSON logs, configured partly by FASHIONRAG_*
    variables: the metrics port only there, the seed and log format there and as flags."""
    metrics_port = free_port()
    env = servers.child_env(
        FASHIONRAG_METRICS_PORT=str(metrics_port),
        FASHIONRAG_SEED="5",
        FASHIONRAG_LOG_FORMAT="text",
    )
    log = logs_dir / "embedder-metered.log"
    log.unlink(missing_ok=True)
    server = servers.start_embedder(log, "--log-format", "json", seed=6, env=env)
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


def test_sigterm_turns_health_not_serving_refuses_new_calls_and_finishes_those_in_flight(
    logs_dir: Path,
) -> None:
    metrics_port = free_port()
    # A batching window far longer than the test's steps keeps the first call in flight.
    server = servers.start_embedder(
        logs_dir / "embedder-drain.log",
        "--fixed-delay",
        "--max-delay-ms",
        "5000",
        "--grace-seconds",
        "30",
        "--metrics-port",
        str(metrics_port),
    )
    drain = Tuned(server, metrics_port)
    try:
        with grpc.insecure_channel(server.address) as channel:
            watch = health_pb2_grpc.HealthStub(channel).Watch(
                health_pb2.HealthCheckRequest(service=SERVICE), timeout=60
            )
            assert next(watch).status == health_pb2.HealthCheckResponse.SERVING
            in_flight = embedder_pb2_grpc.EmbedderServiceStub(channel).EmbedTexts.future(
                texts("in flight"), timeout=60
            )
            wait_until(
                lambda: drain.metric("fashionrag_embedder_queue_depth", kind="texts") == 1,
                "the call waits in the batching window",
            )
            assert server.process is not None
            server.process.send_signal(signal.SIGTERM)
            assert next(watch).status == health_pb2.HealthCheckResponse.NOT_SERVING
            watch.cancel()  # a watch is a call in flight too: the drain would wait for it
            with (
                grpc.insecure_channel(server.address) as fresh,
                pytest.raises(grpc.RpcError) as info,
            ):
                embedder_pb2_grpc.EmbedderServiceStub(fresh).EmbedTexts(texts("late"), timeout=10)
            assert info.value.code() == grpc.StatusCode.UNAVAILABLE
            response = in_flight.result()
        assert len(response.results[0].embedding.values) == 32
        assert server.process.wait(30) == 0
    finally:
        server.stop()


def open_for_writing_once_read(pipe: Path, server: servers.Server, timeout: float = 120) -> int:
    """Open a named pipe for writing once the server has opened it for reading (without a
    reader a blocking open would wait forever should the server have died)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            fd = os.open(pipe, os.O_WRONLY | os.O_NONBLOCK)
        except OSError as exc:
            if exc.errno != errno.ENXIO or time.monotonic() > deadline:
                raise
            server.check_alive()
            time.sleep(0.05)
            continue
        os.set_blocking(fd, True)
        return fd


def test_health_is_not_serving_and_calls_unavailable_until_the_weights_arrive(
    tmp_path: Path, logs_dir: Path
) -> None:
    import open_clip
    import torch

    # The checkpoint is a named pipe: the model loads once the test writes the weights into it.
    pipe = tmp_path / "weights.pt"
    os.mkfifo(pipe)
    server = servers.start_embedder(
        logs_dir / "embedder-loading.log", pretrained=str(pipe), wait=False
    )
    try:
        channel = grpc.insecure_channel(server.address)
        health = health_pb2_grpc.HealthStub(channel)
        stub = embedder_pb2_grpc.EmbedderServiceStub(channel)
        status = health.Check(
            health_pb2.HealthCheckRequest(service=SERVICE), timeout=120, wait_for_ready=True
        ).status
        assert status == health_pb2.HealthCheckResponse.NOT_SERVING
        with pytest.raises(grpc.RpcError) as info:
            stub.EmbedTexts(texts("x"), timeout=10)
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "loading" in (info.value.details() or "")
        assert details(info.value).reason == "MODEL_LOADING"

        open_clip.add_model_config(servers.TINY_MODEL)
        torch.manual_seed(7)
        model, _, _ = open_clip.create_model_and_transforms(servers.TINY_MODEL.stem)
        model.eval()
        with torch.inference_mode():
            tokens = open_clip.get_tokenizer(servers.TINY_MODEL.stem)(["red tops"])
            expected = torch.nn.functional.normalize(model.encode_text(tokens), dim=-1)[0]
        weights = io.BytesIO()
        torch.save(model.state_dict(), weights)
        with os.fdopen(open_for_writing_once_read(pipe, server), "wb") as writer:
            writer.write(weights.getvalue())
        servers.wait_grpc_serving(server, SERVICE, timeout=120)
        response = stub.EmbedTexts(texts("red tops"), timeout=30)
        np.testing.assert_allclose(response.results[0].embedding.values, expected, atol=1e-5)
        model_info = stub.GetModelInfo(embedder_pb2.GetModelInfoRequest(), timeout=10).model
        assert model_info.pretrained == "weights.pt"
        channel.close()
    finally:
        server.stop(signal.SIGKILL)


def test_client_retries_a_full_queue_until_it_has_room(logs_dir: Path) -> None:
    metrics_port = free_port()
    # A batch runs once it holds 4 texts, and 4 may wait: the test decides when room is made.
    server = servers.start_embedder(
        logs_dir / "embedder-retry.log",
        "--max-queue",
        "4",
        "--max-batch-size",
        "4",
        "--fixed-delay",
        "--max-delay-ms",
        "30000",
        "--metrics-port",
        str(metrics_port),
    )
    retry = Tuned(server, metrics_port)

    def refusals() -> float:
        return retry.metric_or_zero(
            "fashionrag_embedder_requests_total", method="EmbedTexts", code="RESOURCE_EXHAUSTED"
        )

    try:
        with EmbedderClient(server.address) as client, ThreadPoolExecutor(1) as pool:
            client.model_info()
            filler = retry.stub.EmbedTexts.future(texts("a", "b", "c"), timeout=60)
            wait_until(
                lambda: retry.metric_or_zero("fashionrag_embedder_queue_depth", kind="texts") == 3,
                "three texts wait",
            )
            before = refusals()
            retried = pool.submit(client.embed_texts, ["d", "e"])  # 3 + 2 > 4: refused
            wait_until(lambda: refusals() > before, "the client's first try is refused")
            assert not retried.done()  # it backs off and tries again
            fourth = retry.stub.EmbedTexts.future(texts("f"), timeout=60)  # fills the batch
            # The batcher takes the full batch off the queue on its own time: until it has, the
            # queue still counts 4 and the next (raw, unretried) call would be refused. Once the
            # batch's answer is back, it is off the queue.
            fourth.result(timeout=60)
            company = retry.stub.EmbedTexts.future(texts("g", "h"), timeout=60)  # fills the next
            assert retried.result(timeout=60).shape == (2, 32)
            assert [len(f.result().results) for f in (filler, fourth, company)] == [3, 1, 2]
    finally:
        server.stop()


def test_environment_variables_set_what_no_flag_says_and_flags_win(metered: Tuned) -> None:
    info = metered.stub.GetModelInfo(embedder_pb2.GetModelInfoRequest(), timeout=10).model
    assert info.seed == 6  # --seed 6 over FASHIONRAG_SEED=5
    # FASHIONRAG_METRICS_PORT alone: metrics are served there, the call just made counted.
    assert metered.metric("fashionrag_embedder_requests_total", method="GetModelInfo") >= 1
    # --log-format json over FASHIONRAG_LOG_FORMAT=text: checked line by line below.
    assert json.loads(metered.server.log().splitlines()[0])


def test_json_logs_are_one_object_per_line_with_the_request_id(metered: Tuned) -> None:
    metered.stub.EmbedImages(
        embedder_pb2.EmbedImagesRequest(images=[embedder_pb2.ImageInput(id="x", data=b"??")]),
        metadata=(("x-request-id", "req-json-7"),),
    )
    wait_until(lambda: "req-json-7" in metered.server.log(), "the refusal is logged")
    entries = [json.loads(line) for line in metered.server.log().splitlines() if line.strip()]
    assert all({"time", "level", "logger", "request_id", "message"} <= set(e) for e in entries)
    (refusal,) = [e for e in entries if e["request_id"] == "req-json-7"]
    assert refusal["message"].startswith("image 'x' refused")
    assert {e["request_id"] for e in entries} >= {"-", "req-json-7"}


def requests_ok(server: Tuned, method: str) -> float:
    # Born on the method's first call: 0 before it.
    return server.metric_or_zero("fashionrag_embedder_requests_total", method=method, code="OK")


def test_client_splits_images_past_the_message_size_limit(metered: Tuned) -> None:
    # Pillow stops reading at the end-of-image marker: the padding only makes the bytes large.
    large = jpeg() + bytes(8 * 1024 * 1024)
    images = [(str(i), large) for i in range(9)]
    assert sum(len(data) for _, data in images) > MAX_MESSAGE_BYTES
    before = requests_ok(metered, "EmbedImages")
    with EmbedderClient(metered.server.address) as client:
        outcomes = client.embed_images(images)
    assert [o.id for o in outcomes] == [str(i) for i in range(9)]
    assert all(o.vector is not None for o in outcomes)
    assert requests_ok(metered, "EmbedImages") == before + 2


def test_client_splits_batches_past_the_item_limit_that_the_server_refuses(
    metered: Tuned,
) -> None:
    images = [(str(i), jpeg(colour=("red", "blue")[i % 2])) for i in range(300)]
    before = requests_ok(metered, "EmbedImages")
    texts_before = requests_ok(metered, "EmbedTexts")
    with EmbedderClient(metered.server.address) as client:
        outcomes = client.embed_images(images)
        text_vectors = client.embed_texts([f"text {i}" for i in range(300)])
    assert [o.id for o in outcomes] == [str(i) for i in range(300)]
    assert all(o.vector is not None for o in outcomes)
    assert requests_ok(metered, "EmbedImages") == before + 2  # 256, then 44
    assert text_vectors.shape == (300, 32)
    assert requests_ok(metered, "EmbedTexts") == texts_before + 2
    raw = embedder_pb2.EmbedImagesRequest(
        images=[embedder_pb2.ImageInput(id=i, data=data) for i, data in images[:257]]
    )
    with pytest.raises(grpc.RpcError) as info:
        metered.stub.EmbedImages(raw, timeout=30)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert details(info.value).reason == "TOO_MANY_ITEMS"
    assert details(info.value).metadata == {"max_batch_items": "256"}
