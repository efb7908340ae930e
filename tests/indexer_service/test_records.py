"""The record writer, on a fake collection: files saved before upserts, upserts cut to
ChromaDB's maximum batch, existing rows skipped, failed rows named and not written."""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path
from typing import Any

import numpy as np

from devstack.sample_data import photo_jpeg
from embedder_service.client import ImageEmbedding
from fashionrag.collection import record_id
from indexer_service.dataset import DatasetRow
from indexer_service.records import EmbeddedBatch, Failure, RecordWriter, save_original
from indexer_service.retry import RetryPolicy


class FakeCollection:
    """Remembers every upsert, and whether each record's file existed when it came."""

    name = "fake"

    def __init__(self) -> None:
        self.upserts: list[list[str]] = []
        self.files_there: list[bool] = []

    def upsert(self, ids: list[str], embeddings: list[Any], metadatas: list[Any]) -> None:
        assert len(ids) == len(embeddings) == len(metadatas)
        self.upserts.append(ids)
        self.files_there += [Path(m["path"]).is_file() for m in metadatas]


def row(i: int) -> DatasetRow:
    return DatasetRow(i, i + 1, photo_jpeg(32, 24, seed=i), 32, 24, ("top",))


def embedded(
    rows: list[DatasetRow], existing: Collection[int] = (), bad: Collection[int] = ()
) -> EmbeddedBatch:
    """The batch as the embed stage hands it on: rows by index already there or undecodable."""
    ids = [record_id("train", r.image_id) for r in rows]
    outcomes = {
        rid: ImageEmbedding(rid, None, "cannot decode image")
        if r.index in bad
        else ImageEmbedding(rid, np.ones(4, dtype=np.float32), None)
        for rid, r in zip(ids, rows, strict=True)
        if r.index not in existing
    }
    return EmbeddedBatch(rows, ids, {ids[i] for i in existing}, outcomes)


def test_upserts_are_cut_to_the_largest_batch_chroma_takes(tmp_path: Path) -> None:
    collection = FakeCollection()
    writer = RecordWriter(collection, "train", tmp_path, RetryPolicy(0), max_upsert=3)
    written = writer.write(embedded([row(i) for i in range(7)]))
    assert [len(ids) for ids in collection.upserts] == [3, 3, 1]
    assert (written.indexed, written.skipped, written.failures) == (7, 0, [])
    assert all(collection.files_there)  # each file was saved before its record went in


def test_existing_rows_are_skipped_and_failed_rows_named_not_written(tmp_path: Path) -> None:
    collection = FakeCollection()
    writer = RecordWriter(collection, "train", tmp_path, RetryPolicy(0))
    written = writer.write(embedded([row(i) for i in range(5)], existing={0, 1}, bad={3}))
    assert collection.upserts == [[record_id("train", 3), record_id("train", 5)]]
    assert (written.indexed, written.skipped) == (2, 2)
    assert written.failures == [Failure(record_id("train", 4), 3, "cannot decode image")]
    assert sorted(p.name for p in (tmp_path / "train").iterdir()) == ["3.jpg", "5.jpg"]


def test_saved_original_keeps_the_bytes_and_its_format(tmp_path: Path) -> None:
    data = row(0)
    path = save_original(tmp_path, "val", data)
    assert path == (tmp_path / "val" / "1.jpg").absolute()
    assert path.read_bytes() == data.image
