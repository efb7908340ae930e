"""SearchCore and the text-vector cache in-process, with small fakes for the embedder and the
collection (the same behaviours over real servers live in test_search.py)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest

from fashionrag.collection import KEY_CATEGORIES, KEY_IMAGE_ID, KEY_PATH, KEY_SPLIT
from fashionrag.errors import InvalidArgument, NotFound, Unavailable
from fashionrag.model_info import ModelInfo
from query_service.search import SearchCore
from query_service.search_types import SearchQuery
from query_service.text_cache import TextVectorCache

MODEL = ModelInfo(model_name="tiny", pretrained="none", dimension=4)


class FakeEmbedder:
    """Vectors from a table; counts its calls."""

    def __init__(self) -> None:
        self.text_calls: list[str] = []
        self.image_calls = 0
        self.down = False

    def embed_text(self, text: str, timeout: float | None = None) -> np.ndarray:
        if self.down:
            raise Unavailable("embedder down")
        self.text_calls.append(text)
        return np.array([1.0, 0.0, 0.0, 0.0], dtype=np.float32)

    def embed_image(self, data: bytes, timeout: float | None = None) -> np.ndarray:
        self.image_calls += 1
        return np.array([0.0, 1.0, 0.0, 0.0], dtype=np.float32)

    def model_info(self, refresh: bool = False) -> ModelInfo:
        if self.down:
            raise Unavailable("embedder down")
        return MODEL


class FakeCollection:
    """Answers queries from fixed rows, in the order given (unsorted on purpose); records the
    filters it was asked for."""

    def __init__(self, rows: list[tuple[str, dict[str, Any], float]]) -> None:
        self.rows = rows
        self.opened = 0
        self.wheres: list[dict[str, Any] | None] = []

    def open(self) -> Any:
        self.opened += 1
        return self

    def query_photos(
        self, vector: Sequence[float], n_results: int, where: dict[str, Any] | None
    ) -> list[tuple[str, dict[str, Any], float]]:
        self.wheres.append(where)
        return sorted(self.rows, key=lambda row: row[2])[:n_results]

    def get(self, record_id: str) -> dict[str, Any] | None:
        return next((meta for rid, meta, _ in self.rows if rid == record_id), None)

    def heartbeat(self) -> None:
        return None


def meta(image_id: int, *categories: str) -> dict[str, Any]:
    return {
        KEY_IMAGE_ID: image_id,
        KEY_SPLIT: "train",
        KEY_PATH: f"/images/train/{image_id}.jpg",
        KEY_CATEGORIES: list(categories),
    }


ROWS = [
    ("train-2", meta(2, "dress"), 0.5),
    ("train-1", meta(1, "top, t-shirt, sweatshirt"), 0.25),
    ("train-3", meta(3), -1e-7),  # a rounding error below zero
]


@pytest.fixture()
def embedder() -> FakeEmbedder:
    return FakeEmbedder()


@pytest.fixture()
def collection() -> FakeCollection:
    return FakeCollection(list(ROWS))


@pytest.fixture()
def core(embedder: FakeEmbedder, collection: FakeCollection) -> SearchCore:
    return SearchCore(embedder, collection, TextVectorCache(embedder.embed_text, 8))


def test_results_are_ranked_by_distance_and_never_negative(core: SearchCore) -> None:
    outcome = core.search(SearchQuery(text="something", top_k=3, auto_category=False))
    assert [hit.record.id for hit in outcome.hits] == ["train-3", "train-1", "train-2"]
    assert [hit.rank for hit in outcome.hits] == [1, 2, 3]
    assert outcome.hits[0].distance == 0.0
    assert outcome.hits[1].score == pytest.approx(0.75)
    assert outcome.hits[2].record.categories == ("dress",)


def test_top_k_defaults_to_ten_and_is_bounded(core: SearchCore) -> None:
    assert len(core.search(SearchQuery(text="x")).hits) == 3
    for bad in (0, 101):
        with pytest.raises(InvalidArgument, match="between 1 and 100"):
            core.search(SearchQuery(text="x", top_k=bad))


def test_a_category_named_in_the_text_becomes_the_filter(
    core: SearchCore, collection: FakeCollection
) -> None:
    outcome = core.search(SearchQuery(text="red tops"))
    assert outcome.auto_category == "top, t-shirt, sweatshirt"
    assert outcome.applied_categories == ["top, t-shirt, sweatshirt"]
    assert collection.wheres[-1] == {KEY_CATEGORIES: {"$contains": "top, t-shirt, sweatshirt"}}


def test_explicit_categories_win_and_the_off_switch_disables_inference(
    core: SearchCore, collection: FakeCollection
) -> None:
    explicit = core.search(SearchQuery(text="red tops", categories=["dress"]))
    assert (explicit.auto_category, explicit.applied_categories) == ("", ["dress"])
    off = core.search(SearchQuery(text="red tops", auto_category=False))
    assert (off.auto_category, off.applied_categories) == ("", [])
    assert collection.wheres[-1] is None


def test_a_repeated_text_is_embedded_once(core: SearchCore, embedder: FakeEmbedder) -> None:
    core.search(SearchQuery(text="a cached query"))
    core.search(SearchQuery(text="a cached query"))
    core.search(SearchQuery(text="another"))
    assert embedder.text_calls == ["a cached query", "another"]


def test_the_collection_is_opened_before_anything_is_embedded(
    core: SearchCore, embedder: FakeEmbedder, collection: FakeCollection
) -> None:
    with pytest.raises(InvalidArgument):
        core.search(SearchQuery(text="x", categories=["spaceship"]))
    assert (collection.opened, embedder.text_calls) == (0, [])  # validation comes first
    core.search(SearchQuery(image=b"jpeg bytes"))
    assert (collection.opened, embedder.image_calls) == (1, 1)


def test_an_image_query_is_not_cached_and_reports_its_kind(
    core: SearchCore, embedder: FakeEmbedder
) -> None:
    outcome = core.search(SearchQuery(image=b"one"))
    core.search(SearchQuery(image=b"one"))
    assert embedder.image_calls == 2
    assert outcome.query == "<image>"


def test_record_by_id_or_not_found(core: SearchCore) -> None:
    assert core.record("train-2").path == "/images/train/2.jpg"
    with pytest.raises(NotFound, match="train-99"):
        core.record("train-99")


def test_ping_names_the_embedder_when_it_is_down(core: SearchCore, embedder: FakeEmbedder) -> None:
    core.ping()
    embedder.down = True
    with pytest.raises(Unavailable, match="embedder"):
        core.ping()


def test_the_cache_can_be_emptied_and_turned_off() -> None:
    calls: list[str] = []

    def embed(text: str, timeout: float | None) -> np.ndarray:
        calls.append(text)
        return np.zeros(2, dtype=np.float32)

    cache = TextVectorCache(embed, size=2)
    vector = cache.vector("a")
    assert not vector.flags.writeable  # shared by every caller: nobody may change it
    cache.vector("a")
    cache.clear()
    cache.vector("a")
    off = TextVectorCache(embed, size=0)
    off.vector("b")
    off.vector("b")
    assert calls == ["a", "a", "b", "b"]
