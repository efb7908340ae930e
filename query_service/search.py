"""The query service's core, free of gRPC and HTTP: validate a query, embed it (text vectors
from a small cache when repeated), look up the collection, rank."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from fashionrag.collection import ImageRecord, category_filter, validate_categories
from fashionrag.errors import InvalidArgument, NotFound
from fashionrag.model_info import ModelInfo
from fashionrag.query_words import understand
from query_service.search_types import Hit, SearchOutcome, SearchQuery
from query_service.text_cache import TextVectorCache

log = logging.getLogger(__name__)

DEFAULT_TOP_K = 10
MAX_TOP_K = 100
MAX_TEXT_CHARS = 1000


class ImageEmbedder(Protocol):
    """What the core needs of the embedder client (text vectors come through the cache)."""

    def embed_image(self, data: bytes, timeout: float | None = None) -> np.ndarray: ...
    def model_info(self, refresh: bool = False) -> ModelInfo: ...


class Collection(Protocol):
    """What the core needs of the collection (fashionrag.collection_store.CollectionReader)."""

    def open(self) -> Any: ...
    def query_photos(
        self, vector: Sequence[float], n_results: int, where: dict[str, Any] | None
    ) -> list[tuple[str, dict[str, Any], float]]: ...
    def get(self, record_id: str) -> dict[str, Any] | None: ...
    def heartbeat(self) -> None: ...


def validate(query: SearchQuery) -> tuple[int, list[str]]:
    """Check a query; return its effective top_k and categories.

    Raises:
        InvalidArgument: no query or two, an empty text, top_k outside 1..100, unknown category.
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
    return top_k, validate_categories(query.categories)


class SearchCore:
    """Searches one collection with vectors from one embedder.

    Args:
        embedder: the embedder client (image vectors, the model for health checks).
        collection: the collection reader.
        texts: text vectors, cached.
        auto_category: the default for queries that do not say.
    """

    def __init__(
        self,
        embedder: ImageEmbedder,
        collection: Collection,
        texts: TextVectorCache,
        auto_category: bool = True,
    ) -> None:
        self.embedder = embedder
        self.collection = collection
        self.texts = texts
        self.auto_category = auto_category

    def search(self, query: SearchQuery, timeout: float | None = None) -> SearchOutcome:
        """Run one search; results in ascending distance.

        `timeout` (seconds) is what is left of the caller's deadline: the embedder call gets no
        more than that.

        Raises:
            FashionragError: a bad query (InvalidArgument), a model mismatch
                (FailedPrecondition), a backend down (Unavailable).
        """
        top_k, categories = validate(query)
        # Opening checks the embedder's model (and empties the text cache when it changed)
        # before any vector is made for this query.
        self.collection.open()
        auto = ""
        if query.text is not None:
            use_auto = self.auto_category if query.auto_category is None else query.auto_category
            if use_auto and not categories:
                auto = next(iter(understand(query.text).categories), "")
                categories = [auto] if auto else []
            vector = self.texts.vector(query.text, timeout)
        else:
            assert query.image is not None
            vector = self.embedder.embed_image(query.image, timeout)
        rows = self.collection.query_photos(vector.tolist(), top_k, category_filter(categories))
        hits = [
            Hit(rank, ImageRecord.from_metadata(rid, meta), max(0.0, distance))
            for rank, (rid, meta, distance) in enumerate(rows, start=1)
        ]
        return SearchOutcome(
            query=query.text if query.text is not None else "<image>",
            hits=hits,
            applied_categories=categories,
            auto_category=auto,
        )

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
