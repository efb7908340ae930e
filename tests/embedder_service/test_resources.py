"""The limits on image work: the pixel budget, the decode threads' priority, the heap trim."""

from __future__ import annotations

import asyncio
import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from embedder_service.resources import PixelBudget, lower_thread_priority, trim_heap


async def settle() -> None:
    for _ in range(3):
        await asyncio.sleep(0)


def test_budget_admits_what_fits_and_queues_the_rest_in_order() -> None:
    async def run() -> list[str]:
        budget, order = PixelBudget(100), []

        async def take(name: str, pixels: int) -> None:
            await budget.acquire(pixels)
            order.append(name)

        await take("a", 60)
        waiting = [asyncio.create_task(take(n, p)) for n, p in (("b", 60), ("c", 10))]
        await settle()
        assert order == ["a"]  # c would fit, but waits behind b: first come, first served
        budget.release(60)
        await asyncio.gather(*waiting)
        assert budget.held == 70
        return order

    assert asyncio.run(run()) == ["a", "b", "c"]


def test_an_image_larger_than_the_budget_runs_alone() -> None:
    async def run() -> None:
        budget = PixelBudget(100)
        await budget.acquire(500)
        assert budget.held == 500
        small = asyncio.create_task(budget.acquire(1))
        await settle()
        assert not small.done()
        budget.release(500)
        await small

    asyncio.run(run())


def test_a_caller_cancelled_while_waiting_takes_nothing_and_unblocks_the_next() -> None:
    async def run() -> None:
        budget = PixelBudget(100)
        await budget.acquire(50)
        big = asyncio.create_task(budget.acquire(80))
        small = asyncio.create_task(budget.acquire(30))
        await settle()
        big.cancel()
        await asyncio.gather(big, return_exceptions=True)
        await small
        assert budget.held == 80

    asyncio.run(run())


@pytest.mark.skipif(sys.platform != "linux", reason="per-thread nice values are Linux's")
def test_decode_threads_run_at_a_lower_priority_than_the_rest() -> None:
    def nice() -> int:
        return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    ours = nice()
    with ThreadPoolExecutor(1, initializer=lower_thread_priority(5)) as pool:
        assert pool.submit(nice).result() == min(ours + 5, 19)
    assert nice() == ours


@pytest.mark.skipif(sys.platform != "linux", reason="malloc_trim is glibc's")
def test_the_heap_can_be_trimmed_here() -> None:
    assert trim_heap()
