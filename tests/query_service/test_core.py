"""SearchCore and the text-vector cache in-process, with small fakes for the embedder and the
collection (the same behaviours over real servers live in test_search.py)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest

from fashionrag.collection import (
    KEY_CATEGORIES,
    KEY_IMAGE_ID,
    KEY_PATH,
    KEY_SPLIT,
    GarmentRecord,
    garment_filter,
    garment_record_id,
)
from fashionrag.errors import InvalidArgument, NotFound, Unavailable
from fashionrag.fashionpedia import GARMENTS
from fashionrag.model_info import ModelInfo
from query_service.search import OVERFETCH, SearchCore
from query_service.search_types import GarmentFilter, SearchQuery
from query_service.text_cache import TextVectorCache

Row = tuple[str, dict[str, Any], float]
TOPS = "top, t-shirt, sweatshirt"

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


def matches(meta: dict[str, Any], where: dict[str, Any] | None) -> bool:
    """ChromaDB's `where` semantics, for the operators the contract uses."""
    if where is None:
        return True
    if "$and" in where:
        return all(matches(meta, clause) for clause in where["$and"])
    if "$or" in where:
        return any(matches(meta, clause) for clause in where["$or"])
    ((key, condition),) = where.items()
    if isinstance(condition, dict) and "$in" in condition:
        return meta.get(key) in condition["$in"]
    if isinstance(condition, dict) and "$contains" in condition:
        return condition["$contains"] in (meta.get(key) or [])
    return bool(meta.get(key) == condition)


