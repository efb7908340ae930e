"""Watches the backends the query service needs (the embedder, ChromaDB) about once a second, so
that its health, gRPC and /healthz alike, answers at once from what was last seen and never
waits on a backend."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from fashionrag.errors import FashionragError

log = logging.getLogger(__name__)

CHECK_INTERVAL_SECONDS = 1.0
# A backend that is down refuses at once (the embedder's client fails fast); the timeout only
# catches one that neither answers nor refuses. Under a full load of searches a heartbeat waits
# its turn in ChromaDB for a second or more, which is busy, not down.
CHECK_TIMEOUT_SECONDS = 3.0
# The first check also loads ChromaDB's client library and connects, seconds on a busy machine.
FIRST_CHECK_TIMEOUT_SECONDS = 15.0


@dataclass(frozen=True)
class Backend:
    """A backend and how to check it: `check` blocks for at most about the check timeout and
    raises a FashionragError (Unavailable) that names the backend when it is down."""

    name: str
    check: Callable[[], None]


class BackendWatcher:
    """Checks every backend in turn, each in a thread of its own, and remembers what it saw.

    A check that is still running when the next is due (a backend that neither answers nor
    refuses) counts as down, and no second one is started beside it.

    Args:
        backends: what to check.
        on_change: awaited with whether every backend is up after the first round of checks,
            and whenever that changes (e.g. to set the gRPC health).
        interval: seconds between rounds of checks.
        timeout: how long a check may take before its backend counts as down.
    """

    def __init__(
        self,
        backends: Sequence[Backend],
        on_change: Callable[[bool], Awaitable[None]] | None = None,
        interval: float = CHECK_INTERVAL_SECONDS,
        timeout: float = CHECK_TIMEOUT_SECONDS,
    ) -> None:
        self.backends = list(backends)
        self.interval = interval
        self.timeout = timeout
        self._on_change = on_change
        # One thread per backend: checks block (gRPC's and ChromaDB's clients are synchronous),
        # and one backend that hangs must not hold up the check of another, nor any search.
        self._executor = ThreadPoolExecutor(len(self.backends), thread_name_prefix="health")
        self._running: dict[str, asyncio.Future[None]] = {}
        # What each backend down at the last check showed, by name. Replaced whole after each
        # round, never changed in place: another thread (/healthz's) reads it once and has a
        # consistent view.
        self.problems: dict[str, str] = {b.name: "not checked yet" for b in self.backends}
        self._reported: bool | None = None

    @property
    def healthy(self) -> bool:
        """Whether every backend was up at the last check."""
        return not self.problems

    def down(self) -> list[str]:
        """The names of the backends down at the last check."""
        return list(self.problems)

    def problem(self) -> str:
        """What is down, one clause per backend ("" when nothing is)."""
        return "; ".join(self.problems.values())

    async def check(self, timeout: float | None = None) -> None:
        """One round: check every backend at once, wait for them, or for `timeout` seconds
        (default: the watcher's)."""
        wait = self.timeout if timeout is None else timeout
        outcomes = await asyncio.gather(*(self._check(b, wait) for b in self.backends))
        first = self._reported is None
        # A new dict, not changes to the old: /healthz reads it from the HTTP front's thread.
        problems = dict(self.problems)
        for backend, problem in zip(self.backends, outcomes, strict=True):
            was_up = backend.name not in problems
            if problem is None:
                problems.pop(backend.name, None)
                if not (was_up or first):
                    log.info("%s is back", backend.name)
            else:
                problems[backend.name] = problem
                if was_up or first:
                    log.warning("%s is down: %s", backend.name, problem)
        self.problems = problems
        if self.healthy != self._reported:
            self._reported = self.healthy
            if self._on_change is not None:
                await self._on_change(self.healthy)

    async def _check(self, backend: Backend, timeout: float) -> str | None:
        running = self._running.get(backend.name)
        if running is None or running.done():
            running = asyncio.wrap_future(self._executor.submit(backend.check))
            # Read, so a check outlived by its timeout does not log "never retrieved".
            running.add_done_callback(lambda f: f.cancelled() or f.exception())
            self._running[backend.name] = running
        done, _ = await asyncio.wait({running}, timeout=timeout)
        if not done:
            return f"{backend.name} did not answer a health check within {timeout:g}s"
        exc = running.exception()
        if exc is None:
            return None
        if isinstance(exc, FashionragError):
            return str(exc)
        # A client's own failure (a malformed answer...) is that backend's problem, not ours.
        return f"{backend.name}: {type(exc).__name__}: {exc}"

    async def run(self) -> None:
        """Check every `interval` seconds until cancelled."""
        while True:
            await asyncio.sleep(self.interval)
            await self.check()

    def close(self) -> None:
        """Stop the checks' threads (a check in progress is not waited for)."""
        self._executor.shutdown(wait=False, cancel_futures=True)
