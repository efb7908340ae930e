"""The HTTP port's front door: a thread of its own accepts every connection and peeks at its first
bytes (without reading them) to serve health probes itself and hand everything else to the main
event loop.

Why: the JSON API, the gallery and the images run on the main event loop, which also serves gRPC.
Under a flood of searches (200 callers re-sending at once, most of them answered 429) one turn
of that loop takes a few hundred milliseconds, and a /healthz waiting its turn there would tell
a probe that a busy service is dead. On the front thread's own loop, /healthz waits only for
the GIL (bench_health measures it).

A connection whose request starts `GET /healthz` or `HEAD /healthz` is served by a small health
app on the front loop and closed after its answer; any other is handed to the main app, whose
aiohttp server reads the request as if it had accepted the socket itself (peeking left the bytes
where they were). A connection that says too little to tell within a second goes to the main
app (whose keep-alive timeout then bounds it: aiohttp closes a connection idle that long).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from collections.abc import Sequence
from concurrent.futures import Future
from typing import Any

from aiohttp import web

from query_service.http_errors import JsonErrorRunner

log = logging.getLogger(__name__)

# The starts of the requests the front serves itself (the path's end: a space or a query).
HEALTH_REQUESTS = (b"GET /healthz ", b"GET /healthz?", b"HEAD /healthz ", b"HEAD /healthz?")
PEEK_BYTES = max(len(start) for start in HEALTH_REQUESTS)
# A connection that has sent too few bytes to tell which it is: looked at again this often, and
# handed to the main app after UNDECIDED_SECONDS.
REPEEK_SECONDS = 0.01
UNDECIDED_SECONDS = 1.0
BACKLOG = 1024
# How long accepting pauses after the system refused a new connection (no file descriptors).
PAUSE = 1.0


def is_health_request(start: bytes) -> bool | None:
    """Whether a request beginning with `start` is a health probe; None while `start` is too
    short to tell."""
    if start.startswith(HEALTH_REQUESTS):
        return True
    if any(health.startswith(start) for health in HEALTH_REQUESTS):
        return None
    return False


def listen(host: str, port: int) -> list[socket.socket]:
    """Listening sockets on host:port, one per address the host resolves to (as asyncio's
    create_server: "localhost" is 127.0.0.1 and ::1); fails when the port is in use
    (SO_REUSEADDR only, never SO_REUSEPORT: a second server must not silently share the port).
    """
    seen: set[tuple[int, tuple[Any, ...]]] = set()
    socks: list[socket.socket] = []
    try:
        for family, kind, proto, _, address in socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        ):
            if (family, address) in seen:
                continue
            seen.add((family, address))
            sock = socket.socket(family, kind, proto)
            socks.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:  # "::" is IPv6 only; 0.0.0.0 gets its own socket
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
            sock.listen(BACKLOG)
            sock.setblocking(False)
    except BaseException:
        for sock in socks:
            sock.close()
        raise
    return socks


class HttpFront:
    """Accepts the connections of the listening sockets on a thread of its own; serves health
    probes with `health` there, hands the rest to `main` (aiohttp's server, a protocol factory)
    on `main_loop`.

    Args:
        socks: the listening sockets (see listen()); the front closes them when it stops.
        main: the main app's server, `runner.server` of its (already set up) runner.
        main_loop: the loop `main` serves on.
        health: the app that answers the probes (its routes are only the probes').
    """

    def __init__(
        self,
        socks: Sequence[socket.socket],
        main: web.Server,
        main_loop: asyncio.AbstractEventLoop,
        health: web.Application,
    ) -> None:
        self._socks = list(socks)
        self._main = main
        self._main_loop = main_loop
        self._health_runner = JsonErrorRunner(health, access_log=None)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="http-front", daemon=True)
        self._ready: Future[None] = Future()
        # Connections accepted and not yet routed (closed if the front stops first).
        self._undecided: set[socket.socket] = set()

    @property
    def port(self) -> int:
        """The port listened on (the first socket's, where port 0 asked for any)."""
        return int(self._socks[0].getsockname()[1])

    def start(self) -> None:
        """Start accepting; returns once the front is serving (or raises why it could not)."""
        self._thread.start()
        self._ready.result()

    def stop(self) -> None:
        """Stop accepting and close the probes' connections; the main app's connections are the
        main runner's to close. Blocks until the front's thread has ended."""
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._health_runner.setup())
            for sock in self._socks:
                self._loop.add_reader(sock, self._accept, sock)
        except BaseException as exc:
            self._close()
            self._ready.set_exception(exc)
            return
        self._ready.set_result(None)
        try:
            self._loop.run_forever()
        finally:
            self._close()

    def _close(self) -> None:
        for sock in self._socks:
            self._loop.remove_reader(sock)
            sock.close()
        for conn in self._undecided:
            self._loop.remove_reader(conn)
            conn.close()
        self._undecided.clear()
        self._loop.run_until_complete(self._health_runner.cleanup())
        self._loop.close()

    def _accept(self, sock: socket.socket) -> None:
        # Level-triggered: take every connection waiting now, one wake-up for a burst.
        while True:
            try:
                conn, _ = sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionAbortedError:  # gone before it was taken: take the next
                continue
            except OSError as exc:
                # Out of file descriptors or memory: the connections stay in the backlog, and a
                # reader left in place would fire at once, forever. Pause, as asyncio does.
                log.warning("HTTP accept failed (%s); accepting again in %.0f s", exc, PAUSE)
                self._loop.remove_reader(sock)
                self._loop.call_later(PAUSE, self._loop.add_reader, sock, self._accept, sock)
                return
            conn.setblocking(False)
            self._undecided.add(conn)
            self._look(conn, self._loop.time() + UNDECIDED_SECONDS)

    def _look(self, conn: socket.socket, give_up_at: float) -> None:
        """Peek at what `conn` has sent: route it, or look again when there is more."""
        if conn not in self._undecided:  # closed by stop() meanwhile
            return
        try:
            start = conn.recv(PEEK_BYTES, socket.MSG_PEEK)
        except (BlockingIOError, InterruptedError):
            start = None  # nothing yet
        except OSError:
            start = b""
        if start == b"":  # closed (or failed) before a word
            self._undecided.discard(conn)
            conn.close()
            return
        health = None if start is None else is_health_request(start)
        if health is None and self._loop.time() < give_up_at:
            self._look_again(conn, give_up_at, readable_now=start is not None)
            return
        self._undecided.discard(conn)
        if health:
            self._loop.create_task(self._serve(conn, self._health_runner.server))
        else:
            handed = asyncio.run_coroutine_threadsafe(
                self._serve(conn, self._main), self._main_loop
            )
            handed.add_done_callback(lambda done: self._handed(done, conn))

    def _look_again(self, conn: socket.socket, give_up_at: float, readable_now: bool) -> None:
        """Look at `conn` again when it has sent more, or at `give_up_at` at the latest."""
        if readable_now:  # part of a request line: a reader would fire at once, so wait a bit
            self._loop.call_later(REPEEK_SECONDS, self._look, conn, give_up_at)
            return

        def readable_or_late() -> None:
            self._loop.remove_reader(conn)
            late.cancel()
            self._look(conn, give_up_at)

        late = self._loop.call_at(give_up_at, readable_or_late)
        self._loop.add_reader(conn, readable_or_late)

    @staticmethod
    def _handed(done: Future[None], conn: socket.socket) -> None:
        """After a hand-over to the main loop: anything but success closes the connection."""
        if done.cancelled() or done.exception() is not None:
            log.warning(
                "HTTP connection not served: %r", None if done.cancelled() else done.exception()
            )
            conn.close()

    @staticmethod
    async def _serve(conn: socket.socket, server: web.Server | None) -> None:
        """Let `server` serve `conn` on the running loop, as if it had accepted it."""
        assert server is not None, "the runner is set up before the front starts"
        try:
            await asyncio.get_running_loop().connect_accepted_socket(server, conn)
        except OSError as exc:  # gone before it was served
            log.debug("HTTP connection lost before it was served: %s", exc)
            conn.close()
