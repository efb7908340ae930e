"""The Query service's protobuf conversions in-process: what the servicer writes is what the
client reads back, and the wire carries the fields other languages read directly."""

from __future__ import annotations

import pytest

from fashionrag.collection import ImageRecord
from fashionrag.v1 import query_pb2
from query_service.conversions import (
    outcome_from_response,
    query_from_request,
    request_from_query,
    response_from_outcome,
)
from query_service.json_contract import outcome_dict
from query_service.search_types import (
    GarmentFilter,
    GarmentMatch,
    Hit,
    SearchOutcome,
    SearchQuery,
    UnderstoodWord,
)

TOPS = "top, t-shirt, sweatshirt"

OUTCOME = SearchOutcome(
    query="red tops",
    hits=[
        Hit(
            rank=rank,
            record=ImageRecord(
                f"train-{rank}", rank, "train", f"/images/{rank}.jpg", 640, 480, ("dress", "shoe")
            ),
            distance=distance,
        )
        for rank, distance in ((1, 0.125), (2, 0.5))
    ],
    applied_categories=[TOPS],
    auto_category=TOPS,
)
# Values a float32 holds exactly, so the round trip compares equal.
GARMENT_OUTCOME = SearchOutcome(
    query="red tops",
    hits=[
        Hit(
            rank=1,
            record=ImageRecord("train-1", 1, "train", "/images/1.jpg", 640, 480, (TOPS,)),
            distance=0.125,
            garments=(
                GarmentMatch("train-1-g3", TOPS, "red", "white", (1.5, 2, 300, 400), 0.25, 0.125),
                GarmentMatch("train-1-g4", TOPS, "red", "", (10, 20, 30, 40), 0.0625, 0.5),
            ),
        )
    ],
    applied_categories=[TOPS],
    auto_category=TOPS,
    grain="garment",
    understood=[
        UnderstoodWord("red", "colour", "red"),
        UnderstoodWord("tops", "garment", TOPS),
    ],
    garment_filters=[GarmentFilter(TOPS, ("red",)), GarmentFilter("", ("navy", "red"))],
)


def test_the_wire_score_is_one_minus_the_distance() -> None:
    response = response_from_outcome(OUTCOME)
    assert [r.score for r in response.results] == pytest.approx([0.875, 0.5])
    assert [r.distance for r in response.results] == pytest.approx([0.125, 0.5])


@pytest.mark.parametrize("outcome", [OUTCOME, GARMENT_OUTCOME])
def test_the_client_reads_back_what_the_servicer_wrote(outcome: SearchOutcome) -> None:
    assert outcome_from_response(response_from_outcome(outcome)) == outcome


def test_the_wire_names_the_grain_and_an_old_service_reads_as_photos() -> None:
    assert response_from_outcome(GARMENT_OUTCOME).grain == query_pb2.SEARCH_GRAIN_GARMENT
    assert response_from_outcome(OUTCOME).grain == query_pb2.SEARCH_GRAIN_PHOTO
    assert outcome_from_response(query_pb2.SearchResponse(query="x")).grain == "photo"


def test_the_json_names_garments_filters_and_what_was_understood() -> None:
    payload = outcome_dict(GARMENT_OUTCOME)
    assert payload["grain"] == "garment"
    assert payload["applied_colours"] == ["red", "navy"]
    assert payload["understood"][1] == {"words": "tops", "kind": "garment", "meaning": TOPS}
    assert payload["garment_filters"][1] == {"category": "", "colours": ["navy", "red"]}
    assert payload["results"][0]["garments"][0] == {
        "id": "train-1-g3",
        "category": TOPS,
        "colour": "red",
        "colour2": "white",
        "box": [1.5, 2.0, 300.0, 400.0],
        "distance": 0.125,
        "area": 0.25,
    }
    photo = outcome_dict(OUTCOME)
    assert (photo["grain"], photo["results"][0]["garments"], photo["applied_colours"]) == (
        "photo",
        [],
        [],
    )


@pytest.mark.parametrize(
    "query",
    [
        SearchQuery(text="red tops", top_k=5, categories=["shoe"], auto_category=False),
        SearchQuery(text="red tops", auto_category=True),
        SearchQuery(text="tops", colours=["red", "navy"]),
        SearchQuery(image=b"\x89PNG", top_k=3),
    ],
)
def test_the_servicer_reads_back_what_the_client_wrote(query: SearchQuery) -> None:
    request = request_from_query(query)
    assert isinstance(request, query_pb2.SearchRequest)
    assert query_from_request(request) == query
