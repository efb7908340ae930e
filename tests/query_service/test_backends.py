"""BackendWatcher in-process, on fake backends: what it reports, and when it tells."""

from __future__ import annotations

import asyncio
import threading

from fashionrag.errors import Unavailable
from query_service.backends import Backend, BackendWatcher


class Switch:
    """A fake backend: up or down, as the test says."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.up = True
        self.calls = 0

    def check(self) -> None:
        self.calls += 1
        if not self.up:
            raise Unavailable(f"{self.name} at 127.0.0.1:1 cannot be reached")


def test_reports_which_backend_is_down_and_tells_on_each_change() -> None:
    embedder, chroma = Switch("embedder"), Switch("ChromaDB")
    told: list[bool] = []

    async def tell(healthy: bool) -> None:
        told.append(healthy)

    async def scenario() -> None:
        watcher = BackendWatcher(
            [Backend("embedder", embedder.check), Backend("ChromaDB", chroma.check)], tell
        )
        assert not watcher.healthy and "not checked yet" in watcher.problem()
        await watcher.check()
        assert watcher.healthy and watcher.problem() == ""
        embedder.up = False
        await watcher.check()
        await watcher.check()
        assert not watcher.healthy
        assert "embedder at 127.0.0.1:1" in watcher.problem()
        assert "ChromaDB" not in watcher.problem()
        assert watcher.down() == ["embedder"]
        embedder.up = True
        await watcher.check()
        assert watcher.healthy
        watcher.close()

    asyncio.run(scenario())
    assert told == [True, False, True]  # the first round's outcome, then each change only


def test_the_first_round_tells_even_when_a_backend_is_down() -> None:
    chroma = Switch("ChromaDB")
    chroma.up = False
    told: list[bool] = []

    async def tell(healthy: bool) -> None:
        told.append(healthy)

    async def scenario() -> None:
        watcher = BackendWatcher([Backend("ChromaDB", chroma.check)], tell)
        await watcher.check()
        watcher.close()

    asyncio.run(scenario())
    assert told == [False]


def test_a_check_that_hangs_counts_as_down_and_is_not_started_twice() -> None:
    release = threading.Event()
    started: list[int] = []

    def hangs() -> None:
        started.append(1)
        release.wait(30)

    async def scenario() -> None:
        watcher = BackendWatcher([Backend("ChromaDB", hangs)], timeout=0.05)
        await watcher.check()
        await watcher.check()
        assert not watcher.healthy
        assert "did not answer" in watcher.problem()
        assert len(started) == 1
        release.set()
        await asyncio.sleep(0.1)
        watcher.close()

    asyncio.run(scenario())


def test_a_check_that_fails_unexpectedly_names_its_backend() -> None:
    def broken() -> None:
        raise RuntimeError("malformed answer")

    async def scenario() -> None:
        watcher = BackendWatcher([Backend("embedder", broken)])
        await watcher.check()
        assert watcher.problem() == "embedder: RuntimeError: malformed answer"
        watcher.close()

    asyncio.run(scenario())
