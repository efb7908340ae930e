"""Reading a service's Prometheus metrics, as tests and benchmarks count what a server did."""

from __future__ import annotations

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