class FakeCollection:
    """Answers queries from fixed rows under ChromaDB's filter semantics, nearest first (the
    rows are unsorted on purpose); records the filters and sizes it was asked for."""

    def __init__(self, rows: list[Row], garments: list[Row] | None = None) -> None:
        self.rows = rows
        self.garments = garments or []
        self.opened = 0
        self.wheres: list[dict[str, Any] | None] = []
        self.garment_wheres: list[dict[str, Any] | None] = []
        self.garment_sizes: list[int] = []
        self.photo_reads: list[list[str]] = []

    def open(self) -> Any:
        self.opened += 1
        return self

    def has_garments(self) -> bool:
        return bool(self.garments)

    def query_photos(
        self, vector: Sequence[float], n_results: int, where: dict[str, Any] | None
    ) -> list[Row]:
        self.wheres.append(where)
        return self._query(self.rows, n_results, where)

    def query_garments(
        self, vector: Sequence[float], n_results: int, where: dict[str, Any] | None
    ) -> list[Row]:
        self.garment_wheres.append(where)
        self.garment_sizes.append(n_results)
        return self._query(self.garments, n_results, where)

    @staticmethod
    def _query(rows: list[Row], n: int, where: dict[str, Any] | None) -> list[Row]:
        return sorted((r for r in rows if matches(r[1], where)), key=lambda r: r[2])[:n]

    def photos(self, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        self.photo_reads.append(list(ids))
        return {rid: meta for rid, meta, _ in self.rows if rid in ids}

    def get(self, record_id: str) -> dict[str, Any] | None:
        return self.photos([record_id]).get(record_id)

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


def garment(
    image_id: int, box_id: int, category: str, colour: str, distance: float, colour2: str = ""
) -> Row:
    record = GarmentRecord(
        id=garment_record_id("train", image_id, box_id),
        photo_id=f"train-{image_id}",
        image_id=image_id,
        split="train",
        category=category,
        box=(10.0 * box_id, 20.0, 10.0 * box_id + 30.0, 80.0),
        area=0.1,
        colour=colour,
        colour2=colour2,
    )
    return record.id, record.metadata(), distance


PHOTOS = [
    ("train-1", meta(1, TOPS, "pants", "shoe"), 0.6),
    ("train-2", meta(2, TOPS), 0.7),
    ("train-3", meta(3, TOPS, "sleeve"), 0.8),
    ("train-4", meta(4, "dress"), 0.1),
]
GARMENT_ROWS = [
    garment(1, 1, TOPS, "red", 0.30),
    garment(1, 2, "pants", "blue", 0.20),
    garment(1, 3, "shoe", "black", 0.52),
    garment(1, 4, "shoe", "black", 0.50),
    garment(2, 1, TOPS, "white", 0.10, colour2="red"),
    garment(3, 1, TOPS, "blue", 0.05),
    garment(3, 2, TOPS, "red", 0.40),
    garment(4, 1, "dress", "black", 0.15),
    garment(9, 1, TOPS, "red", 0.01),  # train-9 has no photo record yet: still being indexed
]


# Umbrellas nearer than every garment above and in no test's terms (nor with photo records): the
# unfiltered over-fetch then finds no match, and the filtered queries answer.
FILLER = [
    garment(1000 + i, 1, "umbrella", "purple", 0.001 * i / OVERFETCH) for i in range(OVERFETCH)
]


def crowded(*garment_rows: Row, photos: Sequence[Row] = PHOTOS) -> FakeCollection:
    """A collection whose over-fetch holds only FILLER."""
    return FakeCollection(list(photos), [*FILLER, *garment_rows])


@pytest.fixture()
def garments() -> FakeCollection:
    return FakeCollection(list(PHOTOS), list(GARMENT_ROWS))


@pytest.fixture()
def garment_core(embedder: FakeEmbedder, garments: FakeCollection) -> SearchCore:
    return SearchCore(embedder, garments, TextVectorCache(embedder.embed_text, 8))


def ids(outcome: Any) -> list[str]:
    return [hit.record.id for hit in outcome.hits]


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


def test_without_garment_records_a_named_garment_filters_photos(
    core: SearchCore, collection: FakeCollection
) -> None:
    outcome = core.search(SearchQuery(text="red tops"))
    assert (outcome.grain, outcome.garment_filters) == ("photo", [])
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


def test_a_named_garment_ranks_each_photo_once_by_its_best_matching_garment(
    garment_core: SearchCore, garments: FakeCollection
) -> None:
    outcome = garment_core.search(SearchQuery(text="red tops"))
    assert outcome.grain == "garment"
    assert outcome.garment_filters == [GarmentFilter(TOPS, ("red",))]
    assert (outcome.auto_category, outcome.applied_categories) == (TOPS, [TOPS])
    assert outcome.applied_colours == ["red"]
    # train-3's blue top is nearer than its red one, but only the red one matches; train-2's
    # top is red as its secondary colour; train-9 has no photo record yet.
    assert ids(outcome) == ["train-2", "train-1", "train-3"]
    assert [hit.distance for hit in outcome.hits] == [0.10, 0.30, 0.40]
    assert [[g.id for g in hit.garments] for hit in outcome.hits] == [
        ["train-2-g1"],
        ["train-1-g1"],
        ["train-3-g2"],
    ]
    match = outcome.hits[1].garments[0]
    assert (match.category, match.colour, match.box) == (TOPS, "red", (10.0, 20.0, 40.0, 80.0))
    assert outcome.hits[0].record.path == "/images/train/2.jpg"  # the photo's own metadata
    assert garments.wheres == []  # photo vectors were not searched


def test_a_photo_with_several_matching_garments_appears_once_with_them_nearest_first(
    garment_core: SearchCore,
) -> None:
    outcome = garment_core.search(SearchQuery(text="black shoes"))
    assert ids(outcome) == ["train-1"]
    assert outcome.hits[0].distance == 0.50
    assert [g.id for g in outcome.hits[0].garments] == ["train-1-g4", "train-1-g3"]


def test_red_tops_and_blue_jeans_match_either_and_rank_by_the_best(
    garment_core: SearchCore,
) -> None:
    outcome = garment_core.search(SearchQuery(text="red tops and blue jeans"))
    assert outcome.garment_filters == [
        GarmentFilter(TOPS, ("red",)),
        GarmentFilter("pants", ("blue",)),
    ]
    assert outcome.applied_categories == [TOPS, "pants"]
    assert ids(outcome) == ["train-2", "train-1", "train-3"]
    best = outcome.hits[1]
    assert best.distance == 0.20  # its blue pants, nearer than its red top
    assert [(g.category, g.colour) for g in best.garments] == [("pants", "blue"), (TOPS, "red")]
    assert [w.kind for w in outcome.understood] == ["colour", "garment", "colour", "garment"]
    assert outcome.understood[3].words == "jeans" and outcome.understood[3].meaning == "pants"


def test_more_garments_are_fetched_while_too_few_distinct_photos_came_back(
    embedder: FakeEmbedder,
) -> None:
    crowd = [garment(5, i, TOPS, "red", 0.01 + 0.001 * i) for i in range(1, 61)]
    collection = crowded(*crowd, *GARMENT_ROWS, photos=[*PHOTOS, ("train-5", meta(5, TOPS), 0.9)])
    core = SearchCore(embedder, collection, TextVectorCache(embedder.embed_text, 8))
    outcome = core.search(SearchQuery(text="red tops", top_k=2))
    assert collection.garment_sizes == [OVERFETCH, 8, 64]
    assert ids(outcome) == ["train-5", "train-2"]
    assert len(outcome.hits[0].garments) == 60


def test_fetching_stops_when_the_garments_run_out(
    garment_core: SearchCore, garments: FakeCollection
) -> None:
    outcome = garment_core.search(SearchQuery(text="dresses", top_k=5))
    assert ids(outcome) == ["train-4"]
    assert garments.garment_sizes == [OVERFETCH]  # fewer came back: that was every garment
    collection = crowded(*GARMENT_ROWS)
    core = SearchCore(garment_core.embedder, collection, garment_core.texts)
    assert ids(core.search(SearchQuery(text="dresses", top_k=5))) == ["train-4"]
    assert collection.garment_sizes == [OVERFETCH, 20]


def test_explicit_categories_and_colours_win_over_the_text(
    garment_core: SearchCore,
) -> None:
    outcome = garment_core.search(
        SearchQuery(text="red tops", categories=["dress"], colours=["black"])
    )
    assert outcome.garment_filters == [GarmentFilter("dress", ("black",))]
    assert (outcome.auto_category, ids(outcome)) == ("", ["train-4"])
    recoloured = garment_core.search(SearchQuery(text="red tops", colours=["blue"]))
    assert recoloured.garment_filters == [GarmentFilter(TOPS, ("blue",))]
    assert recoloured.auto_category == TOPS
    assert ids(recoloured) == ["train-3"]


def test_explicit_colours_without_a_garment_filter_every_garment_category(
    garment_core: SearchCore,
) -> None:
    garments = crowded(*GARMENT_ROWS)
    core = SearchCore(garment_core.embedder, garments, garment_core.texts)
    outcome = core.search(SearchQuery(text="something", colours=["black"]))
    assert outcome.garment_filters == [GarmentFilter("", ("black",))]
    assert outcome.applied_categories == []
    assert ids(outcome) == ["train-4", "train-1"]
    assert len(garments.garment_wheres) == 2  # the over-fetch, then one filtered query
    where = garments.garment_wheres[-1]
    assert where is not None and len(where["$or"][0]["garment"]["$in"]) == len(GARMENTS)


def test_a_colour_alone_in_the_text_is_understood_but_searches_photos(
    garment_core: SearchCore, garments: FakeCollection
) -> None:
    outcome = garment_core.search(SearchQuery(text="something crimson and chartreuse"))
    assert outcome.grain == "photo" and outcome.garment_filters == []
    assert [(w.words, w.kind, w.meaning) for w in outcome.understood] == [
        ("crimson", "colour", "red")
    ]
    assert garments.wheres == [None] and garments.garment_sizes == []


def test_the_off_switch_searches_photo_vectors_and_understands_nothing(
    garment_core: SearchCore,
) -> None:
    outcome = garment_core.search(SearchQuery(text="red tops", auto_category=False))
    assert (outcome.grain, outcome.understood, outcome.applied_categories) == ("photo", [], [])
    assert ids(outcome) == ["train-4", "train-1", "train-2", "train-3"]
    assert all(hit.garments == () for hit in outcome.hits)
    default_off = SearchCore(
        garment_core.embedder, garment_core.collection, garment_core.texts, auto_category=False
    )
    assert default_off.search(SearchQuery(text="red tops")).grain == "photo"


def test_an_image_query_ranks_photo_vectors_even_with_garment_categories(
    garment_core: SearchCore, garments: FakeCollection
) -> None:
    outcome = garment_core.search(SearchQuery(image=b"jpeg", categories=["dress"]))
    assert (outcome.grain, ids(outcome)) == ("photo", ["train-4"])
    assert garments.garment_sizes == []
    with pytest.raises(InvalidArgument, match="image query"):
        garment_core.search(SearchQuery(image=b"jpeg", colours=["red"]))


def test_explicit_parts_filter_the_photos_at_garment_grain(embedder: FakeEmbedder) -> None:
    crowd = [garment(5, i, TOPS, "red", 0.01 + 0.001 * i) for i in range(1, 6)]
    collection = crowded(*crowd, *GARMENT_ROWS, photos=[*PHOTOS, ("train-5", meta(5, TOPS), 0.9)])
    core = SearchCore(embedder, collection, TextVectorCache(embedder.embed_text, 8))
    outcome = core.search(
        SearchQuery(text="x", categories=[TOPS, "sleeve"], colours=["red"], top_k=1)
    )
    assert outcome.grain == "garment"
    assert outcome.applied_categories == [TOPS, "sleeve"]
    assert ids(outcome) == ["train-3"]  # the only photo with a sleeve
    # Neither the over-fetch nor the first 4 matching garments held a photo with one.
    assert collection.garment_sizes == [OVERFETCH, 4, 32]
    photo_grain = core.search(SearchQuery(text="red tops", categories=["sleeve"]))
    assert (photo_grain.grain, ids(photo_grain)) == ("photo", ["train-3"])


def test_an_unknown_colour_is_refused_with_the_palette_but_unknown_words_are_ignored(
    garment_core: SearchCore,
) -> None:
    with pytest.raises(InvalidArgument, match="palette: black, white"):
        garment_core.search(SearchQuery(text="tops", colours=["chartreuse"]))
    outcome = garment_core.search(SearchQuery(text="chartreuse tops"))
    assert outcome.garment_filters == [GarmentFilter(TOPS)]
    assert ids(outcome) == ["train-3", "train-2", "train-1"]


def test_terms_of_one_category_merge_and_any_colour_wins(garment_core: SearchCore) -> None:
    two = garment_core.search(SearchQuery(text="red tops and blue tops"))
    assert two.garment_filters == [GarmentFilter(TOPS, ("red", "blue"))]
    assert ids(two) == ["train-3", "train-2", "train-1"]
    plain = garment_core.search(SearchQuery(text="tops and red tops"))
    assert plain.garment_filters == [GarmentFilter(TOPS)]


def test_the_unfiltered_over_fetch_answers_when_it_holds_enough_photos(
    embedder: FakeEmbedder,
) -> None:
    far = [garment(1000 + i, 1, "umbrella", "black", 0.9) for i in range(OVERFETCH)]
    collection = FakeCollection(list(PHOTOS), [*GARMENT_ROWS, *far])
    core = SearchCore(embedder, collection, TextVectorCache(embedder.embed_text, 8))
    outcome = core.search(SearchQuery(text="red tops and blue jeans", top_k=3))
    assert ids(outcome) == ["train-2", "train-1", "train-3"]
    assert (collection.garment_sizes, collection.garment_wheres) == ([OVERFETCH], [None])


def test_too_few_photos_in_the_over_fetch_query_each_term_filtered(
    embedder: FakeEmbedder,
) -> None:
    collection = crowded(*GARMENT_ROWS)
    core = SearchCore(embedder, collection, TextVectorCache(embedder.embed_text, 8))
    outcome = core.search(SearchQuery(text="red tops and blue jeans", top_k=3))
    assert ids(outcome) == ["train-2", "train-1", "train-3"]
    assert [hit.distance for hit in outcome.hits] == [0.10, 0.20, 0.40]
    assert collection.garment_wheres == [
        None,
        garment_filter([(TOPS, ("red",))]),
        garment_filter([("pants", ("blue",))]),
    ]


@pytest.mark.parametrize(
    "query",
    [
        SearchQuery(text="red tops"),
        SearchQuery(text="red tops and blue jeans", top_k=2),
        SearchQuery(text="black shoes and dresses"),
        SearchQuery(text="tops", top_k=1),
        SearchQuery(text="something", colours=["black"]),
        SearchQuery(text="x", categories=[TOPS, "sleeve"], colours=["red"]),
    ],
)
def test_the_over_fetch_and_the_filtered_queries_answer_alike(
    embedder: FakeEmbedder, query: SearchQuery
) -> None:
    texts = TextVectorCache(embedder.embed_text, 8)
    over = FakeCollection(list(PHOTOS), list(GARMENT_ROWS))
    filtered = crowded(*GARMENT_ROWS)
    expected = SearchCore(embedder, over, texts).search(query)
    outcome = SearchCore(embedder, filtered, texts).search(query)
    assert over.garment_wheres == [None] and len(filtered.garment_wheres) > 1
    # The same photos, distances and best garments; a photo's other garments are those fetched.
    assert [(h.rank, h.record, h.distance, h.garments[0]) for h in outcome.hits] == [
        (h.rank, h.record, h.distance, h.garments[0]) for h in expected.hits
    ]
    assert outcome.hits


def test_only_the_records_of_the_photos_answered_are_read(embedder: FakeEmbedder) -> None:
    # 60 photos with a red top in the over-fetch; the nearest (train-100) has no record yet.
    photos = [(f"train-{i}", meta(i, TOPS), 0.5) for i in range(101, 160)]
    tops = [garment(i, 1, TOPS, "red", 0.001 * (i - 99)) for i in range(100, 160)]
    collection = FakeCollection(photos, tops)
    core = SearchCore(embedder, collection, TextVectorCache(embedder.embed_text, 8))
    outcome = core.search(SearchQuery(text="red tops", top_k=3))
    assert ids(outcome) == ["train-101", "train-102", "train-103"]
    # The first three, then (one was missing) the next six: not all sixty.
    assert collection.photo_reads == [
        ["train-100", "train-101", "train-102"],
        ["train-103", "train-104", "train-105", "train-106", "train-107", "train-108"],
    ]
