"""Writing an embedded batch: the original image files saved, the records built, and the vectors
upserted into ChromaDB in chunks it accepts.

A record is upserted only after its file is saved, and its id is deterministic, so a run killed
at any moment and started again writes every record exactly once.
"""

from __future__ import annotations

import functools
import io
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from embedder_service.client import ImageEmbedding
from fashionrag.collection import ImageRecord
from indexer_service.dataset import DatasetRow
from indexer_service.retry import RetryPolicy

_EXTENSIONS = {
    "JPEG": ".jpg",
    "PNG": ".png",
    "WEBP": ".webp",
    "GIF": ".gif",
    "BMP": ".bmp",
    "TIFF": ".tif",
}


def image_extension(data: bytes) -> str:
    """The file extension for encoded image bytes, from the format in their header only."""
    try:
        with Image.open(io.BytesIO(data)) as image:  # reads the header, decodes nothing
            return _EXTENSIONS.get(image.format or "", ".img")
    except Exception:
        return ".img"


def save_original(images_dir: Path, split: str, row: DatasetRow) -> Path:
    """Write the row's original bytes, unchanged, atomically; return the absolute path."""
    target = (images_dir / split / f"{row.image_id}{image_extension(row.image)}").absolute()
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists() and target.stat().st_size == len(row.image):
        return target
    tmp = target.with_suffix(f"{target.suffix}.{os.getpid()}.tmp")
    tmp.write_bytes(row.image)
    os.replace(tmp, target)
    return target


@dataclass
class EmbeddedBatch:
    """A batch of rows after the embed stage.

    Attributes:
        rows: the rows, in order.
        ids: each row's record id.
        existing: the ids the collection already had (neither embedded nor written again).
        outcomes: the embedder's outcome for every other id: a vector, or why there is none.
    """

    rows: list[DatasetRow]
    ids: list[str]
    existing: set[str]
    outcomes: dict[str, ImageEmbedding]


@dataclass(frozen=True)
class Failure:
    """A row that could not be indexed, and why."""

    id: str
    row: int
    reason: str


@dataclass
class Written:
    """What writing one batch did."""

    indexed: int = 0
    skipped: int = 0
    failures: list[Failure] = field(default_factory=list)


class RecordWriter:
    """Saves the originals of an embedded batch and upserts its records.

    Args:
        collection: the ChromaDB collection.
        split: the split's name, stored in each record.
        images_dir: where the original files are saved (`<images_dir>/<split>/<image_id>.<ext>`).
        retry: the policy each upsert is retried under.
        max_upsert: the most records ChromaDB takes in one call.
    """

    def __init__(
        self,
        collection: Any,
        split: str,
        images_dir: Path,
        retry: RetryPolicy,
        max_upsert: int = 5000,
    ) -> None:
        self.collection = collection
        self.split = split
        self.images_dir = images_dir
        self.retry = retry
        self.max_upsert = max_upsert

    def write(self, batch: EmbeddedBatch) -> Written:
        """Save and upsert every embedded row of `batch`; name the rows that failed."""
        written = Written(skipped=len(batch.existing))
        records: list[ImageRecord] = []
        vectors: list[list[float]] = []
        for rid, row in zip(batch.ids, batch.rows, strict=True):
            if rid in batch.existing:
                continue
            outcome = batch.outcomes[rid]
            if outcome.vector is None:
                written.failures.append(Failure(rid, row.index, outcome.error or "no vector"))
                continue
            path = save_original(self.images_dir, self.split, row)
            records.append(
                ImageRecord(
                    id=rid,
                    image_id=row.image_id,
                    split=self.split,
                    path=str(path),
                    width=row.width or outcome.width,
                    height=row.height or outcome.height,
                    categories=row.categories,
                )
            )
            vectors.append(outcome.vector.tolist())
        self.upsert(records, vectors)
        written.indexed = len(records)
        return written

    def upsert(self, records: list[ImageRecord], vectors: list[list[float]]) -> None:
        """Upsert records with their vectors, in chunks of at most `max_upsert`."""
        for start in range(0, len(records), self.max_upsert):
            part = records[start : start + self.max_upsert]
            upsert = functools.partial(
                self.collection.upsert,
                ids=[r.id for r in part],
                embeddings=vectors[start : start + len(part)],
                metadatas=[r.metadata() for r in part],
            )
            self.retry.call("ChromaDB upsert", upsert)
