"""Between the Query service's protobuf messages and the core's plain Python, both ways: the
servicer reads requests and writes responses, the client writes requests and reads responses.
The one place that knows both shapes."""

from __future__ import annotations

from fashionrag.collection import ImageRecord
from fashionrag.v1 import query_pb2
from query_service.search_types import Hit, SearchOutcome, SearchQuery

_AUTO = {query_pb2.CATEGORY_MODE_AUTO: True, query_pb2.CATEGORY_MODE_OFF: False}
_MODE = {True: query_pb2.CATEGORY_MODE_AUTO, False: query_pb2.CATEGORY_MODE_OFF}


def query_from_request(request: query_pb2.SearchRequest) -> SearchQuery:
    """The core's query for a SearchRequest."""
    which = request.WhichOneof("query")
    return SearchQuery(
        text=request.text if which == "text" else None,
        image=request.image if which == "image" else None,
        top_k=request.top_k or None,  # proto3: 0 is "not set"
        categories=list(request.categories),
        auto_category=_AUTO.get(request.category_mode),
    )


def request_from_query(query: SearchQuery) -> query_pb2.SearchRequest:
    """The SearchRequest for a query (what the client sends)."""
    request = query_pb2.SearchRequest(top_k=query.top_k or 0, categories=query.categories)
    if query.text is not None:
        request.text = query.text
    if query.image is not None:
        request.image = query.image
    if query.auto_category is not None:
        request.category_mode = _MODE[query.auto_category]
    return request


def response_from_outcome(outcome: SearchOutcome) -> query_pb2.SearchResponse:
    """The SearchResponse for the core's outcome."""
    return query_pb2.SearchResponse(
        query=outcome.query,
        applied_categories=outcome.applied_categories,
        auto_category=outcome.auto_category,
        results=[
            query_pb2.SearchResult(
                rank=hit.rank,
                id=hit.record.id,
                path=hit.record.path,
                distance=hit.distance,
                score=hit.score,
                categories=list(hit.record.categories),
                width=hit.record.width,
                height=hit.record.height,
                image_id=hit.record.image_id,
                split=hit.record.split,
            )
            for hit in outcome.hits
        ],
    )


def outcome_from_response(response: query_pb2.SearchResponse) -> SearchOutcome:
    """The outcome a SearchResponse carries (what the client returns)."""
    return SearchOutcome(
        query=response.query,
        hits=[
            Hit(
                rank=r.rank,
                record=ImageRecord(
                    id=r.id,
                    image_id=r.image_id,
                    split=r.split,
                    path=r.path,
                    width=r.width,
                    height=r.height,
                    categories=tuple(r.categories),
                ),
                distance=r.distance,
            )
            for r in response.results
        ],
        applied_categories=list(response.applied_categories),
        auto_category=response.auto_category,
    )
