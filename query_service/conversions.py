"""Between the Query service's protobuf messages and the core's plain Python, both ways: the
servicer reads requests and writes responses, the client writes requests and reads responses.
The one place that knows both shapes."""

from __future__ import annotations

from fashionrag.collection import ImageRecord
from fashionrag.v1 import query_pb2
from query_service.search_types import (
    GarmentFilter,
    GarmentMatch,
    Grain,
    Hit,
    SearchOutcome,
    SearchQuery,
    UnderstoodWord,
)

_AUTO = {query_pb2.CATEGORY_MODE_AUTO: True, query_pb2.CATEGORY_MODE_OFF: False}
_MODE = {True: query_pb2.CATEGORY_MODE_AUTO, False: query_pb2.CATEGORY_MODE_OFF}
_GRAIN: dict[Grain, query_pb2.SearchGrain] = {
    "photo": query_pb2.SEARCH_GRAIN_PHOTO,
    "garment": query_pb2.SEARCH_GRAIN_GARMENT,
}
_GRAIN_NAME: dict[int, Grain] = {value: name for name, value in _GRAIN.items()}


def query_from_request(request: query_pb2.SearchRequest) -> SearchQuery:
    """The core's query for a SearchRequest."""
    which = request.WhichOneof("query")
    return SearchQuery(
        text=request.text if which == "text" else None,
        image=request.image if which == "image" else None,
        top_k=request.top_k or None,  # proto3: 0 is "not set"
        categories=list(request.categories),
        auto_category=_AUTO.get(request.category_mode),
        colours=list(request.colours),
    )


def request_from_query(query: SearchQuery) -> query_pb2.SearchRequest:
    """The SearchRequest for a query (what the client sends)."""
    request = query_pb2.SearchRequest(
        top_k=query.top_k or 0, categories=query.categories, colours=query.colours
    )
    if query.text is not None:
        request.text = query.text
    if query.image is not None:
        request.image = query.image
    if query.auto_category is not None:
        request.category_mode = _MODE[query.auto_category]
    return request


def _garment_message(match: GarmentMatch) -> query_pb2.GarmentMatch:
    x0, y0, x1, y1 = match.box
    return query_pb2.GarmentMatch(
        id=match.id,
        category=match.category,
        colour=match.colour,
        colour2=match.colour2,
        x0=x0,
        y0=y0,
        x1=x1,
        y1=y1,
        distance=match.distance,
        area=match.area,
    )


def response_from_outcome(outcome: SearchOutcome) -> query_pb2.SearchResponse:
    """The SearchResponse for the core's outcome."""
    return query_pb2.SearchResponse(
        query=outcome.query,
        applied_categories=outcome.applied_categories,
        auto_category=outcome.auto_category,
        grain=_GRAIN[outcome.grain],
        understood=[
            query_pb2.UnderstoodWord(words=w.words, kind=w.kind, meaning=w.meaning)
            for w in outcome.understood
        ],
        garment_filters=[
            query_pb2.GarmentFilter(category=f.category, colours=list(f.colours))
            for f in outcome.garment_filters
        ],
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
                garments=[_garment_message(g) for g in hit.garments],
            )
            for hit in outcome.hits
        ],
    )


def _garment_match(message: query_pb2.GarmentMatch) -> GarmentMatch:
    return GarmentMatch(
        id=message.id,
        category=message.category,
        colour=message.colour,
        colour2=message.colour2,
        box=(message.x0, message.y0, message.x1, message.y1),
        area=message.area,
        distance=message.distance,
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
                garments=tuple(_garment_match(g) for g in r.garments),
            )
            for r in response.results
        ],
        applied_categories=list(response.applied_categories),
        auto_category=response.auto_category,
        # A service older than garment records leaves it unspecified: it ranked photos.
        grain=_GRAIN_NAME.get(response.grain, "photo"),
        understood=[UnderstoodWord(w.words, w.kind, w.meaning) for w in response.understood],
        garment_filters=[
            GarmentFilter(f.category, tuple(f.colours)) for f in response.garment_filters
        ],
    )
