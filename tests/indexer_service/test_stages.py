"""The stage runner, on plain functions: bounded queues, order-free completion, stop and flush,
and the first error ending the run."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator

import pytest

from indexer_service.stages import Stage, StageRunner

WAIT = 10.0  # seconds before a test that would hang fails instead


class Sink:
    """Collects what reaches the end of the stages, in arrival order."""

    def __init__(self) -> None:
        self.items: list[int] = []
        self.lock = threading.Lock()

    def __call__(self, item: int) -> None:
        with self.lock:
            self.items.append(item)


def test_every_item_goes_through_every_stage() -> None:
    sink = Sink()
    runner = StageRunner(
        [Stage("double", lambda i: 2 * i, threads=3), Stage("sink", sink)], queue_size=2
    )
    runner.run(range(100))
    assert sorted(sink.items) == [2 * i for i in range(100)]
    assert runner.error is None


def test_busy_seconds_name_the_stage_that_works_longest() -> None:
    def slow(item: int) -> int:
        time.sleep(0.02)  # a lower bound on its busy time, whatever the machine's load
        return item

    runner = StageRunner([Stage("quick", lambda i: i), Stage("slow", slow)], queue_size=1)
    runner.run(range(10))
    assert set(runner.busy_seconds) == {"read", "quick", "slow"}
    assert runner.busy_seconds["slow"] >= 0.2
    assert max(runner.busy_seconds, key=runner.busy_seconds.__getitem__) == "slow"


def test_items_leave_a_stage_as_they_finish_not_in_the_order_they_came() -> None:
    first_waited_for_second = threading.Event()
    second_arrived = threading.Event()

    def work(item: int) -> int:
        if item == 0 and second_arrived.wait(WAIT):  # item 0 finishes only after item 1 is out
            first_waited_for_second.set()
        return item

    received = Sink()

    def sink(item: int) -> None:
        received(item)
        if item == 1:
            second_arrived.set()

    StageRunner([Stage("work", work, threads=2), Stage("sink", sink)], queue_size=2).run(range(2))
    assert first_waited_for_second.is_set()
    assert received.items == [1, 0]


def test_a_blocked_stage_holds_back_the_source() -> None:
    threads, queue_size = 1, 2
    # The stage's threads hold one item each, its queue queue_size, and the source one more,
    # blocked on the full queue: the next item is asked for only once the stage moves.
    capacity = threads + queue_size + 1
    gate, full, overran = threading.Event(), threading.Event(), threading.Event()

    def source() -> Iterator[int]:
        for i in range(20):
            if i == capacity - 1:
                full.set()
            if i == capacity and not gate.is_set():
                overran.set()
            yield i

    sink = Sink()

    def blocked(item: int) -> None:
        gate.wait(WAIT)
        sink(item)

    runner = StageRunner([Stage("blocked", blocked, threads=threads)], queue_size=queue_size)
    thread = threading.Thread(target=runner.run, args=(source(),))
    thread.start()
    try:
        assert full.wait(WAIT)
        assert not overran.wait(0.5), "the source was read past the queue's bound"
    finally:
        gate.set()
        thread.join(WAIT)
    assert sorted(sink.items) == list(range(20))


def test_stop_ends_reading_and_flushes_the_items_in_flight() -> None:
    stop = threading.Event()
    asked: list[int] = []

    def source() -> Iterator[int]:
        for i in itertools.count():
            asked.append(i)
            if i == 5:
                stop.set()  # as Ctrl-C would, while items 0..4 are still in the stage
            yield i

    def slow(item: int) -> int:
        stop.wait(WAIT)  # nothing finishes before the stop
        return item

    sink = Sink()
    runner = StageRunner(
        [Stage("slow", slow, threads=2), Stage("sink", sink)], queue_size=8, stop=stop
    )
    runner.run(source())
    assert sorted(sink.items) == [0, 1, 2, 3, 4]
    assert asked == [0, 1, 2, 3, 4, 5]  # item 5 came after the stop: dropped, and no more read
    assert runner.error is None


@pytest.mark.parametrize("failing", ["first", "last"])
def test_the_first_error_ends_the_run_and_is_raised(failing: str) -> None:
    processed: list[int] = []

    def work(item: int) -> int:
        processed.append(item)
        if item == 3:
            raise ValueError("first failure")
        if item > 3:
            raise ValueError("a later failure")
        return item

    stages = [Stage("first", lambda i: i), Stage("last", lambda i: i)]
    index = 0 if failing == "first" else 1
    stages[index] = Stage(failing, work)
    runner = StageRunner(stages, queue_size=2)
    with pytest.raises(ValueError, match="first failure"):
        runner.run(itertools.count())  # endless: only the error ends it
    assert processed == [0, 1, 2, 3]  # the items in flight after the error were dropped
    assert isinstance(runner.error, ValueError)


def test_a_runner_needs_a_stage() -> None:
    with pytest.raises(ValueError):
        StageRunner([])


def test_an_abort_in_the_calling_thread_leaves_without_waiting_for_the_stages() -> None:
    started, release = threading.Event(), threading.Event()

    def stuck(item: int) -> int:
        started.set()
        release.wait(WAIT)  # a call that would take long to finish
        return item

    def source() -> Iterator[int]:
        yield 0
        assert started.wait(WAIT)
        raise KeyboardInterrupt  # a second Ctrl-C

    runner = StageRunner([Stage("stuck", stuck)], queue_size=2)
    try:
        with pytest.raises(KeyboardInterrupt):
            runner.run(source())
        assert not release.is_set()  # raised while the stage was still in its call
        assert runner.failed.is_set()  # and told to give up
    finally:
        release.set()


def test_a_failing_stage_sets_failed() -> None:
    failed = threading.Event()

    def boom(item: int) -> int:
        raise ValueError("boom")

    with pytest.raises(ValueError):
        StageRunner([Stage("boom", boom)], failed=failed).run(range(3))
    assert failed.is_set()
