"""The indexing job: rows → skip what the collection has → embed → save files → upsert.

A record is upserted only after its image file is saved, so the collection never points at a
missing file; ids are deterministic, so a re-run skips what is there and adds nothing twice.
"""

from __future__ import annotations

import io
import itertools
import logging
import os
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image
from tqdm import tqdm

from embedder_service.client import EmbedderClient
from fashionrag.collection import ImageRecord, record_id
from indexer_service.dataset import DatasetRow

log = logging.getLogger(__name__)

_EXTENSIONS = {
    "JPEG": ".jpg",
    "PNG": ".png",
    "WEBP": ".webp",
    "GIF": ".gif",
    "BMP": ".bmp",
    "TIFF": ".tif",
}


@dataclass
class Summary:
    """What a run did; printed as the job's last line."""

    indexed: int = 0
    skipped: int = 0
    failed: int = 0
    seconds: float = 0.0
    images_per_second: float = 0.0
    collection: str = ""
    split: str = ""
    collection_count: int = 0
    failures: list[dict[str, str]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


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
    tmp = target.with_suffix(target.suffix + ".tmp")
    tmp.write_bytes(row.image)
    os.replace(tmp, target)
    return target


def _batches(rows: Iterable[DatasetRow], size: int) -> Iterator[list[DatasetRow]]:
    it = iter(rows)
    while batch := list(itertools.islice(it, size)):
        yield batch


class Indexer:
    """Indexes rows of one split into one collection.

    Args:
        embedder: the embedder client.
        collection: the ChromaDB collection (opened for this embedder's model).
        split: the split's name, part of each record id.
        images_dir: where the original files are saved.
        batch_size: images per embed request and per upsert.
    """

    def __init__(
        self,
        embedder: EmbedderClient,
        collection: Any,
        split: str,
        images_dir: Path,
        batch_size: int = 32,
    ) -> None:
        self.embedder = embedder
        self.collection = collection
        self.split = split
        self.images_dir = images_dir
        self.batch_size = batch_size

    def run(self, rows: Iterable[DatasetRow], total: int | None = None) -> Summary:
        """Index every row; return the summary."""
        summary = Summary(collection=self.collection.name, split=self.split)
        started = time.monotonic()
        last_log = started
        bar = tqdm(
            total=total,
            unit="img",
            desc=f"indexing {self.split}",
            file=sys.stderr,
            disable=None,
            dynamic_ncols=True,
        )
        with bar:
            for batch in _batches(rows, self.batch_size):
                self._index_batch(batch, summary)
                bar.update(len(batch))
                bar.set_postfix(
                    indexed=summary.indexed,
                    skipped=summary.skipped,
                    failed=summary.failed,
                    refresh=False,
                )
                now = time.monotonic()
                if bar.disable and now - last_log >= 10:  # no terminal: log lines instead
                    done = summary.indexed + summary.skipped + summary.failed
                    log.info(
                        "progress: %d rows (%d indexed, %d skipped, %d failed), %.1f img/s",
                        done,
                        summary.indexed,
                        summary.skipped,
                        summary.failed,
                        summary.indexed / max(now - started, 1e-9),
                    )
                    last_log = now
        summary.seconds = round(time.monotonic() - started, 3)
        summary.images_per_second = round(summary.indexed / max(summary.seconds, 1e-9), 2)
        summary.collection_count = self.collection.count()
        return summary

    def _index_batch(self, batch: list[DatasetRow], summary: Summary) -> None:
        ids = [record_id(self.split, row.image_id) for row in batch]
        existing = set(self.collection.get(ids=ids, include=[])["ids"])
        summary.skipped += len(existing)
        todo = [(rid, row) for rid, row in zip(ids, batch, strict=True) if rid not in existing]
        if not todo:
            return
        outcomes = self.embedder.embed_images([(rid, row.image) for rid, row in todo])
        records: list[ImageRecord] = []
        vectors = []
        for (rid, row), outcome in zip(todo, outcomes, strict=True):
            if outcome.vector is None:
                log.warning("image %s (row %d) failed: %s", rid, row.index, outcome.error)
                summary.failed += 1
                summary.failures.append({"id": rid, "reason": str(outcome.error)})
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
        if records:
            self.collection.upsert(
                ids=[r.id for r in records],
                embeddings=vectors,
                metadatas=[r.metadata() for r in records],
            )
            summary.indexed += len(records)
