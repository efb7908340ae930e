"""The collections in ChromaDB: connecting, opening (model and layout checked), the indexer's
writer and the query service's reader. The only code that talks to the store, so a move past one
ChromaDB node (distributed ChromaDB) changes this module alone."""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

from fashionrag.collection import (
    GARMENT_EF_SEARCH,
    SPACE,
    GarmentRecord,
    ImageRecord,
    check_layout,
    check_model,
    garments_collection_name,
    model_metadata,
)
from fashionrag.errors import (
    FailedPrecondition,
    FashionragError,
    InvalidArgument,
    NotFound,
    Unavailable,
)
from fashionrag.model_info import ModelInfo

Row = tuple[str, dict[str, Any], float]  # (record id, metadata, cosine distance)
log = logging.getLogger(__name__)

CHROMADB = {"backend": "chromadb"}  # the metadata of Unavailable errors from here
# The HNSW configuration of a new index's collections: photos, garments.
HNSW = ({"space": SPACE}, {"space": SPACE, "ef_search": GARMENT_EF_SEARCH})


def connect(url: str) -> Any:
    """A ChromaDB HttpClient for a server URL such as http://127.0.0.1:8000, telemetry off.

    Raises:
        InvalidArgument: the URL is malformed.
        Unavailable: no ChromaDB server answers there.
    """
    import chromadb
    from chromadb.config import Settings

    parsed = urlparse(url if "://" in url else f"http://{url}")
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise InvalidArgument(f"--chroma {url!r} is not a URL such as http://127.0.0.1:8000")
    try:
        return chromadb.HttpClient(
            host=parsed.hostname,
            port=parsed.port or (443 if parsed.scheme == "https" else 8000),
            ssl=parsed.scheme == "https",
            settings=Settings(anonymized_telemetry=False),
        )
    except ValueError as exc:  # what the client raises when nothing answers
        raise Unavailable(f"ChromaDB at {url} cannot be reached: {exc}", metadata=CHROMADB) from exc


def is_unreachable(exc: BaseException) -> bool:
    """Whether an error of the ChromaDB client means the server could not be reached (rather
    than that it refused the request): the one test the indexer and the query service share."""
    import httpx

    return isinstance(exc, httpx.TransportError | ConnectionError)


@dataclass(frozen=True)
class Collections:
    """The two ChromaDB collections of one index: photos and their garments."""

    photos: Any
    garments: Any


def open_collections(
    client: Any, name: str, model: ModelInfo, *, create: bool, recreate: bool = False
) -> Collections:
    """Open an index's collections for `model`, creating them (cosine space, model and layout
    recorded) if asked.

    Args:
        client: a ChromaDB client.
        name: the index's name (its photo collection's; the garments' is derived).
        model: the embedder's model identity.
        create: create the collections when missing (the indexer) or refuse (the query service).
        recreate: drop existing collections first (the indexer's --recreate).

    Raises:
        NotFound: missing and `create` is False.
        FailedPrecondition: another layout version (rerun with --recreate), or another model
            (ModelMismatch), unless `recreate`.
        Unavailable: ChromaDB cannot be reached.
    """
    names = (name, garments_collection_name(name))
    try:
        existing = {c.name if hasattr(c, "name") else c for c in client.list_collections()}
        if recreate:
            for n in names:
                if n in existing:
                    client.delete_collection(n)
                    existing.discard(n)
        if name not in existing and not create:
            raise NotFound(
                f"collection {name!r} does not exist; index some images first",
                reason="COLLECTION_NOT_FOUND",
                metadata={"collection": name},
            )
        opened = []
        for n, hnsw in zip(names, HNSW, strict=True):
            if n in existing:
                opened.append(client.get_collection(n, embedding_function=None))
            elif create:
                opened.append(
                    client.get_or_create_collection(
                        n,
                        metadata=model_metadata(model),
                        configuration={"hnsw": hnsw},
                        embedding_function=None,
                    )
                )
            else:  # photos of layout 1 have no garment collection beside them
                opened.append(None)
    except FashionragError:
        raise
    except Exception as exc:
        if is_unreachable(exc):
            raise Unavailable(f"ChromaDB cannot be reached: {exc}", metadata=CHROMADB) from exc
        raise
    photos, garments = opened
    check_layout(name, photos.metadata)
    check_model(name, photos.metadata, model)
    if garments is None:
        raise FailedPrecondition(
            f"collection {name!r} has no garment collection {names[1]!r} beside it; rerun the "
            "indexer with --recreate to rebuild both",
            reason="LAYOUT_MISMATCH",
            metadata={"collection": name, "layout": "1"},
        )
    check_model(names[1], garments.metadata, model)
    _search_wide_enough(garments)
    return Collections(photos, garments)


