"""Reading metrics pages: a missing series is None or an error, never 0; the naming lint."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from devstack.metrics import MetricsPage, MissingSeries, lint, promtool, promtool_check


def page_of(registry: CollectorRegistry) -> MetricsPage:
    return MetricsPage(generate_latest(registry).decode())


@pytest.fixture()
def page() -> MetricsPage:
    registry = CollectorRegistry()
    calls = Counter("t_calls", "Calls.", ["method", "code"], registry=registry)
    calls.labels("Search", "OK").inc(3)
    calls.labels("Search", "NOT_FOUND").inc()
    Counter("t_idle", "Never counted.", ["kind"], registry=registry)
    Gauge("t_depth", "Depth.", registry=registry).set(0)
    Histogram("t_wait_seconds", "Wait.", registry=registry).observe(0.2)
    return page_of(registry)


def test_a_series_sums_over_the_labels_not_named(page: MetricsPage) -> None:
    assert page.value("t_calls_total", method="Search") == 4
    assert page.value("t_calls_total", method="Search", code="OK") == 3
    assert page.value("t_wait_seconds_count") == 1


def test_a_zero_on_the_page_is_zero_not_missing(page: MetricsPage) -> None:
    assert page.value("t_depth") == 0
    assert page.require("t_depth") == 0


def test_a_missing_series_is_none(page: MetricsPage) -> None:
    assert page.value("t_depth_renamed") is None
    assert page.value("t_calls_total", code="UNKNOWN") is None
    assert page.value("t_calls", method="Search") is None  # the family, not a sample name


def test_requiring_a_missing_series_says_what_there_is(page: MetricsPage) -> None:
    with pytest.raises(MissingSeries, match='code="NOT_FOUND"'):
        page.require("t_calls_total", code="DEADLINE_EXCEEDED")
    with pytest.raises(MissingSeries, match="declared but has no series"):
        page.require("t_idle_total", kind="texts")
    with pytest.raises(MissingSeries, match="renamed"):
        page.require("t_gone_total")


def test_a_family_is_declared_before_its_first_series(page: MetricsPage) -> None:
    assert page.declares("t_idle_total")
    assert page.declares("t_wait_seconds_bucket")
    assert not page.declares("t_gone_total")


def test_lint_passes_conventional_names(page: MetricsPage) -> None:
    assert lint(page, "t_") == []


def test_lint_names_each_convention_broken() -> None:
    registry = CollectorRegistry()
    Gauge("t_latency_ms", "Latency.", registry=registry).set(1)
    Gauge("t_calls_total", "A gauge named as a counter.", registry=registry).set(1)
    Gauge("other_depth", "Outside the prefix.", registry=registry).set(1)
    paths = Counter("t_paths", "Raw paths as labels.", ["path"], registry=registry)
    for i in range(60):
        paths.labels(f"/images/{i}").inc()
    problems = "\n".join(lint(page_of(registry), "t_"))
    assert "t_latency_ms: not in a base unit" in problems
    assert "t_calls_total: a gauge named like a counter" in problems
    assert "other_depth: outside t_*" in problems
    assert "t_paths: label 'path' has 60 values" in problems


def test_promtool_finds_what_the_lint_finds() -> None:
    binary = promtool()
    if binary is None:
        pytest.fail("no promtool here: `make promtool` unpacks it (make test does)")
    registry = CollectorRegistry()
    Gauge("t_requests_count", "A gauge named as a histogram series.", registry=registry).set(1)
    assert "_count" in promtool_check(page_of(registry), binary)
