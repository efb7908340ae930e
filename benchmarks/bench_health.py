"""/healthz under load: 200 HTTP callers keep a search each in flight against the query service
(each sends its next search the moment the last one answers, 429 included), while a prober in
another process asks /healthz on a fresh connection every 100 ms, as compose and Kubernetes
probes do. Goal (issue #12): every /healthz within 100 ms; searches past `--max-searches` shed
with 429 rather than queue.

The same prober runs first against the idle service, the baseline in the same run.

    python -m benchmarks.bench_health [--callers 200] [--seconds 20] [--vectors 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import http.client
import logging
import multiprocessing
import statistics
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path

import aiohttp

from benchmarks.common import fill_photos, write_results
from devstack.servers import start_chroma, start_embedder, start_query
from embedder_service.client import EmbedderClient

QUIET = ("--log-level", "WARNING")
PROBE_EVERY = 0.1


def probe(host: str, port: int, seconds: float) -> list[float]:
    """/healthz on a fresh connection every PROBE_EVERY seconds for `seconds`; the seconds each
    took to answer 200 (a non-200 or a failure is an error: the backends are up)."""
    took = []
    ends = time.monotonic() + seconds
    while time.monotonic() < ends:
        started = time.perf_counter()
        conn = http.client.HTTPConnection(host, port, timeout=10)
        conn.request("GET", "/healthz")
        response = conn.getresponse()
        response.read()
        conn.close()
        took.append(time.perf_counter() - started)
        if response.status != 200:
            raise RuntimeError(f"/healthz answered {response.status}")
        time.sleep(max(0.0, PROBE_EVERY - took[-1]))
    return took


def _load(base: str, callers: int, seconds: float, out: Connection) -> None:
    """In a process of its own (its CPU is not the prober's): `callers` searches in flight for
    `seconds`; says "started" once the first answer came, then sends back the count of each
    HTTP status (0: the connection failed)."""

    async def run() -> collections.Counter[int]:
        codes: collections.Counter[int] = collections.Counter()
        ends = time.monotonic() + seconds
        connector = aiohttp.TCPConnector(limit=callers)
        async with aiohttp.ClientSession(connector=connector) as session:

            async def caller(n: int) -> None:
                i = 0
                while time.monotonic() < ends:
                    i += 1
                    # Distinct texts: the service's text cache never answers for the embedder.
                    params = {"q": f"a red top {n}-{i}", "k": "10"}
                    try:
                        async with session.get(f"{base}/api/search", params=params) as response:
                            await response.read()
                            status = response.status
                    except aiohttp.ClientError:
                        status = 0
                    if not codes:
                        out.send("started")
                    codes[status] += 1

            await asyncio.gather(*(caller(n) for n in range(callers)))
        return codes

    out.send(dict(asyncio.run(run())))


def under_load(
    base: str, host: str, port: int, callers: int, seconds: float
) -> tuple[list[float], dict[int, int]]:
    """Probe /healthz while `callers` searches are in flight (from their first answer on)."""
    receive, send = multiprocessing.Pipe(duplex=False)
    load = multiprocessing.get_context("spawn").Process(
        target=_load, args=(base, callers, seconds + 5, send)
    )
    load.start()
    send.close()  # the child's end now: a child that dies ends recv() with EOFError
    try:
        if not receive.poll(60) or receive.recv() != "started":
            raise RuntimeError("the load never got going")
        took = probe(host, port, seconds)
        codes: dict[int, int] = receive.recv()
        load.join(60)
    finally:
        if load.is_alive():
            load.terminate()
    return took, codes


def ms(values: list[float], q: int) -> str:
    return f"{statistics.quantiles(values, n=100, method='inclusive')[q - 1] * 1000:.1f}"


def row(name: str, took: list[float]) -> list[str]:
    return [
        name,
        str(len(took)),
        ms(took, 50),
        ms(took, 90),
        ms(took, 99),
        f"{max(took) * 1000:.1f}",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_health")
    parser.add_argument("--callers", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--vectors", type=int, default=2000)
    parser.add_argument("--max-searches", type=int, default=32)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    with (
        tempfile.TemporaryDirectory() as tmp,
        start_chroma(Path(tmp) / "chroma", Path(tmp) / "chroma.log") as chroma,
        start_embedder(Path(tmp) / "embedder.log", *QUIET) as embedder,
    ):
        with EmbedderClient(embedder.address) as client:
            fill_photos(chroma.http, client, args.vectors, "bench")
        with start_query(
            Path(tmp) / "query.log",
            embedder.address,
            chroma.http,
            "bench",
            *QUIET,
            "--max-searches",
            str(args.max_searches),
        ) as query:
            port = int(query.http.rsplit(":", 1)[1])
            idle = probe("127.0.0.1", port, min(args.seconds, 5.0))
            took, codes = under_load(query.http, "127.0.0.1", port, args.callers, args.seconds)
    total = sum(codes.values())
    searches = ", ".join(
        f"{code or 'connection failed'}: {count}" for code, count in sorted(codes.items())
    )
    worst = max(took) * 1000
    text = write_results(
        "health",
        "/healthz under load (query service, HTTP)",
        f"tiny model (fp32), {args.vectors} photo vectors, `--max-searches {args.max_searches}`, "
        f"{args.callers} HTTP callers each re-sending at once for {args.seconds:.0f} s; "
        f"/healthz on a fresh connection every {PROBE_EVERY * 1000:.0f} ms from another process",
        ["load", "probes", "p50 ms", "p90 ms", "p99 ms", "max ms"],
        [row("idle", idle), row(f"{args.callers} callers", took)],
        [
            f"Requests answered under load: {total} in {args.seconds + 5:.0f} s, "
            f"{codes.get(200, 0) / (args.seconds + 5):.0f} searches/s done (200), the rest "
            f"shed (by status {searches}).",
            f"Goal: /healthz within 100 ms at the worst: {'met' if worst <= 100 else 'NOT met'} "
            f"({worst:.0f} ms).",
        ],
    )
    print(text)


if __name__ == "__main__":
    main()
