"""The Query gRPC servicer: protobuf in, the core's plain Python, protobuf out."""

from __future__ import annotations

import asyncio

import grpc

from fashionrag.errors import map_errors
from fashionrag.v1 import query_pb2, query_pb2_grpc
from query_service.search import SearchCore, SearchOutcome, SearchQuery


def query_from_request(request: query_pb2.SearchRequest) -> SearchQuery:
    """The core's query for a SearchRequest."""
    which = request.WhichOneof("query")
    auto = {query_pb2.CATEGORY_MODE_AUTO: True, query_pb2.CATEGORY_MODE_OFF: False}
    return SearchQuery(
        text=request.text if which == "text" else None,
        image=request.image if which == "image" else None,
        top_k=request.top_k or None,  # proto3: 0 is "not set"
        categories=list(request.categories),
        auto_category=auto.get(request.category_mode),
    )


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


class QueryServicer(query_pb2_grpc.QueryServicer):
    """Thin: every rule lives in SearchCore."""

    def __init__(self, core: SearchCore) -> None:
        self.core = core

    @map_errors
    async def Search(
        self, request: query_pb2.SearchRequest, context: grpc.aio.ServicerContext
    ) -> query_pb2.SearchResponse:
        # The core blocks on the embedder and ChromaDB; a worker thread keeps the loop free
        # for other calls and for health checks.
        outcome = await asyncio.to_thread(
            self.core.search, query_from_request(request), context.time_remaining()
        )
        return response_from_outcome(outcome)