def _search_wide_enough(garments: Any) -> None:
    """Raise an older garment index's ef_search to GARMENT_EF_SEARCH (indexes made before it
    keep ChromaDB's 100, too narrow for the query service's over-fetch). ChromaDB stores the
    change at once and applies it when it next loads the index (a restart)."""
    try:
        ef_search = int((garments.configuration or {}).get("hnsw", {}).get("ef_search") or 0)
        if 0 < ef_search < GARMENT_EF_SEARCH:
            garments.modify(configuration={"hnsw": {"ef_search": GARMENT_EF_SEARCH}})
            log.warning(
                "raised the ef_search of %s from %d to %d; ChromaDB applies it when it next "
                "loads the index",
                garments.name,
                ef_search,
                GARMENT_EF_SEARCH,
            )
    except Exception as exc:  # an older server without the setting: search as it is
        log.warning("could not check the ef_search of %s: %s", garments.name, exc)


class CollectionWriter:
    """The indexer's side: which photos exist, and upserts cut to ChromaDB's batch limit.

    Photo records are written after their garments: a photo present means its garments are
    too, so the indexer skips it whole, and a run killed in between writes the same garment
    ids again (an upsert, never a duplicate).

    Args:
        client: a ChromaDB client.
        collections: the opened collections.
    """

    def __init__(self, client: Any, collections: Collections) -> None:
        self._collections = collections
        self.name = collections.photos.name
        self.max_batch = int(client.get_max_batch_size())

    def existing(self, ids: Sequence[str]) -> set[str]:
        """Which of these photo record ids the collection has."""
        return set(self._collections.photos.get(ids=list(ids), include=[])["ids"])

    def upsert_garments(
        self, records: Sequence[GarmentRecord], vectors: Sequence[Sequence[float]]
    ) -> None:
        """Write garment records (their vectors in the same order)."""
        self._upsert(self._collections.garments, records, vectors)

    def upsert_photos(
        self, records: Sequence[ImageRecord], vectors: Sequence[Sequence[float]]
    ) -> None:
        """Write photo records (their vectors in the same order)."""
        self._upsert(self._collections.photos, records, vectors)

    def _upsert(
        self,
        collection: Any,
        records: Sequence[ImageRecord | GarmentRecord],
        vectors: Sequence[Sequence[float]],
    ) -> None:
        for start in range(0, len(records), self.max_batch):
            part = records[start : start + self.max_batch]
            collection.upsert(
                ids=[r.id for r in part],
                embeddings=[list(v) for v in vectors[start : start + len(part)]],
                metadatas=[r.metadata() for r in part],
            )

    def count(self) -> int:
        """How many photo records the collection holds."""
        return int(self._collections.photos.count())

    def garment_count(self) -> int:
        """How many garment records the collection holds."""
        return int(self._collections.garments.count())


