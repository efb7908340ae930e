"""The query service's core, free of gRPC and HTTP: validate a query, plan it (search_plan.py:
photo or garment grain, the filters), embed it (text vectors from a small cache when repeated),
look up the collection, rank each photo once."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from fashionrag.collection import (
    KEY_CATEGORIES,
    GarmentRecord,
    ImageRecord,
    garment_filter,
    garment_matches,
    validate_categories,
)
from fashionrag.colours import COLOURS
from fashionrag.errors import InvalidArgument, NotFound
from fashionrag.model_info import ModelInfo
from query_service.metrics import QueryMetrics
from query_service.search_plan import SearchPlan, plan_search
from query_service.search_types import GarmentMatch, Hit, SearchOutcome, SearchQuery
from query_service.text_cache import TextVectorCache

log = logging.getLogger(__name__)

DEFAULT_TOP_K = 10
MAX_TOP_K = 100
MAX_TEXT_CHARS = 1000
# Garment grain's filtered queries: garments asked for per photo wanted, then how much more each
# time too few distinct photos came back, up to a cap (a photo's many matching garments, or a
# parts filter, can crowd out the others).
GARMENTS_PER_PHOTO = 4
GARMENTS_GROWTH = 8
MAX_GARMENTS = 2000
# Garment grain first asks for this many nearest garments with no filter and filters them here:
# at 250,000 garment vectors (benchmarks/bench_lookup.py, ChromaDB 1.5.9, 2 cores, the garment
# index's ef_search 1000) the whole lookup of "red tops" took p50 17 ms at recall@10 1.000; 200
# took 23 ms at the same recall, one filtered query on the compound keys 41-62 ms. Too few
# matching photos among them falls back to filtered queries, one per term.
OVERFETCH = 100

Row = tuple[str, dict[str, Any], float]


class ImageEmbedder(Protocol):
    """What the core needs of the embedder client (text vectors come through the cache)."""

    def embed_image(self, data: bytes, timeout: float | None = None) -> np.ndarray: ...
    def model_info(self, refresh: bool = False) -> ModelInfo: ...


class Collection(Protocol):
    """What the core needs of the collection (fashionrag.collection_store.CollectionReader)."""

    def open(self) -> Any: ...
    def has_garments(self) -> bool: ...
    def query_photos(
        self, vector: Sequence[float], n_results: int, where: dict[str, Any] | None
    ) -> list[Row]: ...
    def query_garments(
        self, vector: Sequence[float], n_results: int, where: dict[str, Any] | None
    ) -> list[Row]: ...
    def photos(self, ids: Sequence[str]) -> dict[str, dict[str, Any]]: ...
    def get(self, record_id: str) -> dict[str, Any] | None: ...
    def heartbeat(self) -> None: ...


def validate_colours(names: Sequence[str]) -> list[str]:
    """Check colour names against the palette.

    Raises:
        InvalidArgument: an unknown name; the message lists the palette.
    """
    names = list(dict.fromkeys(names))
    unknown = [n for n in names if n not in COLOURS]
    if unknown:
        shown = ", ".join(repr(n[:40]) for n in unknown[:3])
        more = f" and {len(unknown) - 3} more" if len(unknown) > 3 else ""
        raise InvalidArgument(
            f"unknown colour{'' if len(unknown) == 1 else 's'} {shown}{more}; the palette: "
            + ", ".join(COLOURS),
            reason="UNKNOWN_COLOUR",
            violations=[
                (f"colours[{i}]", f"unknown colour {n[:40]!r}") for i, n in enumerate(unknown)
            ],
            metadata={"allowed": "|".join(COLOURS)},
        )
    return names


def validate(query: SearchQuery) -> tuple[int, list[str], list[str]]:
    """Check a query; return its effective top_k, categories and colours.

    Raises:
        InvalidArgument: no query or two, an empty text, top_k outside 1..100, an unknown
            category or colour, colours with an image query.
    """
    if (query.text is None) == (query.image is None):
        raise InvalidArgument("give exactly one of a text query and an image query", field="query")
    if query.text is not None:
        if not query.text.strip():
            raise InvalidArgument("the text query is empty; type what to look for", field="text")
        if len(query.text) > MAX_TEXT_CHARS:
            raise InvalidArgument(
                f"the text query has {len(query.text)} characters; at most {MAX_TEXT_CHARS}",
                field="text",
            )
    if query.image is not None and not query.image:
        raise InvalidArgument("the image query is empty (0 bytes)", field="image")
    top_k = DEFAULT_TOP_K if query.top_k is None else query.top_k
    if not 1 <= top_k <= MAX_TOP_K:
        raise InvalidArgument(
            f"top_k is {query.top_k}; it must be between 1 and {MAX_TOP_K}", field="top_k"
        )
    if query.image is not None and query.colours:
        raise InvalidArgument(
            "colours filter garments, and an image query ranks whole photos; search by text "
            "to filter on colours",
            field="colours",
        )
    return top_k, validate_categories(query.categories), validate_colours(query.colours)


class SearchCore:
    """Searches one collection with vectors from one embedder.

    Args:
        embedder: the embedder client (image vectors, the model for health checks).
        collection: the collection reader.
        texts: text vectors, cached.
        auto_category: the default for queries that do not say.
        metrics: where searches are counted.
    """

    def __init__(
        self,
        embedder: ImageEmbedder,
        collection: Collection,
        texts: TextVectorCache,
        auto_category: bool = True,
        metrics: QueryMetrics | None = None,
    ) -> None:
        self.embedder = embedder
        self.collection = collection
        self.texts = texts
        self.auto_category = auto_category
        self.metrics = metrics or QueryMetrics()

    def search(self, query: SearchQuery, timeout: float | None = None) -> SearchOutcome:
        """Run one search; results in ascending distance.

        `timeout` (seconds) is what is left of the caller's deadline: the embedder call gets no
        more than that.

        Raises:
            FashionragError: a bad query (InvalidArgument), a model mismatch
                (FailedPrecondition), a backend down (Unavailable).
        """
        top_k, categories, colours = validate(query)
        # Opening checks the embedder's model (and empties the text cache when it changed)
        # before any vector is made for this query.
        self.collection.open()
        understanding = self.auto_category if query.auto_category is None else query.auto_category
        plan = plan_search(
            query.text, categories, colours, understanding, self.collection.has_garments
        )
        if query.text is not None:
            vector = self.texts.vector(query.text, timeout)
        else:
            assert query.image is not None
            vector = self.embedder.embed_image(query.image, timeout)
        if plan.grain == "garment":
            hits = self._garment_hits(vector.tolist(), top_k, plan)
        else:
            rows = self.collection.query_photos(vector.tolist(), top_k, plan.photo_where())
            hits = [
                Hit(rank, ImageRecord.from_metadata(rid, meta), max(0.0, distance))
                for rank, (rid, meta, distance) in enumerate(rows, start=1)
            ]
        self.metrics.searches.labels(plan.grain, "image" if query.text is None else "text").inc()
        return SearchOutcome(
            query=query.text if query.text is not None else "<image>",
            hits=hits,
            applied_categories=plan.applied_categories,
            auto_category=plan.auto_category,
            grain=plan.grain,
            understood=list(plan.understood),
            garment_filters=list(plan.garment_filters),
        )

    def _garment_hits(self, vector: list[float], top_k: int, plan: SearchPlan) -> list[Hit]:
        """The `top_k` photos nearest by their best garment under the plan's filters.

        First the OVERFETCH nearest garments, unfiltered, filtered here. That ranking is exact
        (as exact as the index's nearest neighbours) whenever it finds `top_k` photos: every
        garment nearer than the last of the OVERFETCH is among them, so every matching garment
        nearer than it is kept here; each photo found has its best matching garment among
        them, and a photo not found has none nearer than the last, so none nearer than the
        `top_k`-th photo found. Fewer found (a rare term, a parts filter): one filtered query
        per garment filter, merged by distance; a photo's best garment is the best of its
        terms', so each term's own `top_k` photos hold the merged `top_k` (one filtered query
        for all terms measured a recall of 0.85 on "red tops or blue jeans"; queries per term,
        merged, 0.96, measured with per-category collections).
        """
        per_term = plan.garment_terms()
        parts = set(plan.parts)
        photos: dict[str, dict[str, Any] | None] = {}  # None: no photo record (yet)
        nearest = self.collection.query_garments(vector, OVERFETCH, None)
        terms = [term for group in per_term for term in group]
        groups = group_by_photo([row for row in nearest if garment_matches(terms, row[1])])
        wanted = self._eligible(groups, photos, parts, top_k)
        # Fewer rows than asked for: that was every garment, nothing more to find.
        if len(wanted) < top_k and len(nearest) >= OVERFETCH:
            rows: dict[str, Row] = {}
            for group in per_term:
                found = self._filtered(vector, top_k, garment_filter(group), photos, parts)
                rows.update((row[0], row) for row in found)
            groups = group_by_photo(list(rows.values()))
            wanted = self._eligible(groups, photos, parts, top_k)
        return [
            Hit(
                rank,
                ImageRecord.from_metadata(pid, photos[pid] or {}),
                groups[pid][0].distance,
                tuple(groups[pid]),
            )
            for rank, pid in enumerate(wanted[:top_k], start=1)
        ]

    def _filtered(
        self,
        vector: list[float],
        top_k: int,
        where: dict[str, Any] | None,
        photos: dict[str, dict[str, Any] | None],
        parts: set[str],
    ) -> list[Row]:
        """Garment rows under `where`, asked for in growing numbers until they hold `top_k`
        wanted photos, run out, or reach the cap (a photo's many matching garments, or a parts
        filter, can crowd out the others)."""
        n = top_k * GARMENTS_PER_PHOTO
        while True:
            rows = self.collection.query_garments(vector, n, where)
            wanted = self._eligible(group_by_photo(rows), photos, parts, top_k)
            if len(wanted) >= top_k or len(rows) < n or n >= MAX_GARMENTS:
                return rows
            n = min(n * GARMENTS_GROWTH, MAX_GARMENTS)

    def _eligible(
        self,
        groups: dict[str, list[GarmentMatch]],
        photos: dict[str, dict[str, Any] | None],
        parts: set[str],
        top_k: int,
    ) -> list[str]:
        """The first `top_k` photos of `groups`, in order, that may be answered: their records
        read (once, into `photos`), with any of `parts` when there are parts.

        Records are read only as far as needed, `top_k` ahead and twice as many each time more
        are needed: an over-fetch groups a hundred photos or more, and reading all their
        records took longer than the lookup itself (bench_lookup)."""
        order = list(groups)
        eligible: list[str] = []
        done = 0
        ahead = top_k
        while len(eligible) < top_k and done < len(order):
            chunk = order[done : done + ahead]
            unseen = [pid for pid in chunk if pid not in photos]
            if unseen:
                found = self.collection.photos(unseen)
                photos.update({pid: found.get(pid) for pid in unseen})
            # A photo whose record is missing is still being indexed (its garments are written
            # first): left out until it is complete.
            eligible += [
                pid
                for pid in chunk
                if (meta := photos[pid]) is not None
                and (not parts or parts & set(meta.get(KEY_CATEGORIES) or ()))
            ]
            done += len(chunk)
            ahead *= 2
        return eligible[:top_k]

    def record(self, record_id: str) -> ImageRecord:
        """The indexed record with this id.

        Raises:
            NotFound: no such record.
        """
        meta = self.collection.get(record_id)
        if meta is None:
            raise NotFound(f"no indexed image has id {record_id!r}", reason="IMAGE_NOT_FOUND")
        return ImageRecord.from_metadata(record_id, meta)

    def ping(self) -> None:
        """Check both backends.

        Raises:
            Unavailable: naming the one that is down.
        """
        self.collection.heartbeat()
        self.embedder.model_info(refresh=True)


def group_by_photo(rows: Sequence[Row]) -> dict[str, list[GarmentMatch]]:
    """Garment rows (nearest first) grouped by their photo: photos in the order of their
    nearest garment, each photo's garments nearest first."""
    groups: dict[str, list[GarmentMatch]] = {}
    for rid, meta, distance in sorted(rows, key=lambda row: row[2]):
        record = GarmentRecord.from_metadata(rid, meta)
        groups.setdefault(record.photo_id, []).append(GarmentMatch.of(record, max(0.0, distance)))
    return groups
