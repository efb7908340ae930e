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
from query_service.search_types import Hit, SearchOutcome, SearchQuery

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
    applied_categories=["top, t-shirt, sweatshirt"],
    auto_category="top, t-shirt, sweatshirt",
)


def test_the_wire_score_is_one_minus_the_distance() -> None:
    response = response_from_outcome(OUTCOME)
    assert [r.score for r in response.results] == pytest.approx([0.875, 0.5])
    assert [r.distance for r in response.results] == pytest.approx([0.125, 0.5])


def test_the_client_reads_back_what_the_servicer_wrote() -> None:
    assert outcome_from_response(response_from_outcome(OUTCOME)) == OUTCOME


@pytest.mark.parametrize(
    "query",
    [
        SearchQuery(text="red tops", top_k=5, categories=["shoe"], auto_category=False),
        SearchQuery(text="red tops", auto_category=True),
        SearchQuery(image=b"\x89PNG", top_k=3),
    ],
)
def test_the_servicer_reads_back_what_the_client_wrote(query: SearchQuery) -> None:
    request = request_from_query(query)
    assert isinstance(request, query_pb2.SearchRequest)
    assert query_from_request(request) == query
