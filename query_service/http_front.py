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
app, which has its own timeouts for slow clients.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from concurrent.futures import Future

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


def is_health_request(start: bytes) -> bool | None:
    """Whether a request beginning with `start` is a health probe; None while `start` is too
    short to tell."""
    if start.startswith(HEALTH_REQUESTS):
        return True
    if any(health.startswith(start) for health in HEALTH_REQUESTS):
        return None
    return False


def listen(host: str, port: int) -> socket.socket:
    """A listening socket on host:port; fails when the port is in use (SO_REUSEADDR only, never
    SO_REUSEPORT: a second server must not silently share the port)."""
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(BACKLOG)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


class HttpFront:
    """Accepts the connections of one listening socket on a thread of its own; serves health
    probes with `health` there, hands the rest to `main` (aiohttp's server, a protocol factory)
    on `main_loop`.

    Args:
        sock: the listening socket (see listen()).
        main: the main app's server, `runner.server` of its (already set up) runner.
        main_loop: the loop `main` serves on.
        health: the app that answers the probes (its routes are only the probes').
    """

    def __init__(
        self,
        sock: socket.socket,
        main: web.Server,
        main_loop: asyncio.AbstractEventLoop,
        health: web.Application,
    ) -> None:
        self._sock = sock
        self._main = main
        self._main_loop = main_loop
        self._health_runner = JsonErrorRunner(health, access_log=None)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="http-front", daemon=True)
        self._ready: Future[None] = Future()

    def start(self) -> None:
        """Start accepting; returns once the front is serving (or raises why it could not)."""
        self._thread.start()
        self._ready.result()

    def stop(self) -> None:
        """Stop accepting and close the probes' connections; the main app's connections are the
        main runner's to close."""
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._health_runner.setup())
            self._loop.add_reader(self._sock, self._accept)
        except BaseException as exc:
            self._ready.set_exception(exc)
            return
        self._ready.set_result(None)
        try:
            self._loop.run_forever()
        finally:
            self._loop.remove_reader(self._sock)
            self._sock.close()
            self._loop.run_until_complete(self._health_runner.cleanup())
            self._loop.close()

    def _accept(self) -> None:
        # Level-triggered: take every connection waiting now, one wake-up for a burst.
        while True:
            try:
                conn, _ = self._sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # out of file descriptors and the like: try again later
                log.warning("HTTP accept failed: %s", exc)
                return
            conn.setblocking(False)
            self._look(conn, self._loop.time() + UNDECIDED_SECONDS)

    def _look(self, conn: socket.socket, give_up_at: float) -> None:
        """Peek at what `conn` has sent: route it, or look again when there is more."""
        try:
            start = conn.recv(PEEK_BYTES, socket.MSG_PEEK)
        except (BlockingIOError, InterruptedError):
            start = None  # nothing yet
        except OSError:
            conn.close()
            return
        if start == b"":  # closed before a word
            conn.close()
            return
        health = None if start is None else is_health_request(start)
        if health is None and self._loop.time() < give_up_at:
            self._look_again(conn, give_up_at, readable_now=start is not None)
        elif health:
            self._loop.create_task(self._serve(conn, self._health_runner.server))
        else:
            asyncio.run_coroutine_threadsafe(self._serve(conn, self._main), self._main_loop)

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
    async def _serve(conn: socket.socket, server: web.Server | None) -> None:
        """Let `server` serve `conn` on the running loop, as if it had accepted it."""
        assert server is not None, "the runner is set up before the front starts"
        try:
            await asyncio.get_running_loop().connect_accepted_socket(server, conn)
        except OSError as exc:  # gone before it was served
            log.debug("HTTP connection lost before it was served: %s", exc)
            conn.close()
