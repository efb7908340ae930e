"""Wires the embedder together: settings → model → engine → servicer → gRPC lifecycle."""

from __future__ import annotations

import asyncio
import logging

import grpc

from embedder_service.engine import EmbedEngine
from embedder_service.model import OpenClipModel
from embedder_service.servicer import EmbedderServicer
from embedder_service.settings import EmbedderSettings
from fashionrag.grpc_server import GrpcService
from fashionrag.v1 import embedder_pb2, embedder_pb2_grpc

log = logging.getLogger(__name__)

SERVICE_NAME = embedder_pb2.DESCRIPTOR.services_by_name["Embedder"].full_name


class _LazyServicer(EmbedderServicer):
    """Registered before the model loads; health stays NOT_SERVING until `engine` is set."""

    def __init__(self) -> None:
        self.engine = None  # type: ignore[assignment]


async def serve(settings: EmbedderSettings) -> None:
    """Listen at once (health NOT_SERVING), load the model, serve until SIGTERM."""
    servicer = _LazyServicer()

    def register(server: grpc.aio.Server) -> None:
        embedder_pb2_grpc.add_EmbedderServicer_to_server(servicer, server)

    service = GrpcService(
        "embedder",
        f"{settings.host}:{settings.port}",
        register,
        [SERVICE_NAME],
        grace_seconds=settings.grace_seconds,
    )

    async def load() -> None:
        # Loading takes seconds to minutes (a download, a GPU); off the loop so health answers.
        model = await asyncio.to_thread(OpenClipModel.load, settings)
        servicer.engine = EmbedEngine(model, settings)

    try:
        await service.run(ready=load)
    finally:
        if servicer.engine is not None:
            servicer.engine.close()
