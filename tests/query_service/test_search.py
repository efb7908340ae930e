"""The query service over real gRPC, against a real ChromaDB and a real embedder."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest

from devstack import servers
from devstack.metrics import MetricsPage
from devstack.ports import free_port
from embedder_service.client import EmbedderClient
from fashionrag.collection_store import connect
from fashionrag.errors import (
    DeadlineExceeded,
    FailedPrecondition,
    InvalidArgument,
    ModelMismatch,
    NotFound,
    Unavailable,
)
from fashionrag.fashionpedia import CATEGORIES
from fashionrag.v1 import query_pb2, query_pb2_grpc
from indexer_service.dataset import load_split
from query_service.client import QueryClient
from tests.conftest import DATASET_ROWS
from tests.query_service.conftest import COLLECTION, search_cli
from tests.rich_status import details, trailers_size

pytestmark = pytest.mark.integration


@pytest.fixture()
def client(query: servers.Server) -> Iterator[QueryClient]:
    with QueryClient(query.address) as client:
        yield client


@pytest.fixture()
def wire_stub(query: servers.Server) -> Iterator[query_pb2_grpc.QueryServiceStub]:
    """The bare generated stub, for the one test of what goes over the wire."""
    with grpc.insecure_channel(query.address) as channel:
        yield query_pb2_grpc.QueryServiceStub(channel)


def test_indexed_image_finds_itself_first(client: QueryClient, dataset_dir: Path) -> None:
    row = next(iter(load_split(str(dataset_dir), "train").skip(7)))
    outcome = client.image(row["image"]["bytes"], top_k=3)
    first = outcome.hits[0]
    assert first.record.id == f"train-{row['image_id']}"
    assert first.distance == pytest.approx(0.0, abs=1e-4)
    assert first.score == pytest.approx(1.0, abs=1e-4)
    assert outcome.query == "<image>"


def test_text_results_are_ordered_with_existing_files(client: QueryClient) -> None:
    outcome = client.text("something red", top_k=10)
    distances = [hit.distance for hit in outcome.hits]
    assert len(distances) == 10
    assert distances == sorted(distances)
    assert [hit.rank for hit in outcome.hits] == list(range(1, 11))
    for hit in outcome.hits:
        assert Path(hit.record.path).is_absolute() and Path(hit.record.path).is_file()
        assert hit.record.width > 0 and hit.record.height > 0
    # The client derives `score` from the distance; that the servicer writes the same into
    # the wire's score field is tested in test_conversions.py.


def test_distances_are_one_minus_the_dot_product_with_the_stored_vectors(
    client: QueryClient, embedder: servers.Server, chroma_url: str
) -> None:
    text = "a long blue one"
    outcome = client.text(text, top_k=DATASET_ROWS)
    assert outcome.grain == "photo"
    assert len(outcome.hits) == DATASET_ROWS - 1  # everything but the corrupt image
    assert len({hit.record.id for hit in outcome.hits}) == len(outcome.hits)
    photos = connect(chroma_url).get_collection(COLLECTION)
    assert photos.count() == len(outcome.hits)
    stored = photos.get(ids=[hit.record.id for hit in outcome.hits], include=["embeddings"])
    vectors = dict(zip(stored["ids"], np.asarray(stored["embeddings"]), strict=True))
    with EmbedderClient(embedder.address) as embed:
        query = embed.embed_text(text)
    for hit in outcome.hits:
        expected = max(0.0, 1.0 - float(np.dot(query, vectors[hit.record.id])))
        assert abs(hit.distance - expected) < 1e-4, hit.record.id


def test_category_filter_keeps_only_matching_images(client: QueryClient, chroma_url: str) -> None:
    metas = connect(chroma_url).get_collection(COLLECTION).get(include=["metadatas"])["metadatas"]
    wanted = metas[0]["categories"][0]
    expected = sum(1 for m in metas if wanted in (m.get("categories") or []))
    outcome = client.text("x", top_k=100, categories=[wanted])
    assert len(outcome.hits) == expected
    assert all(wanted in hit.record.categories for hit in outcome.hits)
    assert outcome.applied_categories == [wanted]


@pytest.mark.parametrize(
    ("request_", "message", "field", "reason"),
    [
        (query_pb2.SearchRequest(), "exactly one", "query", "INVALID_ARGUMENT"),
        (query_pb2.SearchRequest(text="   "), "empty", "text", "INVALID_ARGUMENT"),
        (
            query_pb2.SearchRequest(text="x", top_k=101),
            "between 1 and 100",
            "top_k",
            "INVALID_ARGUMENT",
        ),
        (
            query_pb2.SearchRequest(text="x", top_k=-1),
            "between 1 and 100",
            "top_k",
            "INVALID_ARGUMENT",
        ),
        (
            query_pb2.SearchRequest(text="x", categories=["dress", "spaceship"]),
            "'spaceship'",
            "categories[1]",
            "UNKNOWN_CATEGORY",
        ),
        (
            query_pb2.SearchRequest(image=b"not an image"),
            "cannot identify",
            "image",
            "INVALID_IMAGE",
        ),
        (
            query_pb2.SearchRequest(text="x", category_mode=7),  # type: ignore[arg-type]
            "category_mode",
            "category_mode",
            "UNKNOWN_ENUM_VALUE",
        ),
    ],
)
def test_bad_queries_are_invalid_argument_with_the_field_and_reason(
    wire_stub: query_pb2_grpc.QueryServiceStub,
    request_: query_pb2.SearchRequest,
    message: str,
    field: str,
    reason: str,
) -> None:
    # The bare stub on purpose: the status code and details on the wire are the contract that
    # callers in other languages see, without our client's translation in between.
    with pytest.raises(grpc.RpcError) as info:
        wire_stub.Search(request_)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in (info.value.details() or "")
    found = details(info.value)
    assert (found.fields, found.reason, found.domain) == ([field], reason, "fashionrag.dev")


def test_two_thousand_unknown_categories_are_invalid_argument_with_details(
    wire_stub: query_pb2_grpc.QueryServiceStub,
) -> None:
    # They were RESOURCE_EXHAUSTED: the message listing them all outgrew gRPC's trailers.
    names = [f"no-such-category-{i}" for i in range(2000)]
    with pytest.raises(grpc.RpcError) as info:
        wire_stub.Search(query_pb2.SearchRequest(text="x", categories=names))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert len(info.value.details() or "") < 200
    found = details(info.value)
    assert found.reason == "UNKNOWN_CATEGORY"
    assert found.fields == [f"categories[{i}]" for i in range(10)]
    assert found.metadata["field_violations"] == "2000"
    assert found.metadata["allowed"].split("|") == list(CATEGORIES)
    assert trailers_size(info.value) < 4096


def test_corrupt_request_bytes_are_invalid_argument(query: servers.Server) -> None:
    with grpc.insecure_channel(query.address) as channel:
        raw = channel.unary_unary(
            "/fashionrag.v1.QueryService/Search",
            request_serializer=None,
            response_deserializer=None,
        )
        with pytest.raises(grpc.RpcError) as info:
            raw(b"\xff\xff\xff\xff\x0f", timeout=30)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert details(info.value).reason == "MALFORMED_REQUEST"


def test_client_reads_the_details_into_the_domain_error(client: QueryClient) -> None:
    with pytest.raises(InvalidArgument) as info:
        client.text("x", categories=["dress", "spaceship"])
    assert info.value.reason == "UNKNOWN_CATEGORY"
    assert [v.field for v in info.value.violations] == ["categories[1]"]


def test_collection_of_another_model_is_failed_precondition(
    indexed: Path,
    chroma_url: str,
    logs_dir: Path,
) -> None:
    other = servers.start_embedder(logs_dir / "embedder-other.log", seed=3)
    query = servers.start_query(logs_dir / "query-other.log", other.address, chroma_url, COLLECTION)
    try:
        with QueryClient(query.address) as client, pytest.raises(FailedPrecondition) as info:
            client.text("red tops")
        assert "seed 0" in str(info.value) and "seed 3" in str(info.value)
        assert type(info.value) is ModelMismatch
        assert info.value.reason == "MODEL_MISMATCH"
        assert info.value.metadata["collection"] == COLLECTION
    finally:
        query.stop()
        other.stop()


def test_missing_collection_is_not_found(
    embedder: servers.Server, chroma_url: str, logs_dir: Path
) -> None:
    query = servers.start_query(
        logs_dir / "query-missing.log", embedder.address, chroma_url, "no-such-collection"
    )
    try:
        with QueryClient(query.address) as client, pytest.raises(NotFound) as info:
            client.text("red tops")
        assert info.value.reason == "COLLECTION_NOT_FOUND"
    finally:
        query.stop()


def test_embedder_down_is_unavailable(chroma_url: str, logs_dir: Path, indexed: Path) -> None:
    query = servers.start_query(
        logs_dir / "query-noembedder.log",
        f"127.0.0.1:{free_port()}",
        chroma_url,
        COLLECTION,
        "--embed-timeout",
        "10",
    )
    try:
        with QueryClient(query.address) as client, pytest.raises(Unavailable) as info:
            started = time.monotonic()
            client.text("red tops", timeout=20)
        elapsed = time.monotonic() - started
        assert type(info.value) is Unavailable
        assert "embedder" in str(info.value)
        assert info.value.metadata["backend"] == "embedder"
        # Not after waiting out the embed timeout (10 s), nor the client's retries of it.
        assert elapsed < 2.0, f"{elapsed:.1f}s"
    finally:
        query.stop()


def test_cli_prints_a_table(query: servers.Server) -> None:
    result = search_cli(query, "something red", "-k", "5")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[0] == "query: something red"
    # Then what was understood and which vectors were ranked (a colour alone: photos), before
    # the header and a row per result.
    assert lines[1].startswith("understood: red = colour red")
    assert lines[2].startswith("grain: photo")
    assert lines[3].split()[:3] == ["rank", "distance", "path"]
    assert len(lines) == 4 + 5


def test_cli_json_follows_the_contract(query: servers.Server) -> None:
    result = search_cli(query, "red tops", "-k", "4", "--json", "--no-auto-category")
    payload = json.loads(result.stdout)
    assert payload["query"] == "red tops"
    assert payload["auto_category"] == ""
    results = payload["results"]
    assert [r["rank"] for r in results] == [1, 2, 3, 4]
    assert [r["distance"] for r in results] == sorted(r["distance"] for r in results)
    assert {"rank", "id", "path", "distance", "categories"} <= set(results[0])
    assert all(Path(r["path"]).is_file() for r in results)


def test_cli_image_query(query: servers.Server, indexed: Path) -> None:
    some_file = sorted((indexed / "train").iterdir())[0]
    result = search_cli(query, "--image", str(some_file), "-k", "1", "--json")
    assert json.loads(result.stdout)["results"][0]["path"] == str(some_file)


def test_cli_reports_errors_on_stderr(query: servers.Server) -> None:
    result = search_cli(query, "red tops", "-k", "500")
    assert result.returncode == 1
    assert "INVALID_ARGUMENT" in result.stderr and "between 1 and 100" in result.stderr


def test_cli_needs_a_query(query: servers.Server) -> None:
    result = search_cli(query)
    assert result.returncode == 2
    assert "--image" in result.stderr


def test_category_named_in_the_text_restricts_and_is_reported(client: QueryClient) -> None:
    tops = "top, t-shirt, sweatshirt"
    outcome = client.text("red tops", top_k=100)
    assert outcome.auto_category == tops
    assert outcome.applied_categories == [tops]
    assert outcome.hits and all(tops in hit.record.categories for hit in outcome.hits)

    off = client.text("red tops", top_k=100, auto_category=False)
    assert off.auto_category == "" and not off.applied_categories
    assert len(off.hits) > len(outcome.hits)


def test_explicit_categories_win_over_the_text(client: QueryClient) -> None:
    outcome = client.text("red tops", top_k=100, categories=["shoe"])
    assert outcome.auto_category == ""
    assert outcome.applied_categories == ["shoe"]
    assert all("shoe" in hit.record.categories for hit in outcome.hits)


def test_cli_saves_a_contact_sheet(query: servers.Server, tmp_path: Path) -> None:
    from PIL import Image

    out = tmp_path / "sheet.png"
    result = search_cli(query, "something blue", "-k", "7", "--save-grid", str(out))
    assert result.returncode == 0, result.stderr
    with Image.open(out) as sheet:
        assert sheet.format == "PNG"
        assert sheet.width > 5 * 200 and sheet.height > 2 * 200  # 5 columns, 2 rows
        # thumbnails were drawn: the sheet is not blank white
        assert len(sheet.convert("RGB").getcolors(maxcolors=1 << 20) or []) > 50


def test_eval_arithmetic_matches_a_direct_computation(
    query: servers.Server, chroma_url: str
) -> None:
    from query_service import evaluate

    annotations = evaluate.collection_annotations(chroma_url, COLLECTION)
    metas = connect(chroma_url).get_collection(COLLECTION).get(include=["metadatas"])["metadatas"]
    with QueryClient(query.address) as client:
        scores = evaluate.evaluate(client, annotations, 10, categories=["dress", "shoe", "coat"])
        for score in scores:
            holders = sum(1 for m in metas if score.category in (m.get("categories") or []))
            assert score.base_rate == pytest.approx(holders / len(metas))
            direct = client.text(score.prompt, top_k=10, auto_category=False)
            hits = sum(1 for hit in direct.hits if score.category in hit.record.categories)
            assert score.precision == pytest.approx(hits / len(direct.hits))
    table = evaluate.markdown(scores, 10, "t")
    assert table.count("\n| ") == 2 + len(scores)  # the header, a row each, the mean


def test_chroma_down_is_unavailable_and_the_service_recovers(
    indexed: Path,
    embedder: servers.Server,
    tmp_path: Path,
    logs_dir: Path,
    dataset_dir: Path,
) -> None:
    data = tmp_path / "chroma"
    chroma = servers.start_chroma(data, logs_dir / "chroma-q1.log")
    url = f"http://{chroma.address}"
    result = servers.run_indexer(
        *servers.indexer_args(
            embedder.address, url, dataset_dir, tmp_path / "img", "recover", "--limit", "10"
        )
    )
    assert result.returncode == 0, result.stderr
    query = servers.start_query(logs_dir / "query-recover.log", embedder.address, url, "recover")
    client = QueryClient(query.address)
    try:
        assert len(client.text("something", top_k=3).hits) == 3
        chroma.stop()
        with pytest.raises(Unavailable) as info:
            client.text("something", top_k=3, timeout=30)
        assert "ChromaDB" in str(info.value)
        assert info.value.reason == "BACKEND_UNAVAILABLE"
        assert info.value.metadata == {"backend": "chromadb"}
        chroma = servers.start_chroma(data, logs_dir / "chroma-q2.log", port=chroma.port)
        assert len(client.text("something", top_k=3, timeout=30).hits) == 3
    finally:
        client.close()
        query.stop()
        chroma.stop()


def test_repeated_text_skips_the_embedder(indexed: Path, chroma_url: str, logs_dir: Path) -> None:
    metrics_port = free_port()
    embedder = servers.start_embedder(
        logs_dir / "embedder-cache.log", "--metrics-port", str(metrics_port)
    )
    query = servers.start_query(
        logs_dir / "query-cache.log", embedder.address, chroma_url, COLLECTION
    )

    def embed_calls() -> float:
        page = MetricsPage.fetch(f"http://127.0.0.1:{metrics_port}/metrics")
        return page.require("fashionrag_embedder_requests_total", method="EmbedTexts")

    try:
        with QueryClient(query.address) as client:
            first = client.text("a cached query", top_k=5)
            calls = embed_calls()
            again = client.text("a cached query", top_k=5)
            assert embed_calls() == calls  # answered from the cache
            assert [hit.record.id for hit in again.hits] == [hit.record.id for hit in first.hits]
            client.text("another query", top_k=5)
            assert embed_calls() == calls + 1
    finally:
        query.stop()
        embedder.stop()


def test_callers_deadline_reaches_the_embedder(
    indexed: Path, chroma_url: str, logs_dir: Path
) -> None:
    metrics_port = free_port()
    # A long batching window makes every embed call slower than the caller's deadline.
    embedder = servers.start_embedder(
        logs_dir / "embedder-deadline.log",
        "--fixed-delay",
        "--max-delay-ms",
        "1500",
        "--metrics-port",
        str(metrics_port),
    )
    query = servers.start_query(
        logs_dir / "query-deadline.log", embedder.address, chroma_url, COLLECTION
    )

    def embedded_texts() -> float:
        page = MetricsPage.fetch(f"http://127.0.0.1:{metrics_port}/metrics")
        return page.require("fashionrag_embedder_items_total", kind="texts")

    try:
        with QueryClient(query.address) as client:
            client.text("warm", top_k=1, timeout=30)  # checks the model
            before = embedded_texts()
            with pytest.raises(DeadlineExceeded):
                client.text("too slow for me", top_k=3, timeout=0.5)
        time.sleep(2)  # past the batching window: the text would have been embedded by now
        assert embedded_texts() == before  # the embedder gave up with the caller
    finally:
        query.stop()
        embedder.stop()