class CollectionReader:
    """The query side of an index: opened on first use (so a service starts while ChromaDB
    is away), checked against the embedder's model and this code's layout, forgotten after a
    failure so the next call opens it again (a server back from a restart, collections
    re-created by --recreate), and ChromaDB's errors turned into fashionrag's.

    Args:
        chroma_url: the ChromaDB server URL.
        name: the index's name.
        model_info: asks the embedder which model it runs (called at each (re)open).
        on_open: called after each (re)open, e.g. to drop vectors cached for an older model.
        measure: wraps each call to ChromaDB, given its operation ("open", "count", "query",
            "get", "heartbeat"), e.g. to time it.
    """

    def __init__(
        self,
        chroma_url: str,
        name: str,
        model_info: Callable[[], ModelInfo],
        on_open: Callable[[], None] = lambda: None,
        measure: Callable[[str], AbstractContextManager[object]] = (
            lambda operation: contextlib.nullcontext()
        ),
    ) -> None:
        self.chroma_url = chroma_url
        self.name = name
        self._model_info = model_info
        self._on_open = on_open
        self._measure = measure
        self._client: Any = None
        self._collections: Collections | None = None
        self._garment_count = 0
        self._lock = threading.Lock()

    def open(self) -> Collections:
        """The collections, opened once their model is checked against the embedder's.

        Raises:
            NotFound: the index does not exist.
            FailedPrecondition: another layout, or another model (ModelMismatch).
            Unavailable: ChromaDB or the embedder cannot be reached.
        """
        with self._lock:
            if self._collections is None:
                model = self._model_info()
                collections = self._call(
                    "open",
                    lambda: open_collections(self._chroma(), self.name, model, create=False),
                )
                self._garment_count = self._call("count", collections.garments.count)
                self._collections = collections
                self._on_open()
            return self._collections

    def forget(self) -> None:
        """Open (and check) the collections again on the next call."""
        with self._lock:
            self._collections = None

    def has_garments(self) -> bool:
        """Whether the index holds garment records (as of its last opening): one indexed with
        `--regions none` has photos only."""
        self.open()
        return self._garment_count > 0

    def query_photos(
        self, vector: Sequence[float], n_results: int, where: dict[str, Any] | None
    ) -> list[Row]:
        """The `n_results` nearest photo records under `where`, nearest first."""
        return self._query(self.open().photos, vector, n_results, where)

    def query_garments(
        self, vector: Sequence[float], n_results: int, where: dict[str, Any] | None
    ) -> list[Row]:
        """The `n_results` nearest garment records under `where`, nearest first."""
        return self._query(self.open().garments, vector, n_results, where)

    def _query(
        self, collection: Any, vector: Sequence[float], n: int, where: dict[str, Any] | None
    ) -> list[Row]:
        result = self._call(
            "query",
            lambda: collection.query(
                query_embeddings=[list(vector)],
                n_results=n,
                where=where,
                include=["metadatas", "distances"],
            ),
        )
        rows = zip(result["ids"][0], result["metadatas"][0], result["distances"][0], strict=True)
        return sorted(
            ((rid, dict(meta or {}), float(distance)) for rid, meta, distance in rows),
            key=lambda row: row[2],
        )

    def photos(self, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The metadata of these photo records, by id (missing ids are left out).

        Needs ChromaDB only: records read by id do not depend on the model, so they are read
        (and indexed images served) while the embedder is down.

        Raises:
            NotFound: the index does not exist.
            FailedPrecondition: it has another layout.
            Unavailable: ChromaDB cannot be reached.
        """
        collection = self._photos_by_id()
        found = self._call("get", lambda: collection.get(ids=list(ids), include=["metadatas"]))
        return {
            rid: dict(meta or {})
            for rid, meta in zip(found["ids"], found["metadatas"], strict=True)
        }

    def get(self, record_id: str) -> dict[str, Any] | None:
        """The metadata of one photo record, or None when there is no such record."""
        return self.photos([record_id]).get(record_id)

    def _photos_by_id(self) -> Any:
        with self._lock:
            if self._collections is not None:
                return self._collections.photos
        # Not open, and opening would ask the embedder for its model: the photos alone.
        collection = self._call("open", self._photos_unchecked)
        check_layout(self.name, collection.metadata)
        return collection

    def _photos_unchecked(self) -> Any:
        from chromadb.errors import NotFoundError

        try:
            return self._chroma().get_collection(self.name, embedding_function=None)
        except NotFoundError:
            raise NotFound(
                f"collection {self.name!r} does not exist; index some images first"
            ) from None

    def heartbeat(self) -> None:
        """Check that ChromaDB answers.

        Raises:
            Unavailable: it does not.
        """
        self._call("heartbeat", lambda: self._chroma().heartbeat())

    def _chroma(self) -> Any:
        if self._client is None:
            self._client = connect(self.chroma_url)
        return self._client

    def _call(self, what: str, call: Callable[[], Any]) -> Any:
        try:
            with self._measure(what):
                return call()
        except FashionragError:
            raise
        except Exception as exc:
            self._collections = None  # opened again on the next call
            if is_unreachable(exc):
                raise Unavailable(
                    f"ChromaDB at {self.chroma_url} cannot be reached ({what}): {exc}",
                    metadata=CHROMADB,
                ) from exc
            raise
