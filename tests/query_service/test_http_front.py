"""The HTTP front door (query_service.http_front): /healthz answers on the front's own thread even
while the main event loop is stuck, and every other request still reaches the main app, however
its bytes arrive. Real sockets and real aiohttp servers, in this process."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import httpx
import pytest
from aiohttp import web

from devstack.ports import free_port
from query_service.backends import Backend, BackendWatcher
from query_service.http import BACKENDS, HttpServing, start_http
from query_service.http_errors import errors_to_json
from query_service.http_front import UNDECIDED_SECONDS, is_health_request, listen


@pytest.mark.parametrize(
    ("start", "expected"),
    [
        (b"GET /healthz HTTP/1.1\r\n", True),
        (b"GET /healthz?verbose=1 HTTP/1.1", True),
        (b"HEAD /healthz HTTP/1.1", True),
        (b"GET /healthzz HTTP/1.1", False),
        (b"GET /api/search?q=x", False),
        (b"POST /healthz HTTP/1.1", False),
        (b"GET /heal", None),
        (b"G", None),
        (b"", None),
    ],
)
def test_a_request_is_told_by_its_first_bytes(start: bytes, expected: bool | None) -> None:
    assert is_health_request(start) is expected


@dataclass
class Front:
    url: str
    port: int
    loop: asyncio.AbstractEventLoop

    def block_main_loop(self) -> threading.Event:
        """Stick the main loop (as a flood of requests would) until the returned event is set."""
        release = threading.Event()
        stuck = threading.Event()

        def stick() -> None:
            stuck.set()
            release.wait(30)

        self.loop.call_soon_threadsafe(stick)
        assert stuck.wait(5)
        return release


async def ping(request: web.Request) -> web.Response:
    return web.json_response({"pong": True})


async def main_healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "from the main app"})


@pytest.fixture
def front() -> Iterator[Front]:
    """A main app (ping, and a /healthz of its own that the front should never let a GET reach)
    served by start_http on a loop in a thread of its own, as the query service's."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    backends = BackendWatcher([Backend("fake", lambda: None)])

    async def serve() -> HttpServing:
        await backends.check()
        app = web.Application(middlewares=[errors_to_json])
        app.router.add_get("/api/ping", ping)
        app.router.add_get("/healthz", main_healthz)  # as the real one: GET never gets here
        app[BACKENDS] = backends
        return await start_http(app, "127.0.0.1", 0)

    serving = asyncio.run_coroutine_threadsafe(serve(), loop).result(10)
    port = serving.front.port
    yield Front(f"http://127.0.0.1:{port}", port, loop)
    asyncio.run_coroutine_threadsafe(serving.cleanup(), loop).result(10)
    backends.close()
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)
    loop.close()


def test_healthz_answers_while_the_main_loop_is_stuck(front: Front) -> None:
    release = front.block_main_loop()
    with ThreadPoolExecutor(1) as pool:
        try:
            api = pool.submit(httpx.get, f"{front.url}/api/ping", timeout=30)
            health = httpx.get(f"{front.url}/healthz", timeout=10)
            # Answered by the front while the main app's request still waits for the loop.
            assert health.status_code == 200
            assert health.json() == {"status": "ok"}
            assert not api.done()
        finally:
            release.set()
        assert api.result().json() == {"pong": True}


def test_a_probe_gets_the_main_apps_headers_and_its_connection_closes(front: Front) -> None:
    with httpx.Client() as client:
        response = client.get(f"{front.url}/healthz")
        assert response.headers["connection"] == "close"
        assert response.headers["x-content-type-options"] == "nosniff"
        assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
        # The client opens a new connection for the next request, and the main app answers it.
        assert client.get(f"{front.url}/api/ping").json() == {"pong": True}
    assert httpx.head(f"{front.url}/healthz").status_code == 200
    assert httpx.get(f"{front.url}/healthz?x=1").status_code == 200


def test_other_paths_and_methods_go_to_the_main_app(front: Front) -> None:
    release = front.block_main_loop()
    with ThreadPoolExecutor(2) as pool:
        try:
            near_miss = pool.submit(httpx.get, f"{front.url}/healthzz", timeout=30)
            post = pool.submit(httpx.post, f"{front.url}/healthz", timeout=30)
            time.sleep(0.3)
            assert not near_miss.done() and not post.done()  # waiting for the main loop
        finally:
            release.set()
        assert near_miss.result().status_code == 404
        assert near_miss.result().json()["reason"] == "NOT_FOUND"
        assert post.result().status_code == 405


def raw_request(port: int, *parts: bytes, pause: float = 0.0) -> bytes:
    """Send `parts` with `pause` seconds between them; the whole answer (the server closes)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        for i, part in enumerate(parts):
            if i:
                time.sleep(pause)
            sock.sendall(part)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_a_request_line_in_pieces_is_still_routed(front: Front) -> None:
    health = raw_request(front.port, b"GET /hea", b"lthz HTTP/1.1\r\nHost: x\r\n\r\n", pause=0.1)
    assert health.startswith(b"HTTP/1.1 200") and b'"status": "ok"' in health
    api = raw_request(
        front.port,
        b"GET /api/p",
        b"ing HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        pause=0.1,
    )
    assert api.startswith(b"HTTP/1.1 200") and b'"pong": true' in api


def test_a_silent_connection_goes_to_the_main_app_in_the_end(front: Front) -> None:
    # Nothing sent for longer than the front waits: handed over, and served when it speaks.
    api = raw_request(
        front.port,
        b"",
        b"GET /api/ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        pause=UNDECIDED_SECONDS + 0.3,
    )
    assert api.startswith(b"HTTP/1.1 200") and b'"pong": true' in api


def test_a_port_in_use_is_refused(front: Front) -> None:
    with pytest.raises(OSError, match="in use"):
        listen("127.0.0.1", front.port)


def test_every_address_of_the_host_is_listened_on() -> None:
    port = free_port()
    resolved = {
        (family, str(address[0]))
        for family, _, _, _, address in socket.getaddrinfo(
            "localhost", port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    }
    socks = listen("localhost", port)
    try:
        assert {(s.family, s.getsockname()[0]) for s in socks} == resolved
        for _, host in resolved:
            with socket.create_connection((host, port), timeout=5):
                pass  # accepted into the backlog: something listens there
    finally:
        for sock in socks:
            sock.close()
