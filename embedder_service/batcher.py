"""Dynamic batching: requests from concurrent callers that arrive within a short window run as
one forward pass, up to a batch size; a lone caller does not wait for company; a bounded queue
refuses work past its limit at once.

One batcher per kind of input (texts, images), each with a single worker task, so at most one
batch per kind waits on the model while the next one fills up.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from embedder_service.metrics import EmbedderMetrics
from fashionrag.errors import ResourceExhausted

log = logging.getLogger(__name__)

In = TypeVar("In")
Out = TypeVar("Out")


@dataclass
class _Pending(Generic[In, Out]):
    items: list[In]
    future: asyncio.Future[list[Out]]
    # Whether it arrived while a batch of its kind ran: another caller was there.
    behind_a_batch: bool = False
    enqueued: float = field(default_factory=time.perf_counter)


class DynamicBatcher(Generic[In, Out]):
    """Collects items from concurrent `submit` calls into batches for `run_batch`.

    Args:
        kind: "texts" or "images", for logs and metrics.
        run_batch: the blocking model call, given the items and whether they have company
            (concurrent callers: more than one request, or one that came while a batch of its
            kind ran, in this batch or the one before); one output per input, in order.
        executor: where `run_batch` runs (off the event loop).
        max_batch_size: the most items in one call of `run_batch`.
        max_delay_s: how long the first item of a batch waits for company, counted from its
            arrival (not at all when the last batch was one request and no other is queued: a
            lone caller).
        lone_waits: a lone caller waits the whole `max_delay_s` too (a fixed window).
        max_queue: the most items waiting; past it `submit` raises ResourceExhausted.
        metrics: where batch sizes and queue depth are recorded.
    """

    def __init__(
        self,
        kind: str,
        run_batch: Callable[[list[In], bool], Sequence[Out]],
        executor: Executor,
        *,
        max_batch_size: int,
        max_delay_s: float,
        max_queue: int,
        lone_waits: bool = False,
        metrics: EmbedderMetrics,
    ) -> None:
        self.kind = kind
        self._run_batch = run_batch
        self._executor = executor
        self.max_batch_size = max_batch_size
        self.max_delay_s = max_delay_s
        self.lone_waits = lone_waits
        self.max_queue = max_queue
        self._metrics = metrics
        self._queue: asyncio.Queue[_Pending[In, Out]] = asyncio.Queue()
        self._queued_items = 0
        self._worker: asyncio.Task[None] | None = None
        self._running = False  # a batch is with the model now
        # Whether the last batch run saw other callers (see `_work`).
        self._saw_others = False
        # Whether the last batch held more than one request: only then does the next one wait
        # for more. Nothing has come yet: wait, as for a burst.
        self._last_shared = True

    @property
    def queued_items(self) -> int:
        """Items submitted and not yet taken into a batch."""
        return self._queued_items

    def start(self) -> None:
        """Start the worker task (on the running event loop)."""
        if self._worker is None:
            self._worker = asyncio.get_running_loop().create_task(self._work())

    async def stop(self) -> None:
        """Stop the worker; work still queued is cancelled."""
        if self._worker is not None:
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)
            self._worker = None

    async def submit(self, items: list[In]) -> list[Out]:
        """Queue `items` and wait for their outputs, in order.

        If the caller goes away (cancelled, deadline passed) before its batch starts, its items
        are dropped from the batch: no model work for callers who gave up.

        Raises:
            ResourceExhausted: the queue holds too many items already.
        """
        if self._queued_items + len(items) > self.max_queue:
            raise ResourceExhausted(
                f"the {self.kind} queue is full ({self._queued_items} items waiting, at most "
                f"{self.max_queue}); retry with backoff",
                reason="QUEUE_FULL",
                metadata={"queue": self.kind, "max_queue": str(self.max_queue)},
            )
        self.start()
        future: asyncio.Future[list[Out]] = asyncio.get_running_loop().create_future()
        self._queued_items += len(items)
        self._metrics.queue_depth.labels(self.kind).set(self._queued_items)
        self._queue.put_nowait(_Pending(items, future, behind_a_batch=self._running))
        return await future

    async def _collect(self) -> list[_Pending[In, Out]]:
        first = await self._queue.get()
        batch = [first]
        size = len(first.items)
        # A lone caller (its last batch had no company, and none is queued now) runs at once:
        # the window would cost each of its requests the whole delay for company that does not
        # come. Concurrent callers keep the window, which keeps their batches full.
        lone = not (self.lone_waits or self._last_shared) and self._queue.empty()
        window = 0.0 if lone else self.max_delay_s
        # The window counts from the first request's arrival: one that already waited out a
        # busy model's pass does not wait again, and the requests queued meanwhile are its
        # company. With eight callers the model is the busy part, and idling it for a window
        # after every pass cost 8 % of their searches (bf16, 116 against 125 a second). The
        # same holds when the first request's caller has given up (`_work` drops it): the
        # requests behind it came later still.
        deadline = first.enqueued + window
        while size < self.max_batch_size:
            timeout = deadline - time.perf_counter()
            if timeout <= 0 and self._queue.empty():
                break
            try:
                pending = (
                    self._queue.get_nowait()
                    if timeout <= 0
                    else await asyncio.wait_for(self._queue.get(), timeout)
                )
            except (TimeoutError, asyncio.QueueEmpty):
                break
            batch.append(pending)
            size += len(pending.items)
        self._queued_items -= size
        self._metrics.queue_depth.labels(self.kind).set(self._queued_items)
        self._last_shared = len(batch) > 1
        return batch

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [p for p in await self._collect() if not p.future.done()]
            started = time.perf_counter()
            for p in batch:
                self._metrics.queue_wait.labels(self.kind).observe(started - p.enqueued)
            items = [item for p in batch for item in p.items]
            if not items:
                continue
            # Company: other callers are about, whose other work may share the cores. A batch
            # sees them when it holds more than one request or one that came while a batch ran;
            # under eight callers a request now and then also finds the model idle and runs
            # alone, so one batch after another that saw them counts too.
            saw_others = len(batch) > 1 or any(p.behind_a_batch for p in batch)
            company, self._saw_others = saw_others or self._saw_others, saw_others
            outputs: list[Out] = []
            self._running = True
            try:
                for start in range(0, len(items), self.max_batch_size):
                    chunk = items[start : start + self.max_batch_size]
                    self._metrics.batch_size.labels(self.kind).observe(len(chunk))
                    outputs.extend(
                        await loop.run_in_executor(self._executor, self._run_batch, chunk, company)
                    )
            except Exception as exc:
                log.exception("%s batch of %d items failed", self.kind, len(items))
                for p in batch:
                    if not p.future.done():
                        p.future.set_exception(exc)
                continue
            finally:
                self._running = False
            self._metrics.items.labels(self.kind).inc(len(items))
            offset = 0
            for p in batch:
                if not p.future.done():
                    p.future.set_result(outputs[offset : offset + len(p.items)])
                offset += len(p.items)
