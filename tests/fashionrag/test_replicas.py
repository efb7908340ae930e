"""Replicas behind a DNS name: added ones receive calls, removed ones stop receiving them, and
no search fails meanwhile; and a server refuses a port another one already listens on.

The name is served by a DNS server on loopback whose answers the test changes; each embedder
replica listens on its own loopback address (Linux routes all of 127/8 to lo) with one shared
port, as pods behind a Kubernetes headless Service do. Searches go through the real query service,
whose embedder client balances over the name; each replica's Prometheus metrics count its calls.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from devstack import servers
from devstack.dns import LoopbackDns
from devstack.metrics import counter_total
from devstack.ports import free_port
from query_service.client import QueryClient

pytestmark = pytest.mark.integration

NAME = "embedder.test"
HOSTS = ("127.0.0.2", "127.0.0.3", "127.0.0.4")
# Low so the test is short; the production default is 30 s. The goal is a new replica within
# 60 s of joining the name; with this age it takes a few seconds.
CONNECTION_AGE_SECONDS = 2.0
JOIN_WITHIN_SECONDS = 60.0


class Replica:
    """An embedder on its own loopback address, and the count of its EmbedTexts calls."""

    def __init__(self, host: str, port: int, logs_dir: Path) -> None:
        self.host = host
        metrics_port = free_port()
        self.metrics_url = f"http://{host}:{metrics_port}/metrics"
        self.server = servers.start_embedder(
            logs_dir / f"embedder-{host}.log",
            "--metrics-port",
            str(metrics_port),
            "--max-connection-age-seconds",
            str(CONNECTION_AGE_SECONDS),
            port=port,
            host=host,
            wait=False,
        )

    def calls(self) -> int:
        """EmbedTexts calls this replica has answered, whatever their status."""
        return int(
            counter_total(self.metrics_url, "fashionrag_embedder_requests", method="EmbedTexts")
        )


@pytest.fixture()
def replicas(logs_dir: Path) -> Iterator[dict[str, Replica]]:
    """Three embedder replicas on one port, at 127.0.0.2, .3 and .4; none in any name yet."""
    port = free_port()
    started: dict[str, Replica] = {}
    try:
        for host in HOSTS:  # started together, waited on together: they load in parallel
            started[host] = Replica(host, port, logs_dir)
        for replica in started.values():
            replica.server.wait_ready()
        yield started
    finally:
        for replica in started.values():
            replica.server.stop()


@pytest.fixture()
def dns() -> Iterator[LoopbackDns]:
    with LoopbackDns() as server:
        yield server


def index_a_few(embedder: str, chroma_url: str, dataset: Path, images: Path, name: str) -> None:
    result = servers.run_indexer(
        *servers.indexer_args(embedder, chroma_url, dataset, images, name, "--limit", "8")
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.splitlines()[-1])["indexed"] > 0


class Searches:
    """Searches with distinct texts (so no cache answers), each one required to succeed."""

    def __init__(self, client: QueryClient) -> None:
        self.client = client
        self.count = 0
        self._texts = (f"search number {i}" for i in itertools.count())

    def until(self, condition: Callable[[], bool], within: float) -> float:
        """Search until `condition` holds (asked after each search); return the seconds it took.

        Raises:
            AssertionError: `condition` did not hold within `within` seconds.
        """
        started = time.monotonic()
        while time.monotonic() - started < within:
            outcome = self.client.text(next(self._texts), top_k=3)  # a failure raises
            assert outcome.hits
            self.count += 1
            if condition():
                return time.monotonic() - started
            time.sleep(0.05)
        raise AssertionError(f"not within {within:.0f}s ({self.count} searches so far)")


def test_replicas_joining_and_leaving_the_name_cost_no_search(
    replicas: dict[str, Replica],
    dns: LoopbackDns,
    logs_dir: Path,
    chroma_url: str,
    dataset_dir: Path,
    tmp_path: Path,
    collection_name: str,
) -> None:
    first, second, third = (replicas[host] for host in HOSTS)
    index_a_few(first.server.address, chroma_url, dataset_dir, tmp_path, collection_name)
    dns.set(NAME, [first.host, second.host])
    target = dns.target(NAME, first.server.port)
    with (
        servers.start_query(
            logs_dir / "query-replicas.log",
            target,
            chroma_url,
            collection_name,
            "--cache-size",
            "0",
            http_port=0,
        ) as query,
        QueryClient(query.address, timeout=30) as client,
    ):
        searches = Searches(client)
        searches.until(lambda: first.calls() > 0 and second.calls() > 0, within=30)
        assert third.calls() == 0  # up and healthy, but not in the name

        dns.set(NAME, [first.host, second.host, third.host])
        joined_after = searches.until(lambda: third.calls() > 0, within=JOIN_WITHIN_SECONDS)

        # Leaving: once out of the name, the first replica gets no more calls while it still
        # serves; then it stops, as a scaled-down pod does, and searches go on.
        dns.set(NAME, [second.host, third.host])
        calls, changed = first.calls(), time.monotonic()

        def first_is_left_alone() -> bool:
            nonlocal calls, changed
            if first.calls() != calls:
                calls, changed = first.calls(), time.monotonic()
            return time.monotonic() - changed > 3 * CONNECTION_AGE_SECONDS

        searches.until(first_is_left_alone, within=JOIN_WITHIN_SECONDS)
        assert first.server.stop() == 0
        before = second.calls() + third.calls()
        searches.until(lambda: second.calls() + third.calls() >= before + 20, within=30)

        query.check_alive()  # the same caller throughout, never restarted
    print(f"third replica's first call {joined_after:.1f}s after it joined the name")


def test_second_server_on_a_taken_port_exits_with_a_clear_error(
    embedder: servers.Server, logs_dir: Path
) -> None:
    log = logs_dir / "embedder-taken-port.log"
    second = servers.start_embedder(log, port=embedder.port, wait=False)
    assert second.process is not None
    assert second.process.wait(timeout=120) != 0
    assert f"cannot listen on 127.0.0.1:{embedder.port}" in second.log()
    assert "in use" in second.log()
