"""Wires the query service together: settings → clients → core → servicer → gRPC lifecycle."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import grpc

from embedder_service.client import EmbedderClient
from fashionrag.collection_store import CollectionReader
from fashionrag.grpc_client import FAIL_FAST
from fashionrag.grpc_metrics import ObservabilityInterceptor
from fashionrag.grpc_server import GrpcService
from fashionrag.v1 import query_pb2, query_pb2_grpc
from query_service.admission import SearchGate
from query_service.backends import (
    CHECK_TIMEOUT_SECONDS,
    FIRST_CHECK_TIMEOUT_SECONDS,
    Backend,
    BackendWatcher,
)
from query_service.http import make_app, start_http
from query_service.image_files import ImageFiles
from query_service.metrics import CHROMADB, MeasuredEmbedder, QueryMetrics
from query_service.search import SearchCore
from query_service.servicer import QueryServicer
from query_service.settings import QuerySettings
from query_service.text_cache import TextVectorCache

log = logging.getLogger(__name__)

SERVICE_NAME = query_pb2.DESCRIPTOR.services_by_name["QueryService"].full_name


async def serve(settings: QuerySettings) -> None:
    """Serve Search until SIGTERM."""
    # Fail fast: a person is waiting on every call, so with no embedder up a search answers
    # UNAVAILABLE at once, naming it, instead of holding the request for the whole timeout.
    embedder = EmbedderClient(
        settings.embedder,
        timeout=settings.embed_timeout,
        policy=FAIL_FAST,
        security=settings.embedder_security(),
    )
    metrics = QueryMetrics()
    measured = MeasuredEmbedder(embedder, metrics)
    texts = TextVectorCache(measured.embed_text, settings.cache_size, metrics)
    collection = CollectionReader(
        settings.chroma,
        settings.collection,
        model_info=lambda: measured.model_info(refresh=True),
        # Each (re)open checks the embedder's model again; vectors of an older one must go.
        on_open=texts.clear,
        measure=lambda operation: metrics.backend_call(CHROMADB, operation),
    )
    core = SearchCore(
        measured, collection, texts, auto_category=settings.auto_category == "on", metrics=metrics
    )
    gate = SearchGate(settings.max_searches)
    if settings.metrics_port:
        metrics.serve(settings.host, settings.metrics_port)

    def register(server: grpc.aio.Server) -> None:
        query_pb2_grpc.add_QueryServiceServicer_to_server(QueryServicer(core, gate), server)

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
    # The service starts while a backend is down, and says which: its overall health (and
    # /healthz) turns NOT_SERVING, each search answers UNAVAILABLE naming it, and both recover
    # on their own when it is back.
    backends = BackendWatcher(
        [
            Backend("embedder", lambda: embedder.check_serving(CHECK_TIMEOUT_SECONDS)),
            Backend("ChromaDB", collection.heartbeat),
        ],
        on_change=service.set_readiness,
    )
    await backends.check(FIRST_CHECK_TIMEOUT_SECONDS)
    watching = asyncio.create_task(backends.run())
    http = None
    try:
        if settings.http_port:
            app = make_app(
                core,
                gate,
                backends,
                ImageFiles(settings.images_dir),
                auth_token=token,
                metrics=metrics,
                body_timeout=settings.http_body_timeout,
            )
            http = await start_http(app, settings.host, settings.http_port)
        await service.run()
    finally:
        watching.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watching
        if http is not None:
            await http.cleanup()
        backends.close()
        gate.close()
        embedder.close()
