"""The dynamic batcher, on a plain function instead of a model."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from embedder_service.batcher import DynamicBatcher
from embedder_service.metrics import EmbedderMetrics
from fashionrag.errors import ResourceExhausted


class Recorder:
    """Doubles its inputs and remembers every batch it was given, whether it had company, and
    when each ran."""

    def __init__(self, delay: float = 0.0, fail_on: int | None = None) -> None:
        self.batches: list[list[int]] = []
        self.spans: list[tuple[float, float]] = []
        self.company: list[bool] = []
        self.delay = delay
        self.fail_on = fail_on
        self.lock = threading.Lock()

    def __call__(self, items: list[int], company: bool) -> list[int]:
        started = time.perf_counter()
        with self.lock:
            self.batches.append(list(items))
            self.company.append(company)
        if self.fail_on is not None and self.fail_on in items:
            raise RuntimeError("boom")
        time.sleep(self.delay)
        self.spans.append((started, time.perf_counter()))
        return [2 * i for i in items]

    def idle_after_first(self) -> float:
        """Seconds from the end of the first batch to the start of the second."""
        (_, freed), (started, _) = self.spans
        return started - freed


def batcher(run: Recorder, lone_waits: bool = False, **kw: float) -> DynamicBatcher[int, int]:
    settings = {"max_batch_size": 8, "max_delay_s": 0.05, "max_queue": 100}
    settings.update(kw)
    return DynamicBatcher(
        "texts",
        run,
        ThreadPoolExecutor(1),
        max_batch_size=int(settings["max_batch_size"]),
        max_delay_s=settings["max_delay_s"],
        max_queue=int(settings["max_queue"]),
        lone_waits=lone_waits,
        metrics=EmbedderMetrics(),
    )


def test_concurrent_requests_share_one_batch_and_get_their_own_outputs() -> None:
    run = Recorder()

    async def main() -> list[list[int]]:
        b = batcher(run)
        try:
            return await asyncio.gather(*(b.submit([i, i + 100]) for i in range(3)))
        finally:
            await b.stop()

    assert asyncio.run(main()) == [[0, 200], [2, 202], [4, 204]]
    assert run.batches == [[0, 100, 1, 101, 2, 102]]


def test_batches_never_exceed_the_batch_size() -> None:
    run = Recorder()

    async def main() -> list[list[int]]:
        b = batcher(run, max_batch_size=4)
        try:
            return await asyncio.gather(*(b.submit([i] * 3) for i in range(5)))
        finally:
            await b.stop()

    assert asyncio.run(main()) == [[2 * i] * 3 for i in range(5)]
    assert max(len(batch) for batch in run.batches) <= 4
    assert sum(len(batch) for batch in run.batches) == 15


def test_zero_delay_runs_what_is_queued_and_waits_for_no_one() -> None:
    run = Recorder()

    async def main() -> list[list[int]]:
        b = batcher(run, max_delay_s=0)
        try:
            # Both are queued before the worker first runs: they are what is there.
            together = await asyncio.gather(b.submit([1]), b.submit([2]))
            # Alone, with nothing more ever coming; the timeout only keeps a hang from
            # stalling the suite.
            alone = await asyncio.wait_for(b.submit([3]), timeout=30)
            return [*together, alone]
        finally:
            await b.stop()

    assert asyncio.run(main()) == [[2], [4], [6]]
    assert run.batches == [[1, 2], [3]]


def test_a_waiting_batch_takes_later_items_and_runs_once_full() -> None:
    run = Recorder()

    async def main() -> list[list[int]]:
        # An hour's window: the batch can only run by filling up.
        b = batcher(run, max_delay_s=3600, max_batch_size=3)
        try:
            first = asyncio.ensure_future(b.submit([1]))
            await asyncio.sleep(0.01)  # the worker now holds [1] open for company
            later = [asyncio.ensure_future(b.submit([i])) for i in (2, 3)]
            return list(await asyncio.wait_for(asyncio.gather(first, *later), timeout=30))
        finally:
            await b.stop()

    assert asyncio.run(main()) == [[2], [4], [6]]
    assert run.batches == [[1, 2, 3]]


def test_a_lone_caller_does_not_wait_for_company() -> None:
    run = Recorder()

    async def main() -> list[list[int]]:
        # An hour's window, and a first request that fills a batch on its own: a batch of one
        # request, so the next (alone) runs without the window. Were it held open for company,
        # the timeout would end the test.
        b = batcher(run, max_delay_s=3600, max_batch_size=2)
        try:
            full = await asyncio.wait_for(b.submit([1, 2]), timeout=30)
            alone = await asyncio.wait_for(b.submit([3]), timeout=30)
            return [full, alone]
        finally:
            await b.stop()

    assert asyncio.run(main()) == [[2, 4], [6]]
    assert run.batches == [[1, 2], [3]]


def test_a_fixed_window_holds_a_lone_caller_for_company() -> None:
    run = Recorder()

    async def main() -> list[list[int]]:
        b = batcher(run, lone_waits=True, max_delay_s=3600, max_batch_size=2)
        try:
            full = await asyncio.wait_for(b.submit([1, 2]), timeout=30)
            alone = asyncio.ensure_future(b.submit([3]))
            await asyncio.sleep(0.05)
            assert not alone.done()  # held open for company, as before a lone batch
            company = await asyncio.wait_for(b.submit([4]), timeout=30)
            return [full, await alone, company]
        finally:
            await b.stop()

    assert asyncio.run(main()) == [[2, 4], [6], [8]]
    assert run.batches == [[1, 2], [3, 4]]


def test_a_request_that_waited_out_a_pass_does_not_wait_again() -> None:
    # The window counts from a request's arrival. [3] comes while [1, 2] runs for longer than
    # the window: once the model is free it runs at once, not a whole window later (the last
    # batch had company, so it would otherwise be held for more).
    run = Recorder(delay=0.6)
    window = 0.5

    async def main() -> list[list[int]]:
        b = batcher(run, max_delay_s=window, max_batch_size=2)
        try:
            first = asyncio.gather(b.submit([1]), b.submit([2]))
            await asyncio.sleep(0.05)  # [1, 2] filled its batch and runs
            later = await asyncio.wait_for(b.submit([3]), timeout=30)
            return [*await first, later]
        finally:
            await b.stop()

    assert asyncio.run(main()) == [[2], [4], [6]]
    assert run.batches == [[1, 2], [3]]
    idle = run.idle_after_first()
    assert idle < window / 2, f"waited {idle:.2f}s after the pass"


def test_a_request_given_up_on_does_not_open_the_window() -> None:
    # [4]'s caller gives up while [1, 2, 3] runs; [5], queued behind it meanwhile, runs as soon
    # as the model is free: the window counts from the arrivals, not from the pass's end.
    run = Recorder(delay=0.6)
    window = 0.5

    async def main() -> list[int]:
        b = batcher(run, max_delay_s=window, max_batch_size=3)
        try:
            first = asyncio.ensure_future(b.submit([1, 2, 3]))
            await asyncio.sleep(0.05)  # [1, 2, 3] filled its batch and runs
            given_up = asyncio.ensure_future(b.submit([4]))
            await asyncio.sleep(0)
            behind = asyncio.ensure_future(b.submit([5]))
            await asyncio.sleep(0)
            given_up.cancel()
            assert await first == [2, 4, 6]
            result = await asyncio.wait_for(behind, timeout=30)
            assert b.queued_items == 0
            return result
        finally:
            await b.stop()

    assert asyncio.run(main()) == [10]
    assert run.batches == [[1, 2, 3], [5]]
    idle = run.idle_after_first()
    assert idle < window / 2, f"waited {idle:.2f}s after the pass"


def test_a_batch_says_whether_its_callers_had_company() -> None:
    # Company: more than one request, or one that came while a batch ran (another caller was
    # there), in this batch or the one before. The embedder runs texts with company on their
    # own thread count.
    run = Recorder(delay=0.2)

    async def main() -> None:
        b = batcher(run, max_delay_s=0)
        try:
            await b.submit([1])  # alone
            running = asyncio.ensure_future(b.submit([2]))
            await asyncio.sleep(0.05)  # [2] runs
            came_meanwhile = asyncio.ensure_future(b.submit([3]))
            await asyncio.gather(running, came_meanwhile)
            await asyncio.gather(b.submit([4]), b.submit([5]))  # together
            await b.submit([6])  # alone, just after others
            await b.submit([7])  # alone again
        finally:
            await b.stop()

    asyncio.run(main())
    assert run.batches == [[1], [2], [3], [4, 5], [6], [7]]
    assert run.company == [False, False, True, True, True, False]


def test_full_queue_refuses_at_once() -> None:
    run = Recorder()

    async def main() -> None:
        b = batcher(run, max_queue=5, max_delay_s=0.3)
        first = asyncio.ensure_future(b.submit([1, 2, 3]))
        await asyncio.sleep(0.01)
        with pytest.raises(ResourceExhausted, match="at most 5") as info:
            await b.submit([4, 5, 6])
        assert info.value.reason == "QUEUE_FULL"
        assert await first == [2, 4, 6]
        await b.stop()

    asyncio.run(main())


def test_caller_that_gave_up_costs_no_model_work() -> None:
    run = Recorder()

    async def main() -> None:
        b = batcher(run, max_delay_s=0.2)
        gone = asyncio.ensure_future(b.submit([7]))
        stays = asyncio.ensure_future(b.submit([8]))
        await asyncio.sleep(0.01)
        gone.cancel()
        assert await stays == [16]
        await b.stop()

    asyncio.run(main())
    assert run.batches == [[8]]


def test_failed_batch_fails_its_callers_and_the_next_batch_runs() -> None:
    run = Recorder(fail_on=13)

    async def main() -> None:
        b = batcher(run, max_delay_s=0)
        with pytest.raises(RuntimeError, match="boom"):
            await b.submit([13])
        assert await b.submit([1]) == [2]
        await b.stop()

    asyncio.run(main())
    assert run.company == [False, False]  # the failed batch left no "running" behind
