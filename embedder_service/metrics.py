"""The embedder's Prometheus metrics, in a registry of its own, served on --metrics-port."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from fashionrag.grpc_metrics import RpcMetrics

_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class EmbedderMetrics(RpcMetrics):
    """Requests, errors and latency by method and code (from RpcMetrics), plus the batcher's:
    batch sizes, queue depth and wait, and items embedded (rate() gives items per second), images
    and the regions (box crops) among them."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        super().__init__("fashionrag_embedder", registry or CollectorRegistry())
        self.batch_size = Histogram(
            "fashionrag_embedder_batch_size",
            "Items per forward pass.",
            ["kind"],
            buckets=_BATCH_BUCKETS,
            registry=self.registry,
        )
        self.queue_depth = Gauge(
            "fashionrag_embedder_queue_depth",
            "Items waiting for a batch.",
            ["kind"],
            registry=self.registry,
        )
        self.queue_wait = Histogram(
            "fashionrag_embedder_queue_wait_seconds",
            "Time from a request's arrival in the batcher to the start of its batch.",
            ["kind"],
            registry=self.registry,
        )
        self.items = Counter(
            "fashionrag_embedder_items",
            "Items embedded (rate() of the _total series is items per second); kind "
            '"images" counts every forward-pass input (whole images and box crops), "regions" '
            "the box crops alone.",
            ["kind"],
            registry=self.registry,
        )
        self.item_errors = Counter(
            "fashionrag_embedder_item_errors",
            "Items refused one by one (undecodable or oversized images; boxes that are empty "
            "or outside their image, kind regions).",
            ["kind"],
            registry=self.registry,
        )
