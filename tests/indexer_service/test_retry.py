"""The retry policy on a fake clock: transient faults are retried, and `--retry-seconds` bounds
an operation, its pauses and the deadlines of its attempts."""

from __future__ import annotations

import threading

import pytest

from fashionrag.errors import DeadlineExceeded, InvalidArgument, Unavailable
from indexer_service.retry import MIN_ATTEMPT_SECONDS, RetryPolicy


class Clock:
    """Seconds that pass only when a pause or an attempt says so."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds >= 0
        self.now += seconds


def policy(clock: Clock, seconds: float) -> RetryPolicy:
    return RetryPolicy(seconds, clock=clock, sleep=clock.sleep)


class GoneEmbedder:
    """An embedder that is not there: each call waits out its whole deadline (wait-for-ready)."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.deadlines: list[float] = []

    def __call__(self, deadline: float) -> None:
        self.deadlines.append(deadline)
        self.clock.now += deadline
        raise DeadlineExceeded("embedder at 127.0.0.1:1: DEADLINE_EXCEEDED")


def test_an_embedder_gone_for_good_fails_the_operation_within_the_budget() -> None:
    clock = Clock()
    gone = GoneEmbedder(clock)
    with pytest.raises(Unavailable, match=r"embedding failed for 5\.0s .*embedder at"):
        policy(clock, 5).call_with_deadline("embedding", gone, deadline=240)
    # Without the cut, the first attempt alone would have waited 240 s.
    assert gone.deadlines[0] == 5
    assert clock.now <= 5 + MIN_ATTEMPT_SECONDS


def test_each_attempt_gets_what_is_left_of_the_budget() -> None:
    clock = Clock()
    gone = GoneEmbedder(clock)
    with pytest.raises(Unavailable):
        policy(clock, 100).call_with_deadline("embedding", gone, deadline=30)
    assert gone.deadlines[0] == 30  # the call's own deadline while there is time for it
    assert len(gone.deadlines) > 3
    starts = [sum(gone.deadlines[:i]) for i in range(len(gone.deadlines))]
    assert all(
        d <= max(100 - start, MIN_ATTEMPT_SECONDS)
        for d, start in zip(gone.deadlines, starts, strict=True)
    )
    assert clock.now <= 100 + MIN_ATTEMPT_SECONDS


def test_no_pause_runs_past_the_budget() -> None:
    clock = Clock()
    attempts: list[float] = []

    def refused() -> None:  # ChromaDB away: each attempt fails at once
        attempts.append(clock.now)
        raise Unavailable("ChromaDB at http://127.0.0.1:1 is unreachable")

    with pytest.raises(Unavailable, match=r"ChromaDB get failed for 5\.0s"):
        RetryPolicy(5, max_wait=10, clock=clock, sleep=clock.sleep).call("ChromaDB get", refused)
    # Backoff pauses up to 10 s would overshoot; the last attempt comes when the budget ends.
    assert len(attempts) >= 2
    assert attempts[-1] == pytest.approx(5)


def test_a_fault_that_passes_costs_only_a_retry() -> None:
    clock = Clock()
    answers: list[Exception | str] = [Unavailable("away"), DeadlineExceeded("late"), "vectors"]

    def flaky(deadline: float) -> str:
        answer = answers.pop(0)
        if isinstance(answer, str):
            return answer
        raise answer

    assert policy(clock, 60).call_with_deadline("embedding", flaky, deadline=60) == "vectors"


def test_other_errors_are_not_retried() -> None:
    clock = Clock()
    calls = []

    def bad() -> None:
        calls.append(1)
        raise InvalidArgument("too many boxes")

    with pytest.raises(InvalidArgument):
        policy(clock, 60).call("embedding", bad)
    assert calls == [1]


def test_zero_seconds_tries_once_with_the_calls_own_deadline() -> None:
    clock = Clock()
    gone = GoneEmbedder(clock)
    with pytest.raises(Unavailable):
        policy(clock, 0).call_with_deadline("embedding", gone, deadline=60)
    assert gone.deadlines == [60]


def test_a_run_failing_elsewhere_stops_the_retries_at_once() -> None:
    clock = Clock()
    cancel = threading.Event()
    attempts = []

    def refused() -> None:
        attempts.append(clock.now)
        cancel.set()  # another stage failed the run meanwhile
        raise Unavailable("ChromaDB at http://127.0.0.1:1 is unreachable")

    retry = RetryPolicy(600, cancel=cancel, clock=clock, sleep=clock.sleep)
    with pytest.raises(Unavailable):
        retry.call("ChromaDB upsert photos", refused)
    assert attempts == [0.0]


def test_pauses_wake_up_when_the_run_fails() -> None:
    cancel = threading.Event()
    cancel.set()
    retry = RetryPolicy(600, cancel=cancel)
    retry._pause(3600)  # returns at once: the default pause waits on `cancel`
