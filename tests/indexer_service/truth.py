"""What the generated data says the index should hold, read straight from its parquet files (not
through the indexer's reader): every annotated box, and the garment record ids of good rows."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from devstack import sample_data
from fashionrag.collection import garment_record_id
from fashionrag.fashionpedia import CATEGORIES, GARMENTS
from indexer_service.dataset import load_split


@dataclass(frozen=True)
class Box:
    """A box of the generated data, as the parquet files hold it."""

    row: int
    image_id: int
    bbox_id: int
    category: str
    bbox: tuple[float, float, float, float]
    width: int
    height: int


def boxes_of(dataset: Path, split: str = "train") -> list[Box]:
    """Every annotated box of a split."""
    found = []
    for row, item in enumerate(load_split(str(dataset), split)):
        objects = item["objects"]
        for bbox_id, category, bbox in zip(
            objects["bbox_id"], objects["category"], objects["bbox"], strict=True
        ):
            found.append(
                Box(
                    row,
                    item["image_id"],
                    bbox_id,
                    CATEGORIES[category],
                    tuple(bbox),
                    item["width"],
                    item["height"],
                )
            )
    return found


def garment_ids(dataset: Path, rows: set[int], split: str = "train") -> set[str]:
    """The garment record ids of the good boxes of these rows."""
    return {
        garment_record_id(split, b.image_id, b.bbox_id)
        for b in boxes_of(dataset, split)
        if b.row in rows and b.category in GARMENTS and b.category != sample_data.BAD_BOX_CATEGORY
    }
