"""Wires the query service together: settings → clients → core → servicer → gRPC lifecycle."""

from __future__ import annotations

import logging

import grpc
from prometheus_client import CollectorRegistry

from embedder_service.client import EmbedderClient
from fashionrag.collection_store import CollectionReader
from fashionrag.grpc_metrics import ObservabilityInterceptor, RpcMetrics
from fashionrag.grpc_server import GrpcService
from fashionrag.v1 import query_pb2, query_pb2_grpc
from query_service.http import start_http
from query_service.image_files import ImageFiles
from query_service.search import SearchCore
from query_service.servicer import QueryServicer
from query_service.settings import QuerySettings
from query_service.text_cache import TextVectorCache

log = logging.getLogger(__name__)

SERVICE_NAME = query_pb2.DESCRIPTOR.services_by_name["QueryService"].full_name


async def serve(settings: QuerySettings) -> None:
    """Serve Search until SIGTERM."""
    embedder = EmbedderClient(
        settings.embedder, timeout=settings.embed_timeout, security=settings.embedder_security()
    )
    texts = TextVectorCache(embedder.embed_text, settings.cache_size)
    collection = CollectionReader(
        settings.chroma,
        settings.collection,
        model_info=lambda: embedder.model_info(refresh=True),
        # Each (re)open checks the embedder's model again; vectors of an older one must go.
        on_open=texts.clear,
    )
    core = SearchCore(embedder, collection, texts, auto_category=settings.auto_category == "on")
    metrics = RpcMetrics("fashionrag_query", CollectorRegistry())
    if settings.metrics_port:
        metrics.serve(settings.host, settings.metrics_port)

    def register(server: grpc.aio.Server) -> None:
        query_pb2_grpc.add_QueryServiceServicer_to_server(QueryServicer(core), server)

    service = GrpcService(
        "query",
        f"{settings.host}:{settings.port}",
        register,
        [SERVICE_NAME],
        grace_seconds=settings.grace_seconds,
        max_connection_age_seconds=settings.max_connection_age_seconds,
        interceptors=[ObservabilityInterceptor(metrics)],
        security=settings.server_security(),
    )
    token = settings.auth_token.get_secret_value()
    http = (
        await start_http(
            core,
            ImageFiles(settings.images_dir),
            settings.host,
            settings.http_port,
            auth_token=token,
            body_timeout=settings.http_body_timeout,
        )
        if settings.http_port
        else None
    )
    try:
        # Ready at once: the embedder and ChromaDB are reached per call, and a call made while
        # one is down says which (UNAVAILABLE) instead of the service refusing to start.
        await service.run()
    finally:
        if http is not None:
            await http.cleanup()
        embedder.close()
