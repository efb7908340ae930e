"""The QueryService gRPC servicer: protobuf in, the core's plain Python, protobuf out."""

from __future__ import annotations

import asyncio

import grpc

from fashionrag.errors import map_errors
from fashionrag.v1 import query_pb2, query_pb2_grpc
from query_service.conversions import query_from_request, response_from_outcome
from query_service.search import SearchCore


class QueryServicer(query_pb2_grpc.QueryServiceServicer):
    """Thin: every rule lives in SearchCore, every conversion in conversions.py."""

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
