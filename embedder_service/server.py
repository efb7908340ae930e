"""Wires the embedder together: settings → model → engine → servicer → gRPC lifecycle."""

from __future__ import annotations

import asyncio
import logging

import grpc

from embedder_service.engine import EmbedEngine
from embedder_service.metrics import EmbedderMetrics
from embedder_service.servicer import EmbedderServicer
from embedder_service.settings import EmbedderSettings
from fashionrag.errors import Unavailable
from fashionrag.grpc_metrics import ObservabilityInterceptor
from fashionrag.grpc_server import GrpcService
from fashionrag.v1 import embedder_pb2, embedder_pb2_grpc

log = logging.getLogger(__name__)

SERVICE_NAME = embedder_pb2.DESCRIPTOR.services_by_name["EmbedderService"].full_name


class _LoadingServicer(EmbedderServicer):
    """Registered before the model loads (health says NOT_SERVING meanwhile); a call that
    arrives anyway is UNAVAILABLE, which clients retry."""

    def __init__(self) -> None:
        self._engine: EmbedEngine | None = None

    @property
    def engine(self) -> EmbedEngine:
        if self._engine is None:
            raise Unavailable("the model is still loading; retry shortly", reason="MODEL_LOADING")
        return self._engine

    @engine.setter
    def engine(self, engine: EmbedEngine) -> None:
        self._engine = engine

    async def close(self) -> None:
        """Stop the engine's workers, if the model got loaded."""
        if self._engine is not None:
            await self._engine.close()


async def serve(settings: EmbedderSettings) -> None:
    """Listen at once (health NOT_SERVING), load the model, serve until SIGTERM."""
    metrics = EmbedderMetrics()
    if settings.metrics_port:
        metrics.serve(settings.host, settings.metrics_port)
        log.info("metrics on http://%s:%d/metrics", settings.host, settings.metrics_port)
    servicer = _LoadingServicer()

    def register(server: grpc.aio.Server) -> None:
        embedder_pb2_grpc.add_EmbedderServiceServicer_to_server(servicer, server)

    service = GrpcService(
        "embedder",
        f"{settings.host}:{settings.port}",
        register,
        [SERVICE_NAME],
        grace_seconds=settings.grace_seconds,
        interceptors=[ObservabilityInterceptor(metrics)],
        max_connection_age_seconds=settings.max_connection_age_seconds,
        security=settings.server_security(),
    )

    async def load() -> None:
        # Loading takes seconds to minutes (a download, a GPU); off the loop so health answers.
        servicer.engine = await asyncio.to_thread(EmbedEngine.load, settings, metrics)

    try:
        await service.run(ready=load)
    finally:
        await servicer.close()
