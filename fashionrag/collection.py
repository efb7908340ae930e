"""The ChromaDB collection: the contract between the indexer (writer) and the query service
(reader).

Written down once here: the collection's name, each record's id, the metadata keys, the distance
space, and the identity of the model that made the vectors, which the collection records so that
vectors of different models never meet.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

from fashionrag.errors import (
    FashionragError,
    InvalidArgument,
    ModelMismatch,
    NotFound,
    Unavailable,
)
from fashionrag.fashionpedia import CATEGORIES
from fashionrag.model_info import ModelInfo

DEFAULT_COLLECTION = "fashionpedia"
SPACE = "cosine"

# Record metadata keys.
KEY_IMAGE_ID = "image_id"  # Fashionpedia's image id (int)
KEY_SPLIT = "split"  # "train" or "val"
KEY_PATH = "path"  # the saved original file, absolute
KEY_WIDTH = "width"
KEY_HEIGHT = "height"
KEY_CATEGORIES = "categories"  # list of category names, absent when the image has none

# Collection metadata keys: the model identity.
KEY_MODEL_NAME = "fashionrag:model_name"
KEY_PRETRAINED = "fashionrag:pretrained"
KEY_DIMENSION = "fashionrag:dimension"
KEY_SEED = "fashionrag:seed"
KEY_SCHEMA = "fashionrag:schema"
SCHEMA_VERSION = 1


def record_id(split: str, image_id: int) -> str:
    """The record id of a Fashionpedia image: deterministic, so re-runs find what exists."""
    return f"{split}-{image_id}"


@dataclass(frozen=True)
class ImageRecord:
    """One indexed image, as stored beside its vector."""

    id: str
    image_id: int
    split: str
    path: str
    width: int
    height: int
    categories: tuple[str, ...]

    def metadata(self) -> dict[str, Any]:
        """The record's ChromaDB metadata."""
        meta: dict[str, Any] = {
            KEY_IMAGE_ID: self.image_id,
            KEY_SPLIT: self.split,
            KEY_PATH: self.path,
            KEY_WIDTH: self.width,
            KEY_HEIGHT: self.height,
        }
        if self.categories:  # ChromaDB refuses empty lists
            meta[KEY_CATEGORIES] = list(self.categories)
        return meta

    @classmethod
    def from_metadata(cls, record_id: str, meta: Mapping[str, Any]) -> ImageRecord:
        """Read a record back from ChromaDB's metadata."""
        return cls(
            id=record_id,
            image_id=int(meta.get(KEY_IMAGE_ID, 0)),
            split=str(meta.get(KEY_SPLIT, "")),
            path=str(meta.get(KEY_PATH, "")),
            width=int(meta.get(KEY_WIDTH, 0)),
            height=int(meta.get(KEY_HEIGHT, 0)),
            categories=tuple(meta.get(KEY_CATEGORIES) or ()),
        )


def validate_categories(names: Iterable[str]) -> list[str]:
    """Check category names against Fashionpedia's 46.

    Raises:
        InvalidArgument: an unknown name; the message lists the valid ones.
    """
    names = list(dict.fromkeys(names))
    unknown = [n for n in names if n not in CATEGORIES]
    if unknown:
        raise InvalidArgument(
            f"unknown categor{'y' if len(unknown) == 1 else 'ies'} {unknown!r}; valid: "
            + "; ".join(CATEGORIES)
        )
    return names


def category_filter(names: Sequence[str]) -> dict[str, Any] | None:
    """The `where` filter keeping images that contain any of `names` (None: no filter)."""
    clauses: list[dict[str, Any]] = [{KEY_CATEGORIES: {"$contains": n}} for n in names]
    if not clauses:
        return None
    if len(clauses) == 1:
        return clauses[0]
    return {"$or": clauses}


# The collection metadata key of each identity field of ModelInfo.
_MODEL_KEYS = {
    "model_name": KEY_MODEL_NAME,
    "pretrained": KEY_PRETRAINED,
    "dimension": KEY_DIMENSION,
    "seed": KEY_SEED,
}


def model_metadata(model: ModelInfo) -> dict[str, Any]:
    """The collection metadata that records which model made its vectors."""
    meta: dict[str, Any] = {_MODEL_KEYS[k]: v for k, v in model.identity().items()}
    meta[KEY_SCHEMA] = SCHEMA_VERSION
    return meta


def recorded_model(meta: Mapping[str, Any] | None) -> ModelInfo | None:
    """The model a collection's metadata records (None: it records none)."""
    meta = meta or {}
    if KEY_MODEL_NAME not in meta:
        return None
    return ModelInfo(
        model_name=str(meta[KEY_MODEL_NAME]),
        pretrained=str(meta.get(KEY_PRETRAINED, "")),
        dimension=int(meta.get(KEY_DIMENSION) or 0),
        seed=int(meta.get(KEY_SEED) or 0),
    )


