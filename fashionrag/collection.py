"""The ChromaDB collection: the contract between the indexer (writer) and the query service
(reader).

Written down once here: the collection's name, each record's id, the metadata keys, the distance
space, and the identity of the model that made the vectors, which the collection records so that
vectors of different models never meet.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlparse

from fashionrag.errors import InvalidArgument, ModelMismatch, NotFound, Unavailable
from fashionrag.fashionpedia import CATEGORIES

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


class ModelIdentity(Protocol):
    """What identifies an embedding space (the embedder client's ModelInfo has it)."""

    @property
    def model_name(self) -> str: ...
    @property
    def pretrained(self) -> str: ...
    @property
    def dimension(self) -> int: ...
    @property
    def seed(self) -> int: ...


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


def model_metadata(model: ModelIdentity) -> dict[str, Any]:
    """The collection metadata that records which model made its vectors."""
    return {
        KEY_MODEL_NAME: model.model_name,
        KEY_PRETRAINED: model.pretrained,
        KEY_DIMENSION: int(model.dimension),
        KEY_SEED: int(model.seed),
        KEY_SCHEMA: SCHEMA_VERSION,
    }


def describe_model(meta: Mapping[str, Any]) -> str:
    """A model identity for messages, e.g. "ViT-B-32/laion2b_s34b_b79k (512-d)"."""
    text = f"{meta.get(KEY_MODEL_NAME)}/{meta.get(KEY_PRETRAINED)} ({meta.get(KEY_DIMENSION)}-d"
    if meta.get(KEY_PRETRAINED) == "none":
        text += f", seed {meta.get(KEY_SEED)}"
    return text + ")"


def check_model(
    collection_name: str, collection_meta: Mapping[str, Any] | None, model: ModelIdentity
) -> None:
    """Refuse a model whose vectors would not be comparable with the collection's.

    Raises:
        ModelMismatch: the collection records another model, or none at all.
    """
    expected = model_metadata(model)
    meta = dict(collection_meta or {})
    keys = (KEY_MODEL_NAME, KEY_PRETRAINED, KEY_DIMENSION, KEY_SEED)
    if any(meta.get(k) != expected[k] for k in keys):
        recorded = describe_model(meta) if KEY_MODEL_NAME in meta else "no model at all"
        raise ModelMismatch(
            f"collection {collection_name!r} holds vectors of {recorded}, but the embedder runs "
            f"{describe_model(expected)}; use the same model, another --collection, or "
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
    client: Any, name: str, model: ModelIdentity, *, create: bool, recreate: bool = False
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
