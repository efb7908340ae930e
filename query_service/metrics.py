"""The query service's Prometheus metrics, in a registry of its own, served on --metrics-port:
its gRPC calls (RpcMetrics), its HTTP requests, the time spent in each backend, the text cache,
and searches by grain."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Histogram

from fashionrag.grpc_metrics import RpcMetrics
from fashionrag.model_info import ModelInfo

if TYPE_CHECKING:
    from embedder_service.client import EmbedderClient

PREFIX = "fashionrag_query"
EMBEDDER = "embedder"
CHROMADB = "chromadb"
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
_BACKEND_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class QueryMetrics(RpcMetrics):
    """Requests, errors and latency of gRPC calls by method and code (from RpcMetrics), plus:
    HTTP requests by route template (never the raw path, so ids in paths add no series), method
    and status; each backend call's time and failures by backend and operation; text cache hits
    and misses; searches by grain and input."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        super().__init__(PREFIX, registry or CollectorRegistry())
        self.http_requests = Counter(
            f"{PREFIX}_http_requests",
            "HTTP requests answered, by route template, method and status code (/healthz, "
            "the probes', is left out).",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.http_latency = Histogram(
            f"{PREFIX}_http_request_seconds",
            "HTTP request latency, by route template and method.",
            ["route", "method"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.backend_latency = Histogram(
            f"{PREFIX}_backend_seconds",
            "Time spent in one call to a backend (embedder or chromadb), by operation; failed "
            "calls included.",
            ["backend", "operation"],
            buckets=_BACKEND_BUCKETS,
            registry=self.registry,
        )
        self.backend_errors = Counter(
            f"{PREFIX}_backend_errors",
            "Backend calls that failed (raised), by backend and operation.",
            ["backend", "operation"],
            registry=self.registry,
        )
        self.text_cache_hits = Counter(
            f"{PREFIX}_text_cache_hits",
            "Text queries whose vector came from the cache (no embedder call).",
            registry=self.registry,
        )
        self.text_cache_misses = Counter(
            f"{PREFIX}_text_cache_misses",
            "Text queries whose vector had to be asked of the embedder.",
            registry=self.registry,
        )
        self.searches = Counter(
            f"{PREFIX}_searches",
            "Searches answered (gRPC and HTTP), by grain (photo or garment) and input (text or "
            "image).",
            ["grain", "input"],
            registry=self.registry,
        )

    @contextmanager
    def backend_call(self, backend: str, operation: str) -> Iterator[None]:
        """Time the block as one call to `backend`, and count it as failed if it raises."""
        started = time.perf_counter()
        try:
            yield
        except BaseException:
            self.backend_errors.labels(backend, operation).inc()
            raise
        finally:
            self.backend_latency.labels(backend, operation).observe(time.perf_counter() - started)


class MeasuredEmbedder:
    """The embedder client's calls that a search makes, each timed as an embedder backend call.

    Args:
        client: the embedder client.
        metrics: where the calls are recorded.
    """

    def __init__(self, client: EmbedderClient, metrics: QueryMetrics) -> None:
        self._client = client
        self._metrics = metrics

    def embed_text(self, text: str, timeout: float | None = None) -> np.ndarray:
        """One text's vector (EmbedderClient.embed_text)."""
        with self._metrics.backend_call(EMBEDDER, "embed_text"):
            return self._client.embed_text(text, timeout)

    def embed_image(self, data: bytes, timeout: float | None = None) -> np.ndarray:
        """One image's vector (EmbedderClient.embed_image)."""
        with self._metrics.backend_call(EMBEDDER, "embed_image"):
            return self._client.embed_image(data, timeout)

    def model_info(self, refresh: bool = False) -> ModelInfo:
        """The embedder's model (EmbedderClient.model_info); timed when refreshed, the one time
        it is sure to be a call."""
        if not refresh:
            return self._client.model_info()
        with self._metrics.backend_call(EMBEDDER, "model_info"):
            return self._client.model_info(refresh=True)
