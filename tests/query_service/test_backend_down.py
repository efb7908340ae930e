"""What callers of the query service see while its embedder is down, comes back, or is swamped:
real processes, the real embedder killed and restarted.

The time bounds here are behaviour, not speed: a call that waited for a connection, or behind
other searches, would take the whole embed timeout or the embedder's batching window (tens of
seconds, or seconds), against bounds of one or two seconds for an answer given from state."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from devstack import servers
from devstack.metrics import counter_total
from devstack.ports import free_port
from fashionrag.errors import Unavailable
from query_service.client import SERVICE_NAME, QueryClient
from tests.polling import wait_until
from tests.query_service.conftest import COLLECTION

pytestmark = pytest.mark.integration

EMBED_TIMEOUT = "30"  # the default: what a search used to wait with the embedder down
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


@dataclass
class Stack:
    embedder: servers.Server
    query: servers.Server
    metrics: str


def start_stack(logs_dir: Path, chroma_url: str, name: str, *query_flags: str) -> Stack:
    embedder = servers.start_embedder(logs_dir / f"embedder-{name}.log")
    metrics_port = free_port()
    try:
        query = servers.start_query(
            logs_dir / f"query-{name}.log",
            embedder.address,
            chroma_url,
            COLLECTION,
            "--embed-timeout",
            EMBED_TIMEOUT,
            "--metrics-port",
            str(metrics_port),
            *query_flags,
        )
    except BaseException:
        embedder.stop()
        raise
    return Stack(embedder, query, f"http://127.0.0.1:{metrics_port}/metrics")


def stop_stack(stack: Stack) -> None:
    stack.query.stop()
    stack.embedder.stop()


def health(query: servers.Server, service: str = "") -> int:
    with grpc.insecure_channel(query.address) as channel:
        request = health_pb2.HealthCheckRequest(service=service)
        return health_pb2_grpc.HealthStub(channel).Check(request, timeout=5).status


def search(query: servers.Server, text: str, timeout: float = 60) -> httpx.Response:
    return httpx.get(f"{query.http}/api/search", params={"q": text, "k": 3}, timeout=timeout)


@pytest.fixture(scope="module")
def embedder_killed(indexed: Path, chroma_url: str, logs_dir: Path) -> Iterator[Stack]:
    """A query service whose embedder was killed before its first search: the collection was
    never opened, the query service had only watched the embedder's health."""
    stack = start_stack(logs_dir, chroma_url, "killed", "--images-dir", str(indexed))
    stack.embedder.stop(signal.SIGKILL)
    try:
        yield stack
    finally:
        stop_stack(stack)


def test_search_with_the_embedder_down_is_503_naming_it_at_once(embedder_killed: Stack) -> None:
    started = time.monotonic()
    response = search(embedder_killed.query, "red tops")
    elapsed = time.monotonic() - started
    assert response.status_code == 503, response.text
    body = response.json()
    assert body["code"] == "UNAVAILABLE"
    assert "embedder" in body["error"] and body["metadata"]["backend"] == "embedder"
    assert elapsed < 2.0, f"{elapsed:.1f}s (the embed timeout is {EMBED_TIMEOUT}s)"


def test_grpc_search_with_the_embedder_down_is_answered_once_not_retried(
    embedder_killed: Stack,
) -> None:
    def unavailable_searches() -> float:
        return counter_total(
            embedder_killed.metrics,
            "fashionrag_query_requests",
            method="Search",
            code="UNAVAILABLE",
        )

    before = unavailable_searches()
    with QueryClient(embedder_killed.query.address) as client, pytest.raises(Unavailable) as info:
        client.text("a long dress", timeout=20)
    assert "embedder" in str(info.value)
    # The client's retry policy retries UNAVAILABLE five times, but the service says that a
    # retry would meet the same backend down (retry pushback): one call reached it, not five.
    assert unavailable_searches() == before + 1


def test_healthz_answers_at_once_naming_the_embedder(embedder_killed: Stack) -> None:
    wait_until(
        lambda: health(embedder_killed.query) == NOT_SERVING, "NOT_SERVING after the kill", 10
    )
    started = time.monotonic()
    response = httpx.get(f"{embedder_killed.query.http}/healthz", timeout=30)
    elapsed = time.monotonic() - started
    assert response.status_code == 503
    assert response.json()["status"] == "unavailable"
    assert response.json()["down"] == ["embedder"]
    assert "embedder" in response.json()["error"]
    assert elapsed < 1.0, f"{elapsed:.1f}s"


