"""Garment records, against a real ChromaDB server and a real embedder: one per garment box of
every good photo and none for parts, with the right box, area share and colour; a bad box fails
alone; `--regions none` writes none; a rerun adds nothing; an old-layout collection is refused."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from devstack import sample_data, servers
from embedder_service.client import EmbedderClient
from fashionrag.collection import (
    KEY_SCHEMA,
    GarmentRecord,
    garment_record_id,
    garments_collection_name,
    model_metadata,
    record_id,
)
from fashionrag.collection_store import connect
from fashionrag.fashionpedia import GARMENTS, PARTS
from tests.indexer_service.truth import boxes_of, garment_ids

pytestmark = pytest.mark.integration

ROWS = 16
CORRUPT = (3,)
BAD_BOXES = (2, 7)  # row 2: a box of zero area; row 7: a box outside the image
COLLECTION = "garments-once"


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("garments")
    return sample_data.generate(out, "train", ROWS, corrupt=CORRUPT, bad_boxes=BAD_BOXES)


def index(
    embedder: str, chroma_url: str, dataset: Path, images: Path, name: str, *extra: str
) -> subprocess.CompletedProcess[str]:
    return servers.run_indexer(
        *servers.indexer_args(
            embedder, chroma_url, dataset, images, name, "--limit", "0", "--batch-size", "4", *extra
        )
    )


def summary_of(result: subprocess.CompletedProcess[str]) -> dict:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def indexed(
    embedder: servers.Server,
    chroma_url: str,
    dataset: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> dict:
    """One run over the dataset; its summary."""
    images = tmp_path_factory.mktemp("garment-images")
    return summary_of(index(embedder.address, chroma_url, dataset, images, COLLECTION))


def stored_garments(chroma_url: str, name: str) -> dict[str, GarmentRecord]:
    found = connect(chroma_url).get_collection(garments_collection_name(name)).get()
    return {
        gid: GarmentRecord.from_metadata(gid, meta)
        for gid, meta in zip(found["ids"], found["metadatas"], strict=True)
    }


GOOD_ROWS = {row for row in range(ROWS) if row not in CORRUPT}


def test_every_garment_box_of_every_good_photo_is_a_record_and_no_part_is(
    indexed: dict, chroma_url: str, dataset: Path
) -> None:
    expected = garment_ids(dataset, GOOD_ROWS)
    stored = stored_garments(chroma_url, COLLECTION)
    assert set(stored) == expected
    assert indexed["garments"] == indexed["garment_count"] == len(expected)
    assert (indexed["indexed"], indexed["failed"]) == (len(GOOD_ROWS), len(CORRUPT))
    boxes = boxes_of(dataset)
    assert {b.category for b in boxes} & set(PARTS), "the data has parts to leave out"
    assert all(record.category in GARMENTS for record in stored.values())


def test_garment_records_carry_their_photo_box_and_area(
    indexed: dict, chroma_url: str, dataset: Path
) -> None:
    stored = stored_garments(chroma_url, COLLECTION)
    checked = 0
    for box in boxes_of(dataset):
        record = stored.get(garment_record_id("train", box.image_id, box.bbox_id))
        if record is None:
            continue
        x0, y0, x1, y1 = box.bbox
        clipped = (max(x0, 0), max(y0, 0), min(x1, box.width), min(y1, box.height))
        assert record.photo_id == record_id("train", box.image_id)
        assert (record.image_id, record.split, record.category) == (
            box.image_id,
            "train",
            box.category,
        )
        assert record.box == pytest.approx(clipped)
        share = (clipped[2] - clipped[0]) * (clipped[3] - clipped[1]) / (box.width * box.height)
        assert record.area == pytest.approx(share, abs=1e-6)
        assert 0 < record.area <= 1
        checked += 1
    assert checked == len(stored)


def test_garment_colours_mostly_match_the_drawn_colours(
    indexed: dict, chroma_url: str, dataset: Path
) -> None:
    truth = sample_data.read_colours(dataset, "train")
    stored = stored_garments(chroma_url, COLLECTION)
    right = sum(
        1 for gid, record in stored.items() if record.colour == truth[int(gid.rsplit("-g", 1)[1])]
    )
    # Measured 168 of 174 on these small photos; shoes of a few pixels are the misses.
    assert right >= 0.8 * len(stored)


def test_a_bad_box_fails_alone_and_its_photo_is_indexed(
    indexed: dict, chroma_url: str, dataset: Path
) -> None:
    bad = {
        garment_record_id("train", b.image_id, b.bbox_id): b
        for b in boxes_of(dataset)
        if b.row in BAD_BOXES and b.category == sample_data.BAD_BOX_CATEGORY
    }
    assert len(bad) == len(BAD_BOXES)
    assert indexed["garments_failed"] == len(BAD_BOXES)
    lines = [json.loads(line) for line in Path(indexed["failures_file"]).read_text().splitlines()]
    garment_lines = {line["id"]: line for line in lines if line["id"] in bad}
    assert set(garment_lines) == set(bad)
    reasons = sorted(line["reason"] for line in garment_lines.values())
    assert any("empty" in r for r in reasons) and any("outside" in r for r in reasons)
    for gid, box in bad.items():
        assert garment_lines[gid]["row"] == box.row
    photos = connect(chroma_url).get_collection(COLLECTION)
    photo_ids = {record_id("train", b.image_id) for b in bad.values()}
    assert set(photos.get(ids=sorted(photo_ids))["ids"]) == photo_ids
    # The photo's other garments are there.
    assert garment_ids(dataset, set(BAD_BOXES)) <= set(stored_garments(chroma_url, COLLECTION))


def test_a_rerun_adds_nothing(
    indexed: dict,
    embedder: servers.Server,
    chroma_url: str,
    dataset: Path,
    tmp_path: Path,
) -> None:
    again = summary_of(index(embedder.address, chroma_url, dataset, tmp_path, COLLECTION))
    assert (again["indexed"], again["skipped"], again["garments"]) == (0, len(GOOD_ROWS), 0)
    assert again["garments_failed"] == 0  # a skipped photo's boxes are not tried again
    assert again["garment_count"] == indexed["garment_count"]
    assert again["collection_count"] == indexed["collection_count"]


def test_regions_none_writes_photos_only(
    embedder: servers.Server,
    chroma_url: str,
    dataset: Path,
    tmp_path: Path,
    collection_name: str,
) -> None:
    summary = summary_of(
        index(embedder.address, chroma_url, dataset, tmp_path, collection_name, "--regions", "none")
    )
    assert summary["regions"] == "none"
    assert (summary["indexed"], summary["garments"], summary["garments_failed"]) == (
        len(GOOD_ROWS),
        0,
        0,
    )
    assert summary["garment_count"] == 0
    assert (
        connect(chroma_url).get_collection(garments_collection_name(collection_name)).count() == 0
    )


def test_a_collection_of_the_old_layout_is_refused_naming_recreate(
    embedder: servers.Server,
    embedder_client: EmbedderClient,
    chroma_url: str,
    dataset: Path,
    tmp_path: Path,
    collection_name: str,
) -> None:
    # Layout 1: photos only, the same model, layout version 1.
    meta = {**model_metadata(embedder_client.model_info()), KEY_SCHEMA: 1}
    connect(chroma_url).create_collection(
        collection_name, metadata=meta, configuration={"hnsw": {"space": "cosine"}}
    )
    refused = index(embedder.address, chroma_url, dataset, tmp_path, collection_name)
    assert refused.returncode == 2
    assert "layout version 1" in refused.stderr and "--recreate" in refused.stderr
    assert "Traceback" not in refused.stderr

    rebuilt = summary_of(
        index(embedder.address, chroma_url, dataset, tmp_path, collection_name, "--recreate")
    )
    assert rebuilt["indexed"] == len(GOOD_ROWS)
    assert rebuilt["garment_count"] == len(garment_ids(dataset, GOOD_ROWS))
