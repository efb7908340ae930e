"""Searching garment records over real servers: a collection of generated outfits (garments of
known colours, their vectors from the real embedder's regions) written through the collection
contract, searched through gRPC, HTTP and the command line."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest

from devstack import servers
from devstack.outfit_index import outfits_with_red_tops, write_outfit_index
from embedder_service.client import EmbedderClient
from fashionrag.collection import (
    GARMENT_EF_SEARCH,
    GarmentRecord,
    ImageRecord,
    garment_filter,
    garments_collection_name,
)
from fashionrag.collection_store import CollectionWriter, connect, open_collections
from fashionrag.errors import InvalidArgument
from query_service import evaluate
from query_service.client import QueryClient
from query_service.json_contract import outcome_dict
from tests.query_service.conftest import search_cli

pytestmark = pytest.mark.integration

COLLECTION = "garment-tests"
TOPS = "top, t-shirt, sweatshirt"
PHOTOS = 24
RED_TOPS = 3  # at least this many photos with a red top


@dataclass(frozen=True)
class Index:
    """The indexed outfits: photo id → its garment records, and where the files are."""

    garments: dict[str, list[GarmentRecord]]
    images: Path

    def holding(self, category: str, colours: set[str]) -> set[str]:
        """The photos with a garment of `category` whose primary or secondary colour is in
        `colours`."""
        return {
            pid
            for pid, records in self.garments.items()
            if any(g.category == category and {g.colour, g.colour2} & colours for g in records)
        }


@pytest.fixture(scope="module")
def index(
    embedder: servers.Server, chroma_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Index:
    """The outfits written as the indexer writes them (devstack.outfit_index)."""
    images = tmp_path_factory.mktemp("outfits")
    outfits = [o for _, o in outfits_with_red_tops(PHOTOS, RED_TOPS, 150, 200)]
    by_photo = write_outfit_index(outfits, embedder.address, chroma_url, COLLECTION, images)
    return Index(by_photo, images)


@pytest.fixture(scope="module")
def query(
    index: Index, embedder: servers.Server, chroma_url: str, logs_dir: Path
) -> Iterator[servers.Server]:
    server = servers.start_query(
        logs_dir / "query-garments.log", embedder.address, chroma_url, COLLECTION
    )
    yield server
    server.stop()


@pytest.fixture()
def client(query: servers.Server) -> Iterator[QueryClient]:
    with QueryClient(query.address) as client:
        yield client


def test_the_garment_index_searches_wider_than_chromas_default(
    index: Index, chroma_url: str
) -> None:
    chroma = connect(chroma_url)
    garments = chroma.get_collection(garments_collection_name(COLLECTION))
    assert garments.configuration["hnsw"]["ef_search"] == GARMENT_EF_SEARCH > 100
    assert chroma.get_collection(COLLECTION).configuration["hnsw"]["ef_search"] == 100


def test_an_older_garment_index_is_widened_when_opened(
    embedder: servers.Server, chroma_url: str
) -> None:
    chroma = connect(chroma_url)
    with EmbedderClient(embedder.address) as embed:
        model = embed.model_info()
    name = "garment-tests-older"
    made = open_collections(chroma, name, model, create=True, recreate=True)
    made.garments.modify(configuration={"hnsw": {"ef_search": 100}})  # as made before
    open_collections(chroma, name, model, create=False)
    again = chroma.get_collection(garments_collection_name(name))
    assert again.configuration["hnsw"]["ef_search"] == GARMENT_EF_SEARCH


def test_red_tops_finds_every_photo_with_a_red_top_and_only_those(
    client: QueryClient, index: Index
) -> None:
    outcome = client.text("red tops", top_k=20)
    assert outcome.grain == "garment"
    assert (outcome.auto_category, outcome.applied_categories) == (TOPS, [TOPS])
    ids = [hit.record.id for hit in outcome.hits]
    assert len(ids) == len(set(ids))  # each photo once
    assert set(ids) == index.holding(TOPS, {"red"})
    distances = [hit.distance for hit in outcome.hits]
    assert distances == sorted(distances)
    for hit in outcome.hits:
        assert hit.garments and hit.distance == hit.garments[0].distance
        assert [g.distance for g in hit.garments] == sorted(g.distance for g in hit.garments)
        records = {g.id: g for g in index.garments[hit.record.id]}
        for match in hit.garments:
            record = records[match.id]
            assert match.category == TOPS and "red" in (match.colour, match.colour2)
            assert (match.colour, match.colour2) == (record.colour, record.colour2)
            assert match.box == pytest.approx(record.box)
            assert match.area == pytest.approx(record.area, abs=1e-6)
        assert Path(hit.record.path).is_file()


def test_garment_distances_are_the_collections_and_one_minus_the_dot_product(
    client: QueryClient, embedder: servers.Server, chroma_url: str
) -> None:
    with EmbedderClient(embedder.address) as embed:
        vector = embed.embed_text("red tops")
    garments = connect(chroma_url).get_collection(garments_collection_name(COLLECTION))
    direct = garments.query(
        query_embeddings=[vector.tolist()],
        n_results=100,
        where=garment_filter([(TOPS, ["red"])]),
        include=["distances"],
    )
    expected = dict(zip(direct["ids"][0], direct["distances"][0], strict=True))
    outcome = client.text("red tops", top_k=20)
    assert outcome.grain == "garment"
    matches = [g for hit in outcome.hits for g in hit.garments]
    assert {g.id for g in matches} == set(expected)
    stored = garments.get(ids=[g.id for g in matches], include=["embeddings"])
    vectors = dict(zip(stored["ids"], np.asarray(stored["embeddings"]), strict=True))
    for match in matches:
        assert match.distance == pytest.approx(max(0.0, expected[match.id]), abs=1e-5)
        by_dot = max(0.0, 1.0 - float(np.dot(vector, vectors[match.id])))
        assert abs(match.distance - by_dot) < 1e-4, match.id
    for hit in outcome.hits:
        assert hit.distance == min(g.distance for g in hit.garments)


def test_a_photo_with_two_matching_shoes_appears_once_with_both(
    client: QueryClient, index: Index
) -> None:
    outcome = client.text("shoes", top_k=100)
    assert outcome.grain == "garment"
    assert len(outcome.hits) == len(index.holding("shoe", set(_all_colours(index))))
    assert all(len(hit.garments) == 2 for hit in outcome.hits)  # every outfit has two


def _all_colours(index: Index) -> set[str]:
    return {g.colour for records in index.garments.values() for g in records}


def test_red_tops_and_blue_jeans_finds_either(client: QueryClient, index: Index) -> None:
    outcome = client.text("red tops and blue jeans", top_k=50)
    assert [(f.category, f.colours) for f in outcome.garment_filters] == [
        (TOPS, ("red",)),
        ("pants", ("blue",)),
    ]
    either = index.holding(TOPS, {"red"}) | index.holding("pants", {"blue"})
    assert {hit.record.id for hit in outcome.hits} == either
    for hit in outcome.hits:
        for g in hit.garments:
            colours = {g.colour, g.colour2}
            assert (g.category, "red" in colours) == (TOPS, True) or (
                g.category,
                "blue" in colours,
            ) == ("pants", True)


def test_explicit_colours_win_and_an_unknown_one_is_refused(
    client: QueryClient, index: Index
) -> None:
    outcome = client.text("red tops", top_k=50, colours=["black", "navy"])
    assert outcome.applied_colours == ["black", "navy"]
    assert {hit.record.id for hit in outcome.hits} == index.holding(TOPS, {"black", "navy"})
    with pytest.raises(InvalidArgument, match="the palette: black, white"):
        client.text("tops", colours=["chartreuse"])


def test_the_off_switch_and_image_queries_rank_photo_vectors(
    client: QueryClient, index: Index
) -> None:
    off = client.text("red tops", top_k=5, auto_category=False)
    assert (off.grain, off.understood, off.garment_filters) == ("photo", [], [])
    assert len(off.hits) == 5 and all(hit.garments == () for hit in off.hits)
    some_file = sorted((index.images / "train").iterdir())[0]
    image = client.image(some_file.read_bytes(), top_k=3)
    assert image.grain == "photo"
    assert image.hits[0].record.path == str(some_file)


def test_http_json_and_grpc_agree(query: servers.Server, client: QueryClient) -> None:
    params: dict[str, str | int] = {"q": "red tops and blue jeans", "k": 6}
    http = httpx.get(f"{query.http}/api/search", params=params, timeout=30).json()
    assert http == outcome_dict(client.text("red tops and blue jeans", top_k=6))
    assert http["grain"] == "garment"
    assert http["applied_colours"] == ["red", "blue"]
    assert {"id", "category", "colour", "colour2", "box", "distance", "area"} == set(
        http["results"][0]["garments"][0]
    )
    cli = search_cli(query, "red tops and blue jeans", "-k", "6", "--json")
    assert json.loads(cli.stdout) == http


def test_http_takes_colours_and_names_the_palette_for_a_wrong_one(
    query: servers.Server, index: Index
) -> None:
    ok = httpx.get(
        f"{query.http}/api/search",
        params=[("q", "something"), ("k", "50"), ("colour", "white"), ("category", "shoe")],
        timeout=30,
    ).json()
    assert ok["garment_filters"] == [{"category": "shoe", "colours": ["white"]}]
    assert {r["id"] for r in ok["results"]} == index.holding("shoe", {"white"})
    bad = httpx.get(f"{query.http}/api/search", params={"q": "tops", "colour": "gray"}, timeout=30)
    assert bad.status_code == 400 and "navy" in bad.json()["error"]


def test_cli_table_shows_what_was_understood_and_the_matched_garments(
    query: servers.Server,
) -> None:
    result = search_cli(query, "crimson t-shirts", "-k", "3")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "query: crimson t-shirts"
    assert lines[1].startswith(f"understood: crimson = colour red; t-shirts = garment {TOPS}")
    assert lines[2].startswith("grain: garment") and f"{TOPS} in red" in lines[2]
    header = next(i for i, line in enumerate(lines) if line.split()[:1] == ["rank"])
    assert "matched garments" in lines[header]
    rows = lines[header + 1 :]
    assert len(rows) == 3
    assert all(f"{TOPS} red" in row or "/red " in row for row in rows)


def test_an_index_without_garment_records_filters_photos_by_the_named_garment(
    index: Index, embedder: servers.Server, chroma_url: str, logs_dir: Path
) -> None:
    name = "garment-tests-photos-only"
    chroma = connect(chroma_url)
    with EmbedderClient(embedder.address) as embed:
        model = embed.model_info()
    source = chroma.get_collection(COLLECTION).get(include=["metadatas", "embeddings"])
    writer = CollectionWriter(
        chroma, open_collections(chroma, name, model, create=True, recreate=True)
    )
    writer.upsert_photos(
        [
            ImageRecord.from_metadata(i, m)
            for i, m in zip(source["ids"], source["metadatas"], strict=True)
        ],
        source["embeddings"],
    )
    query = servers.start_query(
        logs_dir / "query-photos-only.log", embedder.address, chroma_url, name
    )
    try:
        with QueryClient(query.address) as client:
            outcome = client.text("red tops", top_k=50)
        assert (outcome.grain, outcome.applied_categories, outcome.garment_filters) == (
            "photo",
            [TOPS],
            [],
        )
        assert outcome.hits and all(TOPS in hit.record.categories for hit in outcome.hits)
        assert all(hit.garments == () for hit in outcome.hits)
    finally:
        query.stop()


def test_eval_scores_colour_and_garment_queries_against_the_records(
    client: QueryClient, chroma_url: str, index: Index
) -> None:
    garments = evaluate.collection_garments(chroma_url, COLLECTION)
    photos = evaluate.photo_ids(chroma_url, COLLECTION)
    assert len(photos) == len(index.garments)
    queries = evaluate.garment_queries(garments, 5)
    assert queries[0] == ("red tops", (TOPS, "red"))  # a classic the collection holds
    scores = evaluate.evaluate_garments(client, photos, garments, 10, queries)
    for score in scores:
        pair = (score.category, score.colour)
        holders = {pid for pid, pairs in garments.items() if pair in pairs}
        assert score.base_rate == pytest.approx(len(holders) / len(photos))
        # The filter makes every garment-grain hit one, as many as the collection holds.
        assert score.garment_precision == 1.0
        assert score.garment_retrieved == min(10, len(holders))
        direct = client.text(score.query, top_k=10, auto_category=False)
        hits = sum(1 for hit in direct.hits if hit.record.id in holders)
        assert score.photo_precision == pytest.approx(hits / len(direct.hits))
    table = evaluate.garments_markdown(scores, 10, "t")
    assert table.count("\n| ") == 2 + len(scores)  # the header, a row each, the mean
