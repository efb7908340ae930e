"""The collection contract between the indexer (writer) and the query service (reader).

Written down once here: the collections' names, each record's id, the metadata keys of photo and
garment records, the filters, the distance space, the layout version, and the identity of the
model that made the vectors, which the collection records so that vectors of different models
never meet. How the records reach ChromaDB is collection_store.py's.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from fashionrag.errors import FailedPrecondition, InvalidArgument, ModelMismatch
from fashionrag.fashionpedia import CATEGORIES
from fashionrag.model_info import ModelInfo

DEFAULT_COLLECTION = "fashionpedia"
SPACE = "cosine"
# The garment index's HNSW search breadth (ChromaDB's default: 100). For a query between garment
# kinds ("red tops and blue jeans") a graph search of 100 found 60 % of the true 200 nearest.
# bench_lookup at 250,000 garments, 100 -> 1000: the query service's "red tops" recall@10
# 0.997 -> 1.000 (p50 20 -> 23 ms with an over-fetch of 200), "red tops and blue jeans"
# 0.66 -> 0.92, a filtered query's 0.72 -> 1.000. ChromaDB applies it when it loads an index.
GARMENT_EF_SEARCH = 1000

# Record metadata keys.
KEY_IMAGE_ID = "image_id"  # Fashionpedia's image id (int)
KEY_SPLIT = "split"  # "train" or "val"
KEY_PATH = "path"  # the saved original file, absolute
KEY_WIDTH = "width"
KEY_HEIGHT = "height"
KEY_CATEGORIES = "categories"  # list of category names, absent when the image has none
# Garment records only (see GarmentRecord).
KEY_PHOTO = "photo"  # the record id of the garment's photo
KEY_CATEGORY = "category"  # one of the 27 garment categories
KEY_COLOUR = "colour"  # primary colour name (fashionrag.colours.COLOURS)
KEY_COLOUR2 = "colour2"  # secondary colour name, "" when one colour dominates
KEY_BOX = ("x0", "y0", "x1", "y1")  # the box in the photo's pixels
KEY_AREA = "area"  # the box's share of the photo's area, 0..1
# "<category>/<colour>" of the primary (and secondary) colour: a garment filter is then one
# small equality or $in on one key, which ChromaDB answers several times faster than an $and
# of category and colour (benchmarks/bench_lookup.py).
KEY_GARMENT = "garment"
KEY_GARMENT2 = "garment2"

# Collection metadata keys: the model identity.
KEY_MODEL_NAME = "fashionrag:model_name"
KEY_PRETRAINED = "fashionrag:pretrained"
KEY_DIMENSION = "fashionrag:dimension"
KEY_SEED = "fashionrag:seed"
KEY_SCHEMA = "fashionrag:schema"
# The layout version: 1 held photo records only; 2 adds garment records, in a collection of their
# own beside the photos' (measured faster to filter than one collection with a kind key).
SCHEMA_VERSION = 2
GARMENTS_SUFFIX = "-garments"


def garments_collection_name(name: str) -> str:
    """The collection of the garment records that belong to photo collection `name`."""
    return f"{name}{GARMENTS_SUFFIX}"


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


def garment_record_id(split: str, image_id: int, bbox_id: int) -> str:
    """The record id of one garment box: its photo's id and Fashionpedia's box id."""
    return f"{record_id(split, image_id)}-g{bbox_id}"


Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class GarmentRecord:
    """One garment of a photo (a Fashionpedia box of a garment category), stored beside the
    vector of its crop."""

    id: str
    photo_id: str
    image_id: int
    split: str
    category: str
    box: Box
    area: float
    colour: str
    colour2: str = ""

    def metadata(self) -> dict[str, Any]:
        """The record's ChromaDB metadata."""
        meta: dict[str, Any] = {
            KEY_PHOTO: self.photo_id,
            KEY_IMAGE_ID: self.image_id,
            KEY_SPLIT: self.split,
            KEY_CATEGORY: self.category,
            KEY_COLOUR: self.colour,
            KEY_COLOUR2: self.colour2,
            KEY_GARMENT: garment_key(self.category, self.colour),
            KEY_GARMENT2: garment_key(self.category, self.colour2),
            KEY_AREA: round(self.area, 6),
        }
        meta.update({key: float(value) for key, value in zip(KEY_BOX, self.box, strict=True)})
        return meta

    @classmethod
    def from_metadata(cls, record_id: str, meta: Mapping[str, Any]) -> GarmentRecord:
        """Read a record back from ChromaDB's metadata."""
        x0, y0, x1, y1 = (float(meta.get(key, 0.0)) for key in KEY_BOX)
        return cls(
            id=record_id,
            photo_id=str(meta.get(KEY_PHOTO, "")),
            image_id=int(meta.get(KEY_IMAGE_ID, 0)),
            split=str(meta.get(KEY_SPLIT, "")),
            category=str(meta.get(KEY_CATEGORY, "")),
            box=(x0, y0, x1, y1),
            area=float(meta.get(KEY_AREA, 0.0)),
            colour=str(meta.get(KEY_COLOUR, "")),
            colour2=str(meta.get(KEY_COLOUR2, "")),
        )


