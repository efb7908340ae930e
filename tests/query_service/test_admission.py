"""SearchGate in-process: searches past the limit are refused at once, not queued."""

from __future__ import annotations

import asyncio
import threading

import pytest

from fashionrag.errors import ResourceExhausted
from query_service.admission import SearchGate


def test_a_search_past_the_limit_is_refused_and_admitted_once_one_ends() -> None:
    release = threading.Event()

    async def scenario() -> None:
        gate = SearchGate(2)
        first = asyncio.ensure_future(gate.run(release.wait, 30))
        second = asyncio.ensure_future(gate.run(release.wait, 30))
        while gate.in_flight < 2:
            await asyncio.sleep(0.01)
        with pytest.raises(ResourceExhausted, match="too many searches in flight"):
            await gate.run(lambda: "third")
        release.set()
        assert await first and await second
        assert await gate.run(lambda: "again") == "again"
        assert gate.in_flight == 0
        gate.close()

    asyncio.run(scenario())


def test_a_search_whose_caller_gave_up_counts_until_its_thread_ends() -> None:
    release = threading.Event()

    async def scenario() -> None:
        gate = SearchGate(1)
        abandoned = asyncio.ensure_future(gate.run(release.wait, 30))
        while gate.in_flight < 1:
            await asyncio.sleep(0.01)
        abandoned.cancel()  # a deadline passed, a connection closed
        with pytest.raises(ResourceExhausted):
            await gate.run(lambda: None)
        release.set()
        while gate.in_flight:
            await asyncio.sleep(0.01)
        assert await gate.run(lambda: "admitted") == "admitted"
        gate.close()

    asyncio.run(scenario())


def test_errors_of_a_search_reach_its_caller_and_free_its_place() -> None:
    def failing() -> None:
        raise ValueError("bad")

    async def scenario() -> None:
        gate = SearchGate(1)
        with pytest.raises(ValueError, match="bad"):
            await gate.run(failing)
        assert gate.in_flight == 0
        gate.close()

    asyncio.run(scenario())
