"""Keeping image work to its share of the embedder: a budget of pixels being decoded at once, a
lower CPU priority for the decode threads, and memory handed back to the system after large
images."""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
import os
import sys
import threading
from collections import deque
from collections.abc import Callable

log = logging.getLogger(__name__)


class PixelBudget:
    """An asyncio semaphore counted in pixels: `acquire(n)` waits until the pixels held plus `n`
    fit in `limit`, first come first served, so a burst of large images decodes a few at a time
    while small ones pass as before. An image larger than the whole budget still runs, alone.

    Args:
        limit: the most pixels held at once.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._held = 0
        self._waiters: deque[tuple[int, asyncio.Future[None]]] = deque()

    @property
    def held(self) -> int:
        """Pixels acquired and not yet released."""
        return self._held

    def _fits(self, pixels: int) -> bool:
        return self._held == 0 or self._held + pixels <= self.limit

    async def acquire(self, pixels: int) -> None:
        """Wait for `pixels` of the budget; a caller cancelled while waiting takes nothing."""
        if not self._waiters and self._fits(pixels):
            self._held += pixels
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (pixels, waiter)
        self._waiters.append(entry)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release(pixels)  # granted just as the caller went away
            else:
                self._waiters.remove(entry)
                self._wake()  # the head may have been what held the others back
            raise

    def release(self, pixels: int) -> None:
        """Give back `pixels` acquired before, and let the waiters that now fit go, in order."""
        self._held -= pixels
        self._wake()

    def _wake(self) -> None:
        while self._waiters and self._fits(self._waiters[0][0]):
            pixels, waiter = self._waiters.popleft()
            if waiter.done():
                continue
            self._held += pixels
            waiter.set_result(None)


def lower_thread_priority(increment: int) -> Callable[[], None]:
    """A thread-pool initializer that raises its thread's nice value by `increment`.

    On Linux the nice value belongs to each thread, so the decode threads can yield the cores to
    the model thread (and to torch's threads, which it starts) whenever both want them, and still
    have every core when nothing else runs. Raising one's own nice value needs no privilege.
    Elsewhere (where it would lower the whole process) it does nothing.
    """

    def initializer() -> None:
        if increment <= 0 or sys.platform != "linux":
            return
        tid = threading.get_native_id()
        try:
            os.setpriority(os.PRIO_PROCESS, tid, os.getpriority(os.PRIO_PROCESS, tid) + increment)
        except OSError as exc:
            log.warning("cannot lower the priority of decode thread %d: %s", tid, exc)

    return initializer


def _malloc_trim() -> Callable[[int], int] | None:
    if sys.platform != "linux":
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim: Callable[[int], int] = libc.malloc_trim
    except (OSError, AttributeError):  # not glibc (musl has no malloc_trim)
        return None
    return trim


_TRIM = _malloc_trim()


def trim_heap() -> bool:
    """Hand the C heap's free pages back to the system (glibc's malloc_trim); False where there
    is no such call.

    A large image's pixels are freed after its decode, but glibc keeps freed memory in its arenas
    (one per thread that allocated) for reuse, and after a few large frees it stops using mmap
    for blocks of that size at all: without a trim, a burst of large images leaves the process
    hundreds of MB larger for good.
    """
    if _TRIM is None:
        return False
    _TRIM(0)
    return True
