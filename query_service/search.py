"""The query service's core, free of gRPC: validate a query, embed it, look up ChromaDB."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Any

from embedder_service.client import EmbedderClient
from fashionrag.collection import (
    ImageRecord,
    category_filter,
    connect,
    open_collection,
    validate_categories,
)
from fashionrag.errors import FashionragError, InvalidArgument, Unavailable

log = logging.getLogger(__name__)

DEFAULT_TOP_K = 10
MAX_TOP_K = 100
MAX_TEXT_CHARS = 1000


@dataclass(frozen=True)
class SearchQuery:
    """One search: exactly one of `text` and `image`."""

    text: str | None = None
    image: bytes | None = None
    top_k: int = 0
    categories: list[str] = field(default_factory=list)


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
    top_k = query.top_k or DEFAULT_TOP_K
    if not 1 <= top_k <= MAX_TOP_K:
        raise InvalidArgument(f"top_k is {query.top_k}; it must be between 1 and {MAX_TOP_K}")
    return top_k, validate_categories(query.categories)


class SearchCore:
    """Searches one collection with vectors from one embedder.

    Args:
        embedder: the embedder client.
        chroma_url: the ChromaDB server URL.
        collection_name: the collection to search.
    """

    def __init__(self, embedder: EmbedderClient, chroma_url: str, collection_name: str) -> None:
        self.embedder = embedder
        self.chroma_url = chroma_url
        self.collection_name = collection_name
        self._client = connect(chroma_url)
        self._collection: Any = None
        self._lock = threading.Lock()

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
                try:
                    self._collection = open_collection(
                        self._client, self.collection_name, model, create=False
                    )
                except Unavailable as exc:
                    raise Unavailable(f"ChromaDB at {self.chroma_url}: {exc}") from exc
            return self._collection

    def search(self, query: SearchQuery) -> SearchOutcome:
        """Run one search; results in ascending distance.

        Raises:
            FashionragError: a bad query (InvalidArgument), a model mismatch
                (FailedPrecondition), a backend down (Unavailable).
        """
        top_k, categories = validate(query)
        collection = self.collection()
        if query.text is not None:
            vector = self.embedder.embed_text(query.text)
        else:
            assert query.image is not None
            vector = self.embedder.embed_image(query.image)
        try:
            result = collection.query(
                query_embeddings=[vector.tolist()],
                n_results=top_k,
                where=category_filter(categories),
                include=["metadatas", "distances"],
            )
        except FashionragError:
            raise
        except Exception as exc:
            self._forget_collection()
            if _unreachable(exc):
                raise Unavailable(
                    f"ChromaDB at {self.chroma_url} cannot be reached: {exc}"
                ) from exc
            raise
        ids, metas, distances = result["ids"][0], result["metadatas"][0], result["distances"][0]
        hits = [
            Hit(rank, ImageRecord.from_metadata(rid, meta or {}), max(0.0, float(distance)))
            for rank, (rid, meta, distance) in enumerate(
                sorted(zip(ids, metas, distances, strict=True), key=lambda t: t[2]), start=1
            )
        ]
        return SearchOutcome(
            query=query.text if query.text is not None else "<image>",
            hits=hits,
            applied_categories=categories,
        )

    def _forget_collection(self) -> None:
        # A collection dropped and re-created (--recreate) has a new id: open it again next time.
        with self._lock:
            self._collection = None


def _unreachable(exc: BaseException) -> bool:
    import httpx

    return isinstance(exc, (httpx.TransportError, ConnectionError))
