"""The query service's core, free of gRPC and HTTP: validate a query, embed it (text vectors from
a small cache when repeated), look up ChromaDB."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Any

import cachetools
import numpy as np

from embedder_service.client import EmbedderClient
from fashionrag.collection import (
    ImageRecord,
    category_filter,
    connect,
    is_unreachable,
    open_collection,
    validate_categories,
)
from fashionrag.errors import FashionragError, InvalidArgument, NotFound, Unavailable
from fashionrag.query_words import understand

log = logging.getLogger(__name__)

DEFAULT_TOP_K = 10
MAX_TOP_K = 100
MAX_TEXT_CHARS = 1000


@dataclass(frozen=True)
class SearchQuery:
    """One search: exactly one of `text` and `image`.

    `auto_category` None means the service's default.
    """

    text: str | None = None
    image: bytes | None = None
    top_k: int | None = None  # None: the default, 10
    categories: list[str] = field(default_factory=list)
    auto_category: bool | None = None


@dataclass(frozen=True)
class Hit:
    """One image found."""

    rank: int
    record: ImageRecord
    distance: float

    @property
    def score(self) -> float:
        """Cosine similarity, 1 - distance."""
        return 1.0 - self.distance


@dataclass(frozen=True)
class SearchOutcome:
    """The results of a search, nearest first."""

    query: str
    hits: list[Hit]
    applied_categories: list[str]
    auto_category: str = ""


def validate(query: SearchQuery) -> tuple[int, list[str]]:
    """Check a query; return its effective top_k and categories.

    Raises:
        InvalidArgument: no query or two, an empty text, top_k outside 1..100, unknown category.
    """
    if (query.text is None) == (query.image is None):
        raise InvalidArgument("give exactly one of a text query and an image query")
    if query.text is not None:
        if not query.text.strip():
            raise InvalidArgument("the text query is empty; type what to look for")
        if len(query.text) > MAX_TEXT_CHARS:
            raise InvalidArgument(
                f"the text query has {len(query.text)} characters; at most {MAX_TEXT_CHARS}"
            )
    if query.image is not None and not query.image:
        raise InvalidArgument("the image query is empty (0 bytes)")
    top_k = DEFAULT_TOP_K if query.top_k is None else query.top_k
    if not 1 <= top_k <= MAX_TOP_K:
        raise InvalidArgument(f"top_k is {query.top_k}; it must be between 1 and {MAX_TOP_K}")
    return top_k, validate_categories(query.categories)


class SearchCore:
    """Searches one collection with vectors from one embedder.

    Args:
        embedder: the embedder client.
        chroma_url: the ChromaDB server URL.
        collection_name: the collection to search.
        auto_category: the default for queries that do not say.
        cache_size: how many text vectors to keep (0: none).
    """

    def __init__(
        self,
        embedder: EmbedderClient,
        chroma_url: str,
        collection_name: str,
        auto_category: bool = True,
        cache_size: int = 1024,
    ) -> None:
        self.embedder = embedder
        self.chroma_url = chroma_url
        self.collection_name = collection_name
        self.auto_category = auto_category
        self._client: Any = None  # connected on first use, so the service starts without it
        self._collection: Any = None
        self._lock = threading.Lock()
        # Keyed by text alone: the cache is emptied whenever the collection is (re)opened, which
        # is when the embedder's model is checked again.
        self._cache: cachetools.LRUCache[str, np.ndarray] | None = (
            cachetools.LRUCache(maxsize=cache_size) if cache_size else None
        )
        self._cache_lock = threading.Lock()

    def _text_vector(self, text: str, timeout: float | None) -> np.ndarray:
        if self._cache is None:
            return self.embedder.embed_text(text, timeout)
        with self._cache_lock:
            cached = self._cache.get(text)
        if cached is not None:
            return cached
        vector = self.embedder.embed_text(text, timeout)
        vector.flags.writeable = False  # shared by every caller of the cache
        with self._cache_lock:
            self._cache[text] = vector
        return vector

    def collection(self) -> Any:
        """The collection, opened once its model is checked against the embedder's.

        Raises:
            NotFound: the collection does not exist.
            ModelMismatch: it was made by another model.
            Unavailable: ChromaDB or the embedder cannot be reached.
        """
        with self._lock:
            if self._collection is None:
                model = self.embedder.model_info(refresh=True)
                self._collection = open_collection(
                    self._chroma_client(), self.collection_name, model, create=False
                )
                if self._cache is not None:
                    with self._cache_lock:
                        self._cache.clear()
            return self._collection

    def _chroma_client(self) -> Any:
        if self._client is None:
            self._client = connect(self.chroma_url)
        return self._client

    def forget_collection(self) -> None:
        """Open (and check) the collection again on the next search."""
        with self._lock:
            self._collection = None

    def search(self, query: SearchQuery, timeout: float | None = None) -> SearchOutcome:
        """Run one search; results in ascending distance.

        `timeout` (seconds) is what is left of the caller's deadline: the embedder call gets no
        more than that.

        Raises:
            FashionragError: a bad query (InvalidArgument), a model mismatch
                (FailedPrecondition), a backend down (Unavailable).
        """
        top_k, categories = validate(query)
        collection = self.collection()
        auto = ""
        if query.text is not None:
            use_auto = self.auto_category if query.auto_category is None else query.auto_category
            if use_auto and not categories:
                auto = next(iter(understand(query.text).categories), "")
                categories = [auto] if auto else []
            vector = self._text_vector(query.text, timeout)
        else:
            assert query.image is not None
            vector = self.embedder.embed_image(query.image, timeout)
        result = self._chroma(
            "query",
            lambda: collection.query(
                query_embeddings=[vector.tolist()],
                n_results=top_k,
                where=category_filter(categories),
                include=["metadatas", "distances"],
            ),
        )
        ids, metas, distances = result["ids"][0], result["metadatas"][0], result["distances"][0]
        ranked = sorted(zip(ids, metas, distances, strict=True), key=lambda t: t[2])
        hits = [
            Hit(rank, ImageRecord.from_metadata(rid, meta or {}), max(0.0, float(distance)))
            for rank, (rid, meta, distance) in enumerate(ranked, start=1)
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
        collection = self.collection()
        found = self._chroma("get", lambda: collection.get(ids=[record_id], include=["metadatas"]))
        if not found["ids"]:
            raise NotFound(f"no indexed image has id {record_id!r}")
        return ImageRecord.from_metadata(found["ids"][0], found["metadatas"][0] or {})

    def ping(self) -> None:
        """Check both backends.

        Raises:
            Unavailable: naming the one that is down.
        """
        self._chroma("heartbeat", lambda: self._chroma_client().heartbeat())
        self.embedder.model_info(refresh=True)

    def _chroma(self, what: str, call: Any) -> Any:
        try:
            return call()
        except FashionragError:
            raise
        except Exception as exc:
            # A collection dropped and re-created (--recreate) has a new id: open it again next
            # time; a server that went away is reached again on the next call.
            self.forget_collection()
            if is_unreachable(exc):
                raise Unavailable(
                    f"ChromaDB at {self.chroma_url} cannot be reached ({what}): {exc}"
                ) from exc
            raise
