"""A small stage runner: items from a source flow through stages of threads joined by bounded
queues, so the stages overlap while memory stays flat however long the source."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

_DONE = object()  # end of a queue: one per thread of the stage that reads it

# How often the calling thread wakes from waiting on a queue or a thread. A signal may reach the
# process through any thread, and Python runs its handler (Ctrl-C) only once the main thread
# runs again: a thread blocked on a lock with no timeout would sit on a second Ctrl-C until the
# next batch moves.
_WAKE_SECONDS = 0.1


@dataclass(frozen=True)
class Stage:
    """One step: `fn` turns an item into the next stage's item, in `threads` threads at once.

    What the last stage returns is dropped: it is the sink. With more than one thread, items
    leave a stage in the order they finish, not the order they came.
    """

    name: str
    fn: Callable[[Any], Any]
    threads: int = 1


class StageRunner:
    """Runs the items of a source through stages.

    The source is read in the calling thread; each stage has its own threads and a queue of
    `queue_size` items in front of it, so a slow stage holds back the ones before it instead of
    piling items up. Setting `stop` stops reading the source; what was read still goes through
    every stage (a flush). The first error of any stage is fatal: the source is no longer read,
    the items in flight are dropped, and `run` raises that error once every thread is done. A
    KeyboardInterrupt in the calling thread (a second Ctrl-C) aborts: `run` raises it at once,
    without waiting for the stages. `busy_seconds` says how long each stage (and "read", the
    source) worked, summed over its threads and not counting waits on its queues: the stage
    nearest to fully busy holds the others back.

    Args:
        stages: the stages, in order; at least one.
        queue_size: the most items waiting in front of each stage.
        stop: set it (e.g. on Ctrl-C) to stop reading and flush what is in flight.
        failed: set when the first error comes, so that work in flight elsewhere (a retry
            waiting out an outage) can give up at once.
    """

    def __init__(
        self,
        stages: Sequence[Stage],
        *,
        queue_size: int = 4,
        stop: threading.Event | None = None,
        failed: threading.Event | None = None,
    ) -> None:
        if not stages:
            raise ValueError("a stage runner needs at least one stage")
        if queue_size < 1:
            raise ValueError("queue_size must be at least 1")
        self.stages = list(stages)
        self.queue_size = queue_size
        self.stop = stop or threading.Event()
        self.failed = failed or threading.Event()
        self._error: BaseException | None = None
        self._error_lock = threading.Lock()
        self._busy_lock = threading.Lock()
        self.busy_seconds: dict[str, float] = {"read": 0.0, **{s.name: 0.0 for s in self.stages}}

    @property
    def error(self) -> BaseException | None:
        """The first error of a stage, once one failed."""
        return self._error

    def run(self, source: Iterable[Any]) -> None:
        """Feed every item of `source` (until `stop`) through the stages; return when all is done.

        Raises:
            The first error a stage raised, after every thread has finished.
        """
        queues: list[queue.Queue[Any]] = [queue.Queue(maxsize=self.queue_size) for _ in self.stages]
        outputs: list[queue.Queue[Any] | None] = [*queues[1:], None]
        threads = [
            [
                threading.Thread(
                    target=self._work,
                    args=(stage, inbox, outbox),
                    name=f"{stage.name}-{i}",
                    daemon=True,
                )
                for i in range(stage.threads)
            ]
            for stage, inbox, outbox in zip(self.stages, queues, outputs, strict=True)
        ]
        for group in threads:
            for thread in group:
                thread.start()
        try:
            self._read(source, queues[0])
        except Exception:
            self._close(queues, threads)
            raise
        except BaseException as exc:
            # An abort (KeyboardInterrupt: a second Ctrl-C) finishes nothing: the stages are
            # told to give up, and nobody waits for them (their threads are daemons).
            self._fail(exc)
            raise
        self._close(queues, threads)
        if self._error is not None:
            raise self._error

    def _busy(self, name: str, seconds: float) -> None:
        with self._busy_lock:
            self.busy_seconds[name] += seconds

    def _close(self, queues: list[queue.Queue[Any]], threads: list[list[threading.Thread]]) -> None:
        # Close each stage only once the one before it is done, so nothing is left behind. An
        # abort while waiting here leaves at once, as above.
        try:
            for stage, inbox, group in zip(self.stages, queues, threads, strict=True):
                for _ in range(stage.threads):
                    _put(inbox, _DONE)
                for thread in group:
                    while thread.is_alive():
                        thread.join(_WAKE_SECONDS)
        except BaseException as exc:
            self._fail(exc)
            raise

    def _read(self, source: Iterable[Any], inbox: queue.Queue[Any]) -> None:
        started = time.perf_counter()
        for item in source:
            self._busy("read", time.perf_counter() - started)
            if self._error is not None:
                return
            if self.stop.is_set():
                log.warning("stopping: no more items are read; finishing those in flight")
                return
            # Never blocks for good: after a fatal error every stage still drains its queue.
            _put(inbox, item)
            started = time.perf_counter()

    def _work(self, stage: Stage, inbox: queue.Queue[Any], outbox: queue.Queue[Any] | None) -> None:
        while (item := inbox.get()) is not _DONE:
            if self._error is not None:
                continue  # drain: the run is failing, and the stage before must not block
            started = time.perf_counter()
            try:
                result = stage.fn(item)
            except BaseException as exc:
                log.error("stage %s failed: %s", stage.name, exc)
                self._fail(exc)
                continue
            finally:
                self._busy(stage.name, time.perf_counter() - started)
            if outbox is not None:
                outbox.put(result)

    def _fail(self, exc: BaseException) -> None:
        with self._error_lock:
            if self._error is None:
                self._error = exc
        self.failed.set()


def _put(inbox: queue.Queue[Any], item: Any) -> None:
    """Put `item` in a bounded queue, waking now and then so that signals are handled."""
    while True:
        try:
            inbox.put(item, timeout=_WAKE_SECONDS)
            return
        except queue.Full:
            continue
