"""The record writer, through the collection writer, on fake collections: files saved before
upserts, upserts cut to ChromaDB's maximum batch, garments written before their photo with their
clipped box and area share, existing rows skipped, failed rows and boxes named and not written."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from devstack.sample_data import photo_jpeg
from embedder_service.client import ImageEmbedding, RegionEmbedding
from fashionrag.collection import garment_record_id, record_id
from fashionrag.collection_store import Collections, CollectionWriter
from indexer_service.dataset import DatasetObject, DatasetRow
from indexer_service.records import EmbeddedBatch, Failure, RecordWriter, save_original
from indexer_service.retry import RetryPolicy


class FakeCollection:
    """Remembers every upsert in a log shared with the other collection, and whether each
    photo's file existed when its record came."""

    def __init__(self, name: str, log: list[tuple[str, list[str]]]) -> None:
        self.name = name
        self.log = log
        self.metadatas: dict[str, dict[str, Any]] = {}
        self.files_there: list[bool] = []

    def upsert(self, ids: list[str], embeddings: list[Any], metadatas: list[Any]) -> None:
        assert len(ids) == len(embeddings) == len(metadatas)
        self.log.append((self.name, ids))
        self.metadatas.update(zip(ids, metadatas, strict=True))
        self.files_there += [Path(m["path"]).is_file() for m in metadatas if "path" in m]


class FakeClient:
    def __init__(self, max_batch: int) -> None:
        self.max_batch = max_batch

    def get_max_batch_size(self) -> int:
        return self.max_batch


class Store:
    """A collection writer over two fake collections."""

    def __init__(self, max_batch: int = 5000) -> None:
        self.log: list[tuple[str, list[str]]] = []
        self.photos = FakeCollection("photos", self.log)
        self.garments = FakeCollection("garments", self.log)
        self.writer = CollectionWriter(
            FakeClient(max_batch), Collections(self.photos, self.garments)
        )

    def upserts(self, name: str) -> list[list[str]]:
        return [ids for which, ids in self.log if which == name]


TOP = DatasetObject(10, "top, t-shirt, sweatshirt", (4.0, 2.0, 20.0, 14.0))
# Reaches past the 32x24 photo: stored clipped.
SHOE = DatasetObject(11, "shoe", (24.0, 20.0, 40.0, 30.0))


def row(i: int) -> DatasetRow:
    return DatasetRow(i, i + 1, photo_jpeg(32, 24, seed=i), 32, 24, ("top",), (TOP, SHOE))


def region(colour: str = "red") -> RegionEmbedding:
    return RegionEmbedding(np.full(4, 0.5, dtype=np.float32), None, colour, "")


def embedded(
    rows: list[DatasetRow],
    existing: Collection[int] = (),
    bad: Collection[int] = (),
    regions: Mapping[int, tuple[RegionEmbedding, ...]] | None = None,
) -> EmbeddedBatch:
    """The batch as the embed stage hands it on: rows by index already there or undecodable,
    and for rows in `regions`, their garments' outcomes (TOP, SHOE)."""
    regions = regions or {}
    ids = [record_id("train", r.image_id) for r in rows]
    outcomes = {
        rid: ImageEmbedding(rid, None, "cannot decode image")
        if r.index in bad
        else ImageEmbedding(
            rid, np.ones(4, dtype=np.float32), None, 32, 24, regions.get(r.index, ())
        )
        for rid, r in zip(ids, rows, strict=True)
        if r.index not in existing
    }
    garments: dict[str, tuple[DatasetObject, ...]] = {
        rid: (TOP, SHOE) if r.index in regions else ()
        for rid, r in zip(ids, rows, strict=True)
        if r.index not in existing
    }
    return EmbeddedBatch(rows, ids, {ids[i] for i in existing}, outcomes, garments)


def test_upserts_are_cut_to_the_largest_batch_chroma_takes(tmp_path: Path) -> None:
    store = Store(max_batch=3)
    writer = RecordWriter(store.writer, "train", tmp_path, RetryPolicy(0))
    written = writer.write(embedded([row(i) for i in range(7)]))
    assert [len(ids) for ids in store.upserts("photos")] == [3, 3, 1]
    assert (written.indexed, written.skipped, written.failures) == (7, 0, [])
    assert all(store.photos.files_there)  # each file was saved before its record went in


def test_existing_rows_are_skipped_and_failed_rows_named_not_written(tmp_path: Path) -> None:
    store = Store()
    writer = RecordWriter(store.writer, "train", tmp_path, RetryPolicy(0))
    written = writer.write(embedded([row(i) for i in range(5)], existing={0, 1}, bad={3}))
    assert store.upserts("photos") == [[record_id("train", 3), record_id("train", 5)]]
    assert (written.indexed, written.skipped) == (2, 2)
    assert written.failures == [Failure(record_id("train", 4), 3, "cannot decode image")]
    assert sorted(p.name for p in (tmp_path / "train").iterdir()) == ["3.jpg", "5.jpg"]


def test_garments_go_in_before_their_photos_with_clipped_box_and_area_share(
    tmp_path: Path,
) -> None:
    store = Store()
    writer = RecordWriter(store.writer, "train", tmp_path, RetryPolicy(0))
    written = writer.write(embedded([row(0), row(1)], regions={0: (region("red"), region("navy"))}))
    top, shoe = (garment_record_id("train", 1, o.bbox_id) for o in (TOP, SHOE))
    assert store.log == [
        ("garments", [top, shoe]),
        ("photos", [record_id("train", 1), record_id("train", 2)]),
    ]
    assert (written.indexed, written.garments, written.garment_failures) == (2, 2, [])
    meta = store.garments.metadatas[shoe]
    assert (meta["x0"], meta["y0"], meta["x1"], meta["y1"]) == (24.0, 20.0, 32.0, 24.0)
    assert meta["area"] == round(8 * 4 / (32 * 24), 6)
    assert (meta["photo"], meta["category"], meta["colour"]) == (
        record_id("train", 1),
        "shoe",
        "navy",
    )
    assert store.garments.metadatas[top]["garment"] == "top, t-shirt, sweatshirt/red"


def test_a_failed_box_is_named_alone_and_its_photo_still_written(tmp_path: Path) -> None:
    store = Store()
    writer = RecordWriter(store.writer, "train", tmp_path, RetryPolicy(0))
    bad = RegionEmbedding(None, "box is empty")
    written = writer.write(embedded([row(0)], regions={0: (bad, region())}))
    shoe = garment_record_id("train", 1, SHOE.bbox_id)
    assert written.garment_failures == [
        Failure(garment_record_id("train", 1, TOP.bbox_id), 0, "box is empty")
    ]
    assert store.log == [("garments", [shoe]), ("photos", [record_id("train", 1)])]
    assert (written.indexed, written.garments) == (1, 1)


def test_boxes_the_embedder_did_not_answer_fail_alone(tmp_path: Path) -> None:
    store = Store()
    writer = RecordWriter(store.writer, "train", tmp_path, RetryPolicy(0))
    written = writer.write(embedded([row(0)], regions={0: (region(),)}))
    assert [f.id for f in written.garment_failures] == [garment_record_id("train", 1, 11)]
    assert written.indexed == 1 and written.garments == 1


def test_saved_original_keeps_the_bytes_and_its_format(tmp_path: Path) -> None:
    data = row(0)
    path = save_original(tmp_path, "val", data)
    assert path == (tmp_path / "val" / "1.jpg").absolute()
    assert path.read_bytes() == data.image
