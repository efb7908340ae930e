"""The metrics of both services as an operator reads them, against real servers: every metric the
README names is on its page, a normal call moves each counter by exactly what it did, health
checks are not requests, and both pages pass promtool and the naming lint."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from devstack import servers
from devstack.metrics import MetricsPage, lint, promtool, promtool_check
from devstack.ports import free_port
from query_service.client import QueryClient
from tests.query_service.conftest import COLLECTION

pytestmark = pytest.mark.integration

# The README's metrics lists, as sample names (a histogram by its _count): keep them in step.
PROCESS_METRICS = [
    "process_cpu_seconds_total",
    "process_resident_memory_bytes",
    "process_open_fds",
    "process_start_time_seconds",
    "python_info",
]
EMBEDDER_METRICS = [
    "fashionrag_embedder_requests_total",
    "fashionrag_embedder_request_seconds_count",
    "fashionrag_embedder_batch_size_count",
    "fashionrag_embedder_queue_depth",
    "fashionrag_embedder_queue_wait_seconds_count",
    "fashionrag_embedder_items_total",
    "fashionrag_embedder_item_errors_total",
    *PROCESS_METRICS,
]
QUERY_METRICS = [
    "fashionrag_query_requests_total",
    "fashionrag_query_request_seconds_count",
    "fashionrag_query_http_requests_total",
    "fashionrag_query_http_request_seconds_count",
    "fashionrag_query_backend_seconds_count",
    "fashionrag_query_backend_errors_total",
    "fashionrag_query_text_cache_hits_total",
    "fashionrag_query_text_cache_misses_total",
    "fashionrag_query_searches_total",
    *PROCESS_METRICS,
]
SEARCH = "/api/search"
_texts = (f"a query never asked before {i}" for i in itertools.count())


@dataclass
class Stack:
    embedder: servers.Server
    query: servers.Server
    embedder_metrics: str
    query_metrics: str
    images: Path

    def pages(self) -> tuple[MetricsPage, MetricsPage]:
        return MetricsPage.fetch(self.embedder_metrics), MetricsPage.fetch(self.query_metrics)


@pytest.fixture(scope="module")
def stack(indexed: Path, chroma_url: str, logs_dir: Path) -> Iterator[Stack]:
    """An embedder and a query service of their own, metrics on, the collection opened."""
    embedder_port, query_port = free_port(), free_port()
    embedder = servers.start_embedder(
        logs_dir / "embedder-metrics.log", "--metrics-port", str(embedder_port)
    )
    query = servers.start_query(
        logs_dir / "query-metrics.log",
        embedder.address,
        chroma_url,
        COLLECTION,
        "--metrics-port",
        str(query_port),
    )
    try:
        with QueryClient(query.address) as client:
            client.text("warm up", top_k=1, timeout=30)  # opens the collection, checks the model
        yield Stack(
            embedder,
            query,
            f"http://127.0.0.1:{embedder_port}/metrics",
            f"http://127.0.0.1:{query_port}/metrics",
            indexed,
        )
    finally:
        query.stop()
        embedder.stop()


def moved(
    stack: Stack, call: Callable[[], object], series: dict[str, tuple[str, dict[str, str]]]
) -> dict[str, float]:
    """How much each series (a sample name and labels, by a key of ours) moved across `call`.
    Missing before, a series reads as 0: a labelled series is born on its first count. Missing
    after, it fails: renamed, or never counted."""

    def side(name: str) -> int:
        return 0 if name.startswith("fashionrag_embedder_") else 1

    before = stack.pages()
    call()
    after = stack.pages()
    return {
        key: after[side(name)].require(name, **labels)
        - (before[side(name)].value(name, **labels) or 0.0)
        for key, (name, labels) in series.items()
    }


def s(name: str, **labels: str) -> tuple[str, dict[str, str]]:
    return name, labels


def test_every_metric_the_readme_names_is_exposed(stack: Stack) -> None:
    embedder, query = stack.pages()
    assert [m for m in EMBEDDER_METRICS if not embedder.declares(m)] == []
    assert [m for m in QUERY_METRICS if not query.declares(m)] == []
    # The process metrics have series from the start.
    for page in (embedder, query):
        assert page.require("process_resident_memory_bytes") > 0
        assert page.require("process_cpu_seconds_total") > 0


def test_a_text_search_moves_each_counter_by_one(stack: Stack) -> None:
    text = next(_texts)

    def search() -> None:
        with QueryClient(stack.query.address) as client:
            assert client.text(text, top_k=3, auto_category=False).hits

    delta = moved(
        stack,
        search,
        {
            "search": s("fashionrag_query_requests_total", method="Search", code="OK"),
            "search_seconds": s("fashionrag_query_request_seconds_count", method="Search"),
            "photo": s("fashionrag_query_searches_total", grain="photo", input="text"),
            "embed": s("fashionrag_query_backend_seconds_count", backend="embedder"),
            "embed_text": s(
                "fashionrag_query_backend_seconds_count", backend="embedder", operation="embed_text"
            ),
            "chroma_query": s(
                "fashionrag_query_backend_seconds_count", backend="chromadb", operation="query"
            ),
            "misses": s("fashionrag_query_text_cache_misses_total"),
            "hits": s("fashionrag_query_text_cache_hits_total"),
            "embed_texts": s("fashionrag_embedder_requests_total", method="EmbedTexts", code="OK"),
            "items": s("fashionrag_embedder_items_total", kind="texts"),
            "batches": s("fashionrag_embedder_batch_size_count", kind="texts"),
            "batched": s("fashionrag_embedder_batch_size_sum", kind="texts"),
            "waits": s("fashionrag_embedder_queue_wait_seconds_count", kind="texts"),
        },
    )
    assert delta == {
        "search": 1,
        "search_seconds": 1,
        "photo": 1,
        "embed": 1,
        "embed_text": 1,
        "chroma_query": 1,
        "misses": 1,
        "hits": 0,
        "embed_texts": 1,
        "items": 1,
        "batches": 1,
        "batched": 1,
        "waits": 1,
    }
    assert (
        MetricsPage.fetch(stack.embedder_metrics).require(
            "fashionrag_embedder_queue_depth", kind="texts"
        )
        == 0
    )


def test_a_repeated_text_is_a_cache_hit_and_no_embedder_call(stack: Stack) -> None:
    text = next(_texts)
    with QueryClient(stack.query.address) as client:
        client.text(text, top_k=3, auto_category=False)

        def again() -> None:
            client.text(text, top_k=3, auto_category=False)

        delta = moved(
            stack,
            again,
            {
                "hits": s("fashionrag_query_text_cache_hits_total"),
                "misses": s("fashionrag_query_text_cache_misses_total"),
                "embed": s("fashionrag_query_backend_seconds_count", backend="embedder"),
                "items": s("fashionrag_embedder_items_total", kind="texts"),
                "search": s("fashionrag_query_requests_total", method="Search", code="OK"),
            },
        )
    assert delta == {"hits": 1, "misses": 0, "embed": 0, "items": 0, "search": 1}


def test_a_garment_search_is_counted_at_its_grain(stack: Stack) -> None:
    def search() -> None:
        with QueryClient(stack.query.address) as client:
            assert client.text("red tops", top_k=3).grain == "garment"

    delta = moved(
        stack,
        search,
        {
            "garment": s("fashionrag_query_searches_total", grain="garment", input="text"),
            "photo": s("fashionrag_query_searches_total", grain="photo"),
        },
    )
    assert delta == {"garment": 1, "photo": 0}


def test_http_requests_are_counted_by_route_template_and_status(stack: Stack) -> None:
    http = stack.query.http
    photo = next(p for p in stack.images.rglob("*") if p.suffix.lower() in (".jpg", ".png"))

    def requests() -> None:
        assert httpx.get(f"{http}{SEARCH}", params={"q": next(_texts)}, timeout=30).is_success
        assert httpx.get(f"{http}{SEARCH}", timeout=30).status_code == 400
        assert httpx.post(f"{http}{SEARCH}", content=photo.read_bytes(), timeout=30).is_success
        assert httpx.post(f"{http}{SEARCH}", content=b"junk", timeout=30).status_code == 400
        for i in range(3):
            assert httpx.get(f"{http}/images/no-such-{i}", timeout=30).status_code == 404
        assert httpx.get(f"{http}/no/such/{next(_texts)}", timeout=30).status_code == 404
        assert httpx.get(f"{http}/healthz", timeout=30).status_code == 200

    route = "fashionrag_query_http_requests_total"
    delta = moved(
        stack,
        requests,
        {
            "get_ok": s(route, route=SEARCH, method="GET", status="200"),
            "get_bad": s(route, route=SEARCH, method="GET", status="400"),
            "post_ok": s(route, route=SEARCH, method="POST", status="200"),
            "post_bad": s(route, route=SEARCH, method="POST", status="400"),
            "images": s(route, route="/images/{id}", method="GET", status="404"),
            "unmatched": s(route, route="unmatched", method="GET", status="404"),
            "all": s(route),
            "timed": s("fashionrag_query_http_request_seconds_count", route=SEARCH),
            "image_searches": s("fashionrag_query_searches_total", grain="photo", input="image"),
            "embed_image": s(
                "fashionrag_query_backend_seconds_count",
                backend="embedder",
                operation="embed_image",
            ),
            "embed_image_errors": s(
                "fashionrag_query_backend_errors_total", backend="embedder", operation="embed_image"
            ),
            "grpc": s("fashionrag_query_requests_total"),
        },
    )
    assert delta == {
        "get_ok": 1,
        "get_bad": 1,
        "post_ok": 1,
        "post_bad": 1,
        "images": 3,
        "unmatched": 1,
        "all": 8,  # /healthz left out
        "timed": 4,
        "image_searches": 1,
        "embed_image": 2,
        "embed_image_errors": 1,
        "grpc": 0,
    }
    page = MetricsPage.fetch(stack.query_metrics)
    routes = {
        sample.labels["route"]
        for family in page.families()
        for sample in family.samples
        if sample.name == f"{route}"
    }
    assert not any("no-such" in r or "/no/such" in r for r in routes), routes


def test_health_checks_are_not_requests(stack: Stack) -> None:
    def check_both() -> None:
        for server in (stack.embedder, stack.query):
            with grpc.insecure_channel(server.address) as channel:
                health = health_pb2_grpc.HealthStub(channel)
                for _ in range(3):
                    health.Check(health_pb2.HealthCheckRequest(service=""), timeout=10)

    delta = moved(
        stack,
        check_both,
        {
            "embedder": s("fashionrag_embedder_requests_total"),
            "query": s("fashionrag_query_requests_total"),
        },
    )
    assert delta == {"embedder": 0, "query": 0}
    embedder, query = stack.pages()
    assert embedder.value("fashionrag_embedder_requests_total", method="Check") is None
    assert query.value("fashionrag_query_requests_total", method="Check") is None


@pytest.mark.parametrize("service", ["embedder", "query"])
def test_the_metrics_page_passes_promtool(stack: Stack, service: str) -> None:
    binary = promtool()
    if binary is None:
        pytest.fail("no promtool here: `make promtool` unpacks it (make test does)")
    url = stack.embedder_metrics if service == "embedder" else stack.query_metrics
    assert promtool_check(MetricsPage.fetch(url), binary) == ""


@pytest.mark.parametrize("service", ["embedder", "query"])
def test_the_metrics_page_keeps_the_naming_conventions(stack: Stack, service: str) -> None:
    url = stack.embedder_metrics if service == "embedder" else stack.query_metrics
    assert lint(MetricsPage.fetch(url), f"fashionrag_{service}_") == []