def check_model(
    collection_name: str, collection_meta: Mapping[str, Any] | None, model: ModelInfo
) -> None:
    """Refuse a model whose vectors would not be comparable with the collection's.

    Raises:
        ModelMismatch: the collection records another model, or none at all.
    """
    recorded = recorded_model(collection_meta)
    if recorded is None or recorded.identity() != model.identity():
        raise ModelMismatch(
            f"collection {collection_name!r} holds vectors of {recorded or 'no model at all'}, "
            f"but the embedder runs {model}; use the same model, another --collection, or "
            "re-index with --recreate"
        )


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
        raise Unavailable(f"ChromaDB at {url} cannot be reached: {exc}") from exc


def open_collection(
    client: Any, name: str, model: ModelInfo, *, create: bool, recreate: bool = False
) -> Any:
    """Open the collection for `model`, creating it (cosine space, model recorded) if asked.

    Args:
        client: a ChromaDB client.
        name: the collection's name.
        model: the embedder's model identity.
        create: create the collection when missing (the indexer) or refuse (the query service).
        recreate: drop an existing collection first (the indexer's --recreate).

    Raises:
        NotFound: missing and `create` is False.
        ModelMismatch: it exists and records another model (and `recreate` is False).
        Unavailable: ChromaDB cannot be reached.
    """
    try:
        existing = {c.name if hasattr(c, "name") else c for c in client.list_collections()}
        if recreate and name in existing:
            client.delete_collection(name)
            existing.discard(name)
        if name not in existing:
            if not create:
                raise NotFound(f"collection {name!r} does not exist; index some images first")
            collection = client.get_or_create_collection(
                name,
                metadata=model_metadata(model),
                configuration={"hnsw": {"space": SPACE}},
                embedding_function=None,
            )
        else:
            collection = client.get_collection(name, embedding_function=None)
    except (NotFound, ModelMismatch):
        raise
    except Exception as exc:
        if is_unreachable(exc):
            raise Unavailable(f"ChromaDB cannot be reached: {exc}") from exc
        raise
    check_model(name, collection.metadata, model)
    return collection


def is_unreachable(exc: BaseException) -> bool:
    """Whether an error of the ChromaDB client means the server could not be reached (rather
    than that it refused the request): the one test the indexer and the query service share."""
    import httpx

    return isinstance(exc, httpx.TransportError | ConnectionError)


class CollectionReader:
    """The query side of the collection: opened on first use (so a service starts while ChromaDB
    is away), checked against the embedder's model, forgotten after a failure so the next call
    opens it again (a server back from a restart, a collection re-created by --recreate), and
    ChromaDB's errors turned into fashionrag's.

    Args:
        chroma_url: the ChromaDB server URL.
        name: the collection's name.
        model_info: asks the embedder which model it runs (called at each (re)open).
        on_open: called after each (re)open, e.g. to drop vectors cached for an older model.
    """

    def __init__(
        self,
        chroma_url: str,
        name: str,
        model_info: Callable[[], ModelInfo],
        on_open: Callable[[], None] = lambda: None,
    ) -> None:
        self.chroma_url = chroma_url
        self.name = name
        self._model_info = model_info
        self._on_open = on_open
        self._client: Any = None
        self._collection: Any = None
        self._lock = threading.Lock()

    def open(self) -> Any:
        """The collection, opened once its model is checked against the embedder's.

        Raises:
            NotFound: the collection does not exist.
            ModelMismatch: it was made by another model.
            Unavailable: ChromaDB or the embedder cannot be reached.
        """
        with self._lock:
            if self._collection is None:
                model = self._model_info()
                self._collection = self._call(
                    "open",
                    lambda: open_collection(self._chroma(), self.name, model, create=False),
                )
                self._on_open()
            return self._collection

    def forget(self) -> None:
        """Open (and check) the collection again on the next call."""
        with self._lock:
            self._collection = None

    def query(
        self, vector: Sequence[float], n_results: int, where: dict[str, Any] | None
    ) -> list[tuple[str, dict[str, Any], float]]:
        """The `n_results` nearest records under `where`: (id, metadata, distance), nearest
        first."""
        collection = self.open()
        result = self._call(
            "query",
            lambda: collection.query(
                query_embeddings=[list(vector)],
                n_results=n_results,
                where=where,
                include=["metadatas", "distances"],
            ),
        )
        rows = zip(result["ids"][0], result["metadatas"][0], result["distances"][0], strict=True)
        return sorted(
            ((rid, dict(meta or {}), float(distance)) for rid, meta, distance in rows),
            key=lambda row: row[2],
        )

    def get(self, record_id: str) -> dict[str, Any] | None:
        """The metadata of one record, or None when there is no such record."""
        collection = self.open()
        found = self._call("get", lambda: collection.get(ids=[record_id], include=["metadatas"]))
        return dict(found["metadatas"][0] or {}) if found["ids"] else None

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
            return call()
        except FashionragError:
            raise
        except Exception as exc:
            self._collection = None  # opened again on the next call
            if is_unreachable(exc):
                raise Unavailable(
                    f"ChromaDB at {self.chroma_url} cannot be reached ({what}): {exc}"
                ) from exc
            raise