def test_images_are_served_while_the_embedder_is_down(
    embedder_killed: Stack, indexed: Path
) -> None:
    some_file = next(f for f in sorted((indexed / "train").iterdir()) if f.suffix == ".jpg")
    record_id = f"train-{some_file.stem}"
    response = httpx.get(f"{embedder_killed.query.http}/images/{record_id}", timeout=30)
    assert response.status_code == 200, response.text
    assert response.content == some_file.read_bytes()


def test_grpc_health_follows_the_embedder_and_searches_resume_at_once(
    indexed: Path, chroma_url: str, logs_dir: Path
) -> None:
    stack = start_stack(logs_dir, chroma_url, "restart")
    try:
        assert search(stack.query, "before the kill").status_code == 200
        assert health(stack.query) == SERVING
        stack.embedder.stop(signal.SIGKILL)
        wait_until(lambda: health(stack.query) == NOT_SERVING, "NOT_SERVING after the kill", 10)
        # Only the overall health (what readiness probes ask) follows the backends: callers
        # balancing on the Query service's own health still reach it and hear why.
        assert health(stack.query, SERVICE_NAME) == SERVING
        time.sleep(10)  # long enough down for gRPC's default reconnect backoff to grow past 10s
        assert search(stack.query, "while it is down").status_code == 503

        stack.embedder = servers.start_embedder(
            logs_dir / "embedder-restart-2.log", port=stack.embedder.port
        )
        took = wait_until(
            lambda: search(stack.query, f"back {time.monotonic()}").status_code == 200,
            "searching again",
            30,
        )
        assert took < 2.0, f"the first search succeeded {took:.1f}s after the embedder SERVING"
        wait_until(lambda: health(stack.query) == SERVING, "SERVING again", 5)
    finally:
        stop_stack(stack)


def test_searches_past_the_limit_are_refused_at_once_and_healthz_stays_prompt(
    indexed: Path, chroma_url: str, logs_dir: Path
) -> None:
    limit, callers = 2, 12
    # A batching window of 3 s keeps each admitted search in flight that long.
    embedder = servers.start_embedder(
        logs_dir / "embedder-load.log", "--fixed-delay", "--max-delay-ms", "3000"
    )
    try:
        query = servers.start_query(
            logs_dir / "query-load.log",
            embedder.address,
            chroma_url,
            COLLECTION,
            "--max-searches",
            str(limit),
        )
    except BaseException:
        embedder.stop()
        raise
    outcomes: list[tuple[int, float]] = []
    lock = threading.Lock()
    start = threading.Barrier(callers + 1)

    def one(i: int) -> None:
        start.wait()
        began = time.monotonic()
        response = search(query, f"load {i}")
        with lock:
            outcomes.append((response.status_code, time.monotonic() - began))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(callers)]
    try:
        for thread in threads:
            thread.start()
        start.wait()
        time.sleep(0.5)  # the searches are in flight
        began = time.monotonic()
        healthz = httpx.get(f"{query.http}/healthz", timeout=30)
        healthz_seconds = time.monotonic() - began
        for thread in threads:
            thread.join(60)
    finally:
        query.stop()
        embedder.stop()
    assert healthz.status_code == 200
    # The admitted searches sit in the embedder's 3 s batching window: a /healthz that queued
    # behind them would take 3 s or more. Answering from the watcher's state, it takes a
    # fraction of that even on a loaded 2-core machine (0.06 s idle, 1.6 s measured under a
    # load average of 10), so the bound is the window, with room.
    assert healthz_seconds < 2.5, f"/healthz took {healthz_seconds:.2f}s under load"
    codes = sorted(code for code, _ in outcomes)
    assert set(codes) <= {200, 429}, codes
    refused = [seconds for code, seconds in outcomes if code == 429]
    assert len(refused) >= callers - 2 * limit, codes
    # Refused without waiting for the admitted ones (each in flight for the 3 s window).
    assert max(refused) < 2.0, refused
