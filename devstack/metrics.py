"""Reading a service's Prometheus metrics, as tests and benchmarks count what a server did."""

from __future__ import annotations

import time
from dataclasses import dataclass

import httpx
from prometheus_client.parser import text_string_to_metric_families


def counter_total(metrics_url: str, name: str, **labels: str) -> float:
    """The sum of counter `name` (without its `_total` suffix) over the series whose labels
    include `labels`, read from `metrics_url` (e.g. http://127.0.0.1:9100/metrics)."""
    text = httpx.get(metrics_url, timeout=5).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == f"{name}_total"
        and all(sample.labels.get(k) == v for k, v in labels.items())
    )


@dataclass(frozen=True)
class EmbedderCounts:
    """What an embedder has embedded since it started: whole photos, garment regions (box
    crops), and images it refused (undecodable)."""

    photos: int
    regions: int
    refused: int

    def __sub__(self, other: EmbedderCounts) -> EmbedderCounts:
        return EmbedderCounts(
            self.photos - other.photos, self.regions - other.regions, self.refused - other.refused
        )


def embedder_counts(metrics_url: str) -> EmbedderCounts:
    """The embedder's counts, read from its metrics at `metrics_url`."""
    # The "images" series counts every forward-pass input, box crops too; "regions" them alone.
    images = counter_total(metrics_url, "fashionrag_embedder_items", kind="images")
    regions = counter_total(metrics_url, "fashionrag_embedder_items", kind="regions")
    refused = counter_total(metrics_url, "fashionrag_embedder_item_errors", kind="images")
    return EmbedderCounts(int(images - regions), int(regions), int(refused))


def settled_embedder_counts(
    metrics_url: str, quiet: float = 1.0, timeout: float = 30.0
) -> EmbedderCounts:
    """The embedder's counts once they have not moved for `quiet` seconds: requests of a client
    that was just killed may still be embedded after it is gone."""
    deadline = time.monotonic() + timeout
    counts = embedder_counts(metrics_url)
    while time.monotonic() < deadline:
        time.sleep(quiet)
        now = embedder_counts(metrics_url)
        if now == counts:
            return now
        counts = now
    raise TimeoutError(f"the embedder's counts at {metrics_url} still move after {timeout}s")
