"""The QueryService gRPC servicer: protobuf in, the core's plain Python, protobuf out."""

from __future__ import annotations

import grpc

from fashionrag.errors import Unavailable, map_errors
from fashionrag.v1 import query_pb2, query_pb2_grpc
from query_service.admission import SearchGate
from query_service.conversions import query_from_request, response_from_outcome
from query_service.search import SearchCore

# gRPC's retry pushback (gRFC A6): a negative value tells the caller's channel not to retry.
DO_NOT_RETRY = (("grpc-retry-pushback-ms", "-1"),)


class QueryServicer(query_pb2_grpc.QueryServiceServicer):
    """Thin: every rule lives in SearchCore, every conversion in conversions.py."""

    def __init__(self, core: SearchCore, gate: SearchGate) -> None:
        self.core = core
        self.gate = gate

    @map_errors
    async def Search(
        self, request: query_pb2.SearchRequest, context: grpc.aio.ServicerContext
    ) -> query_pb2.SearchResponse:
        # The core blocks on the embedder and ChromaDB: the gate runs it in a thread of the
        # searches' own pool, keeping the loop free for other calls and for health checks.
        try:
            outcome = await self.gate.run(
                self.core.search, query_from_request(request), context.time_remaining()
            )
        except Unavailable:
            # A backend of ours is down: the caller's retry a moment later would meet it down
            # again and only delay the answer, whose message names the backend.
            context.set_trailing_metadata(DO_NOT_RETRY)
            raise
        return response_from_outcome(outcome)
