"""Writing an embedded batch: the original image files saved, the photo and garment records built,
and their vectors upserted through the collection writer (which cuts them to ChromaDB's batches).

A record is upserted only after its file is saved, a photo only after its garments, and every id
is deterministic, so a run killed at any moment and started again writes every record exactly
once: a photo present means its garments are too, and a photo missing has its garments written
again under the same ids (an upsert, never a duplicate).
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from embedder_service.client import ImageEmbedding, RegionEmbedding
from fashionrag.collection import Box, GarmentRecord, ImageRecord, garment_record_id
from fashionrag.collection_store import CollectionWriter
from indexer_service.dataset import DatasetObject, DatasetRow
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


_NO_REGION = RegionEmbedding(None, "the embedder returned no region for this box")


def clip_box(box: Box, width: int, height: int) -> Box:
    """The box with its corners in order, clipped to a `width` x `height` photo (the part of it
    the embedder crops)."""
    x0, x1 = sorted((box[0], box[2]))
    y0, y1 = sorted((box[1], box[3]))
    return (
        min(max(x0, 0.0), float(width)),
        min(max(y0, 0.0), float(height)),
        min(max(x1, 0.0), float(width)),
        min(max(y1, 0.0), float(height)),
    )


def area_share(box: Box, width: int, height: int) -> float:
    """The share of a `width` x `height` photo's area that a clipped box covers, 0..1."""
    if width <= 0 or height <= 0:
        return 0.0
    return (box[2] - box[0]) * (box[3] - box[1]) / (width * height)


@dataclass
class EmbeddedBatch:
    """A batch of rows after the embed stage.

    Attributes:
        rows: the rows, in order.
        ids: each row's record id.
        existing: the ids the collection already had (neither embedded nor written again).
        outcomes: the embedder's outcome for every other id: a vector, or why there is none;
            its regions are those of `garments[id]`, in order.
        garments: per embedded id, the garment objects whose boxes were sent (none with
            `--regions none`).
    """

    rows: list[DatasetRow]
    ids: list[str]
    existing: set[str]
    outcomes: dict[str, ImageEmbedding]
    garments: dict[str, tuple[DatasetObject, ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class Failure:
    """A photo or garment record that could not be indexed, and why."""

    id: str
    row: int
    reason: str


@dataclass
class Written:
    """What writing one batch did: photos indexed, skipped and failed, garments written and
    failed (a failed garment leaves its photo indexed)."""

    indexed: int = 0
    skipped: int = 0
    failures: list[Failure] = field(default_factory=list)
    garments: int = 0
    garment_failures: list[Failure] = field(default_factory=list)


class RecordWriter:
    """Saves the originals of an embedded batch and upserts its garment, then photo, records.

    Args:
        writer: the collection writer (it cuts upserts to ChromaDB's batch limit).
        split: the split's name, stored in each record.
        images_dir: where the original files are saved (`<images_dir>/<split>/<image_id>.<ext>`).
        retry: the policy each upsert is retried under.
    """

    def __init__(
        self, writer: CollectionWriter, split: str, images_dir: Path, retry: RetryPolicy
    ) -> None:
        self.writer = writer
        self.split = split
        self.images_dir = images_dir
        self.retry = retry

    def write(self, batch: EmbeddedBatch) -> Written:
        """Save and upsert every embedded row of `batch`; name the photos and garments that
        failed."""
        written = Written(skipped=len(batch.existing))
        photos: list[ImageRecord] = []
        photo_vectors: list[list[float]] = []
        garments: list[GarmentRecord] = []
        garment_vectors: list[list[float]] = []
        for rid, row in zip(batch.ids, batch.rows, strict=True):
            if rid in batch.existing:
                continue
            outcome = batch.outcomes[rid]
            if outcome.vector is None:
                written.failures.append(Failure(rid, row.index, outcome.error or "no vector"))
                continue
            path = save_original(self.images_dir, self.split, row)
            width, height = row.width or outcome.width, row.height or outcome.height
            photos.append(
                ImageRecord(
                    id=rid,
                    image_id=row.image_id,
                    split=self.split,
                    path=str(path),
                    width=width,
                    height=height,
                    categories=row.categories,
                )
            )
            photo_vectors.append(outcome.vector.tolist())
            regions = list(outcome.regions)
            for n, obj in enumerate(batch.garments.get(rid, ())):
                # An embedder that knows no boxes answers none: each box fails alone.
                region = regions[n] if n < len(regions) else _NO_REGION
                gid = garment_record_id(self.split, row.image_id, obj.bbox_id)
                if region.vector is None:
                    reason = region.error or "no vector"
                    written.garment_failures.append(Failure(gid, row.index, reason))
                    continue
                garments.append(self._garment(gid, rid, row, obj, region, width, height))
                garment_vectors.append(region.vector.tolist())
        # Garments first: a photo present means its garments are too (the resume skips it).
        if garments:
            self.retry.call(
                "ChromaDB upsert garments",
                lambda: self.writer.upsert_garments(garments, garment_vectors),
            )
        if photos:
            self.retry.call(
                "ChromaDB upsert photos", lambda: self.writer.upsert_photos(photos, photo_vectors)
            )
        written.indexed, written.garments = len(photos), len(garments)
        return written

    def _garment(
        self,
        gid: str,
        photo_id: str,
        row: DatasetRow,
        obj: DatasetObject,
        region: RegionEmbedding,
        width: int,
        height: int,
    ) -> GarmentRecord:
        box = clip_box(obj.bbox, width, height)
        return GarmentRecord(
            id=gid,
            photo_id=photo_id,
            image_id=row.image_id,
            split=self.split,
            category=obj.category,
            box=box,
            area=area_share(box, width, height),
            colour=region.colour,
            colour2=region.colour2,
        )