def garment_key(category: str, colour: str) -> str:
    """The compound key of a garment category in a colour ("" colour: none)."""
    return f"{category}/{colour}"


def validate_categories(names: Iterable[str]) -> list[str]:
    """Check category names against Fashionpedia's 46.

    Raises:
        InvalidArgument: unknown names (reason UNKNOWN_CATEGORY), each a violation of its field
            `categories[i]`; the metadata has the valid names joined by "|" as `allowed`.
    """
    given = list(names)
    unknown = {i: n for i, n in enumerate(given) if n not in CATEGORIES}
    if unknown:
        # A short message whatever was sent: the names live in the violations and metadata.
        shown = ", ".join(repr(n[:40]) for n in list(unknown.values())[:3])
        more = f" and {len(unknown) - 3} more" if len(unknown) > 3 else ""
        raise InvalidArgument(
            f"unknown categor{'y' if len(unknown) == 1 else 'ies'} {shown}{more}; the "
            f"{len(CATEGORIES)} valid names are at GET /api/categories",
            reason="UNKNOWN_CATEGORY",
            violations=[
                (f"categories[{i}]", f"unknown category {n!r}") for i, n in unknown.items()
            ],
            metadata={"allowed": "|".join(CATEGORIES)},
        )
    return list(dict.fromkeys(given))


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


def garment_filter(terms: Sequence[tuple[str, Sequence[str]]]) -> dict[str, Any] | None:
    """The `where` filter on garment records matching any term: a (category, colours) pair
    keeps garments of that category whose primary or secondary colour is one of `colours`
    (any colour when empty). None: no term, no filter."""
    keyed = sorted({garment_key(c, colour) for c, colours in terms for colour in colours})
    plain = sorted({c for c, colours in terms if not colours})
    clauses: list[dict[str, Any]] = []
    if keyed:
        clauses += [{KEY_GARMENT: {"$in": keyed}}, {KEY_GARMENT2: {"$in": keyed}}]
    if plain:
        clauses.append({KEY_CATEGORY: {"$in": plain}})
    if not clauses:
        return None
    return clauses[0] if len(clauses) == 1 else {"$or": clauses}


def garment_matches(terms: Sequence[tuple[str, Sequence[str]]], meta: Mapping[str, Any]) -> bool:
    """Whether garment_filter(terms) keeps a garment record of this metadata: the same
    predicate on the same keys, for filtering garments in the client. No term keeps nothing."""
    keys = {meta.get(KEY_GARMENT), meta.get(KEY_GARMENT2)}
    category = meta.get(KEY_CATEGORY)
    return any(
        c == category if not colours else any(garment_key(c, x) in keys for x in colours)
        for c, colours in terms
    )


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


def check_layout(collection_name: str, collection_meta: Mapping[str, Any] | None) -> None:
    """Refuse a collection written in another layout version than this code's.

    Raises:
        FailedPrecondition: it records another layout (or none).
    """
    found = (collection_meta or {}).get(KEY_SCHEMA)
    if found != SCHEMA_VERSION:
        raise FailedPrecondition(
            f"collection {collection_name!r} has layout version {found or 1}, this version of "
            f"fashionrag reads and writes layout {SCHEMA_VERSION} (photos and garments); rerun "
            "the indexer with --recreate to rebuild it",
            reason="LAYOUT_MISMATCH",
            metadata={"collection": collection_name, "layout": str(found or 1)},
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
            "re-index with --recreate",
            metadata={
                "collection": collection_name,
                "collection_model": str(recorded or ""),
                "embedder_model": str(model),
            },
        )
