"""Reading Fashionpedia: a split from the Hugging Face hub or a local directory of the same
layout (`data/<split>-*.parquet`), streamed, as rows of original image bytes and annotated objects
(box id, category name, box).

Both sources go through `datasets`' streaming reader and the same row conversion; images are never
decoded here (the embedder decodes them; the original bytes are saved unchanged).
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets

from fashionrag.errors import ConfigurationError, Unavailable
from fashionrag.fashionpedia import CATEGORIES, GARMENTS

log = logging.getLogger(__name__)

Box = tuple[float, float, float, float]
# The box of an object whose `bbox` is not four numbers: not finite, so the embedder refuses
# that box alone (a per-box error) and the photo and its other boxes are still indexed.
NO_BOX: Box = (math.nan, math.nan, math.nan, math.nan)


@dataclass(frozen=True)
class DatasetObject:
    """One annotated object of an image: Fashionpedia's box id, category name and box
    (x0, y0, x1, y1 in the image's pixels, as the dataset gives it: neither clipped nor checked)."""

    bbox_id: int
    category: str
    bbox: Box


@dataclass(frozen=True)
class DatasetRow:
    """One Fashionpedia image: its original encoded bytes and annotations."""

    index: int  # position in the split
    image_id: int
    image: bytes
    width: int
    height: int
    categories: tuple[str, ...]  # distinct names of the annotated objects, in first-seen order
    objects: tuple[DatasetObject, ...] = ()  # every annotated object, in the dataset's order

    def garments(self) -> tuple[DatasetObject, ...]:
        """The objects of the 27 garment categories (whole garments, records of their own);
        the 19 garment parts stay attributes of the photo."""
        return tuple(o for o in self.objects if o.category in GARMENTS)


@dataclass(frozen=True)
class Shard:
    """Rows `index % count == number`: `--shard 1/4` is the second of four disjoint parts."""

    number: int = 0
    count: int = 1

    @classmethod
    def parse(cls, text: str) -> Shard:
        """Parse "I/N" with 0 <= I < N.

        Raises:
            ConfigurationError: not of that form.
        """
        try:
            number, count = (int(part) for part in text.split("/"))
        except ValueError:
            raise ConfigurationError(f"--shard {text!r} is not I/N, e.g. 0/2") from None
        if count < 1 or not 0 <= number < count:
            raise ConfigurationError(f"--shard {text!r}: need 0 <= I < N and N >= 1")
        return cls(number, count)


class DatasetUnavailable(Unavailable):
    """The dataset cannot be fetched (no network to the hub)."""


def load_split(dataset: str, split: str) -> datasets.IterableDataset:
    """Open a split for streaming, with images as undecoded bytes.

    Args:
        dataset: a hub id such as "detection-datasets/fashionpedia", or a local directory.
        split: "train" or "val" (any split the source has).

    Raises:
        ConfigurationError: a local directory without that split's files.
        DatasetUnavailable: the hub cannot be reached; the message names the offline way.
    """
    path = Path(dataset)
    if path.is_dir():
        files = sorted((path / "data").glob(f"{split}-*.parquet"))
        if not files:
            found = sorted({f.name.split("-")[0] for f in (path / "data").glob("*.parquet")})
            raise ConfigurationError(
                f"no files for split {split!r} in {path}/data (expected {split}-*.parquet); "
                f"splits found there: {found or 'none'}"
            )
        ds = datasets.load_dataset(
            "parquet", data_files={split: [str(f) for f in files]}, split=split, streaming=True
        )
    elif dataset.startswith((".", "/", "~")) or path.exists():
        raise ConfigurationError(f"--dataset {dataset}: no such directory")
    else:
        try:
            ds = datasets.load_dataset(dataset, split=split, streaming=True)
        except (ConnectionError, OSError) as exc:
            raise DatasetUnavailable(
                f"cannot reach dataset {dataset!r} on the Hugging Face hub ({exc}). Offline, "
                "point --dataset at a local directory with the same layout "
                "(data/<split>-*.parquet), e.g. one made by "
                "`python -m devstack.sample_data ./sample_data`"
            ) from exc
    return ds.cast_column("image", datasets.Image(decode=False))


def category_names(features: Any) -> Sequence[str]:
    """The ClassLabel names of `objects.category`, or Fashionpedia's 46 when not declared."""
    try:
        category = features["objects"]
        category = category.feature if hasattr(category, "feature") else category
        category = category["category"]
        category = category.feature if hasattr(category, "feature") else category
        return list(category.names)
    except (KeyError, TypeError, AttributeError):
        return CATEGORIES


def _columns(objects: Any) -> dict[str, list[Any]]:
    """The objects' fields as columns: a Sequence of dicts comes as a dict of lists, a list of
    structs as a list of dicts."""
    if isinstance(objects, dict):
        return {key: list(values or []) for key, values in objects.items()}
    rows = [o for o in objects or [] if isinstance(o, dict)]
    keys = {key for o in rows for key in o}
    return {key: [o.get(key) for o in rows] for key in keys}


def _category(value: Any, names: Sequence[str]) -> str | None:
    if value is None:
        return None
    return names[value] if isinstance(value, int) else str(value)


def _box(value: Any) -> Box:
    try:
        x0, y0, x1, y1 = (float(v) for v in value)
    except (TypeError, ValueError):
        return NO_BOX
    return (x0, y0, x1, y1)


def _objects(objects: Any, names: Sequence[str]) -> tuple[DatasetObject, ...]:
    columns = _columns(objects)
    categories = columns.get("category") or []
    bbox_ids = columns.get("bbox_id") or [None] * len(categories)
    boxes = columns.get("bbox") or [None] * len(categories)
    found = []
    for n, (bbox_id, value, bbox) in enumerate(zip(bbox_ids, categories, boxes, strict=False)):
        category = _category(value, names)
        if category is None:
            continue
        # Without a box id the object's place in the row keeps the record id deterministic.
        found.append(DatasetObject(n if bbox_id is None else int(bbox_id), category, _box(bbox)))
    return tuple(found)


def iter_rows(
    ds: datasets.IterableDataset,
    *,
    offset: int = 0,
    limit: int = 0,
    shard: Shard | None = None,
) -> Iterator[DatasetRow]:
    """The rows from `offset`, at most `limit` of them (0: all), of one shard.

    The shard is taken over the rows after `offset` and before the limit, so N shards with the
    same offset and limit together cover exactly what one run would.
    """
    shard = shard or Shard()
    names = category_names(ds.features)
    window = itertools.islice(enumerate(ds), offset, offset + limit if limit else None)
    for index, row in window:
        if (index - offset) % shard.count != shard.number:
            continue
        image = row["image"] or {}
        objects = _objects(row.get("objects"), names)
        yield DatasetRow(
            index=index,
            image_id=int(row["image_id"]),
            image=image.get("bytes") or b"",
            width=int(row.get("width") or 0),
            height=int(row.get("height") or 0),
            categories=tuple(dict.fromkeys(o.category for o in objects)),
            objects=objects,
        )
