"""Per-call observability for the asyncio gRPC servers: Prometheus counters and latency by method
and status code, the process's own metrics, and a request id on every log line of the call.

Health checks and reflection are not requests: probes every few seconds would swamp the calls
that do the work, so the interceptor leaves them out."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from grpc_health.v1 import health
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    start_http_server,
)

from fashionrag.reflection import SERVICE_NAMES as REFLECTION_SERVICE_NAMES
from fashionrag.request_context import REQUEST_ID_HEADER, request_id

# The services that every server carries for its operators, not its callers.
UNMEASURED_SERVICES = frozenset({health.SERVICE_NAME, *REFLECTION_SERVICE_NAMES})


class RpcMetrics:
    """Counters and latency histograms of a server's calls, beside the process's own metrics
    (`process_*`: CPU, memory, open files; `python_info`) in the same registry.

    Args:
        prefix: metric name prefix, e.g. "fashionrag_embedder".
        registry: the registry to register in.
    """

    def __init__(self, prefix: str, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.requests = Counter(
            f"{prefix}_requests",
            "Calls finished, by method and gRPC status code.",
            ["method", "code"],
            registry=registry,
        )
        self.latency = Histogram(
            f"{prefix}_request_seconds",
            "Call latency, by method.",
            ["method"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
            registry=registry,
        )
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)

    def serve(self, host: str, port: int) -> None:
        """Expose the registry over HTTP at http://host:port/metrics."""
        start_http_server(port, addr=host, registry=self.registry)


class ObservabilityInterceptor(grpc.aio.ServerInterceptor):
    """Counts and times every unary call but health checks and reflection (UNMEASURED_SERVICES),
    and gives it a request id for the logs (the caller's `x-request-id` metadata when present,
    else a new one, echoed in the trailing metadata)."""

    def __init__(self, metrics: RpcMetrics) -> None:
        self.metrics = metrics

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None or handler.unary_unary is None:
            return handler
        service, _, method = handler_call_details.method.lstrip("/").rpartition("/")
        if service in UNMEASURED_SERVICES:
            return handler
        metadata = dict(handler_call_details.invocation_metadata or ())
        inner = handler.unary_unary
        metrics = self.metrics

        async def observed(request: Any, context: grpc.aio.ServicerContext) -> Any:
            rid = str(metadata.get(REQUEST_ID_HEADER) or uuid.uuid4().hex[:16])
            token = request_id.set(rid)
            context.set_trailing_metadata(((REQUEST_ID_HEADER, rid),))
            started = time.perf_counter()
            code = "OK"
            try:
                return await inner(request, context)  # type: ignore[arg-type]
            except BaseException as exc:
                status = context.code()
                if isinstance(status, grpc.StatusCode):
                    code = status.name
                else:
                    code = "CANCELLED" if isinstance(exc, asyncio.CancelledError) else "UNKNOWN"
                raise
            finally:
                metrics.requests.labels(method, code).inc()
                metrics.latency.labels(method).observe(time.perf_counter() - started)
                request_id.reset(token)

        return grpc.unary_unary_rpc_method_handler(
            observed,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
