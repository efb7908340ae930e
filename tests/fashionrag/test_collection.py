"""The collection contract: ids, metadata, category filters, model identity."""

from __future__ import annotations

from dataclasses import replace

import pytest

from fashionrag import collection, collection_store
from fashionrag.errors import FailedPrecondition, InvalidArgument, ModelMismatch
from fashionrag.fashionpedia import CATEGORIES
from fashionrag.model_info import ModelInfo


def Model(**changes: object) -> ModelInfo:
    """ViT-B-32/laion2b (512-d), with `changes`."""
    base = ModelInfo(model_name="ViT-B-32", pretrained="laion2b_s34b_b79k", dimension=512)
    return replace(base, **changes)  # type: ignore[arg-type]


def test_fashionpedia_has_46_distinct_categories() -> None:
    assert len(CATEGORIES) == 46
    assert len(set(CATEGORIES)) == 46


def test_record_id_is_deterministic_and_split_scoped() -> None:
    assert collection.record_id("train", 12) == collection.record_id("train", 12)
    assert collection.record_id("train", 12) != collection.record_id("val", 12)


def test_record_metadata_round_trips() -> None:
    record = collection.ImageRecord(
        "train-3", 3, "train", "/x/3.jpg", 40, 50, ("shirt, blouse", "dress")
    )
    assert collection.ImageRecord.from_metadata("train-3", record.metadata()) == record


def test_record_without_categories_omits_the_key() -> None:
    record = collection.ImageRecord("train-3", 3, "train", "/x/3.jpg", 40, 50, ())
    assert collection.KEY_CATEGORIES not in record.metadata()
    assert collection.ImageRecord.from_metadata("train-3", record.metadata()).categories == ()


def test_unknown_category_is_refused_with_the_valid_names() -> None:
    with pytest.raises(InvalidArgument) as info:
        collection.validate_categories(["dress", "spaceship"])
    assert "spaceship" in str(info.value)
    assert info.value.reason == "UNKNOWN_CATEGORY"
    assert [v.field for v in info.value.violations] == ["categories[1]"]
    assert info.value.metadata["allowed"].split("|") == list(CATEGORIES)


def test_thousands_of_unknown_categories_keep_the_message_short() -> None:
    with pytest.raises(InvalidArgument) as info:
        collection.validate_categories([f"no-such-category-{i}" for i in range(2000)])
    assert len(str(info.value)) < 200
    assert "1997 more" in str(info.value)
    assert len(info.value.violations) == 2000


def test_category_filter_is_any_of() -> None:
    assert collection.category_filter([]) is None
    assert collection.category_filter(["dress"]) == {"categories": {"$contains": "dress"}}
    both = collection.category_filter(["dress", "coat"])
    assert both == {
        "$or": [{"categories": {"$contains": "dress"}}, {"categories": {"$contains": "coat"}}]
    }


def test_same_model_passes_the_check() -> None:
    collection.check_model("c", collection.model_metadata(Model()), Model())


@pytest.mark.parametrize(
    ("recorded", "other"),
    [
        (Model(), Model(model_name="ViT-L-14")),
        (Model(), Model(pretrained="openai")),
        (Model(), Model(dimension=768)),
        (Model(pretrained="none", seed=0), Model(pretrained="none", seed=1)),
    ],
    ids=["name", "tag", "dimension", "seed"],
)
def test_another_model_is_refused_naming_both(recorded: ModelInfo, other: ModelInfo) -> None:
    with pytest.raises(ModelMismatch) as info:
        collection.check_model("c", collection.model_metadata(recorded), other)
    # Each identity's own words, which differ exactly where the models do.
    assert str(recorded) != str(other)
    assert str(recorded) in str(info.value)
    assert str(other) in str(info.value)
    assert info.value.metadata == {
        "collection": "c",
        "collection_model": str(recorded),
        "embedder_model": str(other),
    }


def test_collection_without_model_record_is_refused() -> None:
    with pytest.raises(ModelMismatch, match="no model at all"):
        collection.check_model("c", {}, Model())


def test_bad_chroma_url_is_refused() -> None:
    with pytest.raises(InvalidArgument, match="not a URL"):
        collection_store.connect("ftp://somewhere")


def test_garment_record_metadata_round_trips_with_its_compound_keys() -> None:
    record = collection.GarmentRecord(
        id=collection.garment_record_id("train", 3, 31),
        photo_id="train-3",
        image_id=3,
        split="train",
        category="skirt",
        box=(1.0, 2.0, 30.5, 40.0),
        area=0.25,
        colour="red",
        colour2="white",
    )
    meta = record.metadata()
    assert record.id == "train-3-g31"
    assert (meta["garment"], meta["garment2"]) == ("skirt/red", "skirt/white")
    assert collection.GarmentRecord.from_metadata(record.id, meta) == record


def test_garment_filter_keeps_category_and_colour_pairs() -> None:
    assert collection.garment_filter([]) is None
    assert collection.garment_filter([("skirt", [])]) == {"category": {"$in": ["skirt"]}}
    both = collection.garment_filter(
        [("skirt", ["red"]), ("pants", ["blue", "navy"]), ("shoe", [])]
    )
    assert both == {
        "$or": [
            {"garment": {"$in": ["pants/blue", "pants/navy", "skirt/red"]}},
            {"garment2": {"$in": ["pants/blue", "pants/navy", "skirt/red"]}},
            {"category": {"$in": ["shoe"]}},
        ]
    }


def test_a_collection_of_the_old_layout_is_refused_naming_the_way_out() -> None:
    old = {**collection.model_metadata(Model()), collection.KEY_SCHEMA: 1}
    with pytest.raises(FailedPrecondition, match="--recreate"):
        collection.check_layout("c", old)
    collection.check_layout("c", collection.model_metadata(Model()))
