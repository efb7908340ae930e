"""Admission of searches: each runs in a thread of the searches' own pool, at most so many at
once; past that a search is refused at once (RESOURCE_EXHAUSTED, HTTP 429) instead of queueing
without bound behind the others."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import ParamSpec, TypeVar

from fashionrag.errors import ResourceExhausted

P = ParamSpec("P")
R = TypeVar("R")


class SearchGate:
    """Runs blocking searches off the event loop, at most `limit` at once, shared by the gRPC
    and HTTP sides.

    A search counts until its thread is done, even when its caller gave up first (a deadline,
    a closed connection): the thread still holds its place in the embedder's and ChromaDB's
    queues until its own deadline ends it.

    Args:
        limit: the most searches in flight.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        # A thread for every admitted search, so no admitted search waits for a thread: a search
        # spends its time waiting on the embedder and ChromaDB (the GIL released), so threads,
        # not cores, decide how many wait at once. Nothing else runs here: the health checks
        # and the image lookups have threads of their own and never queue behind searches.
        self._executor = ThreadPoolExecutor(limit, thread_name_prefix="search")
        self._lock = threading.Lock()
        self._in_flight = 0

    @property
    def in_flight(self) -> int:
        """How many searches are running now."""
        return self._in_flight

    async def run(self, search: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
        """Run `search(*args, **kwargs)` in a thread and await its result.

        Raises:
            ResourceExhausted: `limit` searches are in flight already.
        """
        with self._lock:
            if self._in_flight >= self.limit:
                raise ResourceExhausted(
                    f"too many searches in flight ({self.limit}); retry with backoff"
                )
            self._in_flight += 1
        try:
            future = self._executor.submit(search, *args, **kwargs)
        except BaseException:
            self._release(None)
            raise
        future.add_done_callback(self._release)
        return await asyncio.wrap_future(future)

    def _release(self, _: Future[R] | None) -> None:
        with self._lock:
            self._in_flight -= 1

    def close(self) -> None:
        """Stop the threads once the searches in flight are done."""
        self._executor.shutdown(wait=False, cancel_futures=True)
