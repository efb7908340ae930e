"""Reading Fashionpedia: a split from the Hugging Face hub or a local directory of the same
layout (`data/<split>-*.parquet`), streamed, as rows of original image bytes and category names.

Both sources go through `datasets`' streaming reader and the same row conversion; images are never
decoded here (the embedder decodes them; the original bytes are saved unchanged).
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets

from fashionrag.errors import ConfigurationError, Unavailable
from fashionrag.fashionpedia import CATEGORIES

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DatasetRow:
    """One Fashionpedia image: its original encoded bytes and annotations."""

    index: int  # position in the split
    image_id: int
    image: bytes
    width: int
    height: int
    categories: tuple[str, ...]  # distinct names of the annotated objects, in first-seen order


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


def _categories(objects: Any, names: Sequence[str]) -> tuple[str, ...]:
    if isinstance(objects, dict):  # a Sequence of dicts comes as a dict of lists
        values = objects.get("category") or []
    else:
        values = [o.get("category") for o in objects or []]
    found = (names[v] if isinstance(v, int) else str(v) for v in values if v is not None)
    return tuple(dict.fromkeys(found))


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
        yield DatasetRow(
            index=index,
            image_id=int(row["image_id"]),
            image=image.get("bytes") or b"",
            width=int(row.get("width") or 0),
            height=int(row.get("height") or 0),
            categories=_categories(row.get("objects"), names),
        )
