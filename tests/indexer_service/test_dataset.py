"""Reading Fashionpedia-layout data through `datasets`, without servers."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from devstack import sample_data, servers
from fashionrag.errors import ConfigurationError
from fashionrag.fashionpedia import CATEGORIES, GARMENTS, PARTS
from indexer_service.dataset import Shard, iter_rows, load_split
from tests.conftest import CORRUPT_ROWS, DATASET_ROWS


def test_rows_carry_original_bytes_and_category_names(dataset_dir: Path) -> None:
    rows = list(iter_rows(load_split(str(dataset_dir), "train")))
    assert len(rows) == DATASET_ROWS
    assert [r.image_id for r in rows] == list(range(1, DATASET_ROWS + 1))
    good = rows[0]
    with Image.open(io.BytesIO(good.image)) as image:
        assert image.size == (good.width, good.height)
    assert all(set(r.categories) <= set(CATEGORIES) for r in rows)
    assert any(r.categories for r in rows)
    assert rows[CORRUPT_ROWS[0]].image == sample_data.CORRUPT_BYTES


def test_rows_keep_each_objects_box_id_category_and_box(dataset_dir: Path) -> None:
    raw = list(load_split(str(dataset_dir), "train").take(3))
    rows = list(iter_rows(load_split(str(dataset_dir), "train"), limit=3))
    for item, row in zip(raw, rows, strict=True):
        objects = item["objects"]
        assert [(o.bbox_id, o.category, o.bbox) for o in row.objects] == [
            (bbox_id, CATEGORIES[category], tuple(bbox))
            for bbox_id, category, bbox in zip(
                objects["bbox_id"], objects["category"], objects["bbox"], strict=True
            )
        ]
        assert row.categories == tuple(dict.fromkeys(o.category for o in row.objects))
        assert row.garments() == tuple(o for o in row.objects if o.category in GARMENTS)
    parts = [o for row in rows for o in row.objects if o.category in PARTS]
    assert parts and not any(o in row.garments() for row in rows for o in parts)


def test_generated_data_has_fashionpedias_schema(dataset_dir: Path) -> None:
    ds = load_split(str(dataset_dir), "train")
    assert set(ds.features) == {"image_id", "image", "width", "height", "objects"}
    assert set(ds.features["objects"]) == {"bbox_id", "category", "bbox", "area"}
    assert list(ds.features["objects"]["category"].feature.names) == list(CATEGORIES)


def test_offset_and_limit_select_a_window(dataset_dir: Path) -> None:
    rows = list(iter_rows(load_split(str(dataset_dir), "train"), offset=10, limit=5))
    assert [r.index for r in rows] == [10, 11, 12, 13, 14]


def test_shards_are_disjoint_and_cover_the_run(dataset_dir: Path) -> None:
    ds = load_split(str(dataset_dir), "train")
    whole = [r.image_id for r in iter_rows(ds, offset=3, limit=25)]
    parts = [
        [r.image_id for r in iter_rows(ds, offset=3, limit=25, shard=Shard(i, 3))] for i in range(3)
    ]
    assert sorted(i for part in parts for i in part) == sorted(whole)
    assert not set(parts[0]) & set(parts[1])


@pytest.mark.parametrize("text", ["2/2", "x", "1/0", "-1/3"])
def test_bad_shard_is_refused(text: str) -> None:
    with pytest.raises(ConfigurationError, match="--shard"):
        Shard.parse(text)


def test_missing_split_names_the_splits_found(dataset_dir: Path) -> None:
    with pytest.raises(ConfigurationError, match=r"splits found there: \['train', 'val'\]"):
        load_split(str(dataset_dir), "test")


def test_missing_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="no such directory"):
        load_split(str(tmp_path / "nope"), "train")


def test_unreachable_hub_names_the_offline_way() -> None:
    code = (
        "from indexer_service.dataset import load_split\n"
        "load_split('detection-datasets/fashionpedia', 'train')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        env=servers.child_env(),
    )
    assert result.returncode != 0
    assert "DatasetUnavailable" in result.stderr
    assert "local directory" in result.stderr
