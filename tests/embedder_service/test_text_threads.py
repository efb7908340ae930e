"""The text thread count: kept on the faster of two counts as the machine changes, judged on
the service's own one-text batches (a small fake stands in for torch's thread-count calls and
for the clock, which each batch advances by what it takes on the count it ran on)."""

from __future__ import annotations

from embedder_service.text_threads import (
    EXPLORE_EVERY,
    MARGIN,
    TextThreadChoice,
    choose_text_threads,
)


class FakeMachine:
    """torch's thread-count calls, and a clock a text batch advances by `seconds_on[count]`."""

    def __init__(self, threads: int, seconds_on: dict[int, float]) -> None:
        self.threads = threads
        self.seconds_on = seconds_on
        self.now = 0.0

    def get_num_threads(self) -> int:
        return self.threads

    def set_num_threads(self, count: int) -> None:
        self.threads = count

    def clock(self) -> float:
        return self.now

    def batch(self) -> int:
        self.now += self.seconds_on[self.threads]
        return self.threads


def counts_run(
    choice: TextThreadChoice, machine: FakeMachine, batches: int, short: bool
) -> list[int]:
    """The thread count each of `batches` text batches ran on."""
    return [choice.run(machine, short, machine.batch) for _ in range(batches)]


def test_every_so_often_a_short_text_tries_the_other_count() -> None:
    machine = FakeMachine(2, {2: 0.0139, 1: 0.017})
    choice = TextThreadChoice(2, other=1, clock=machine.clock)
    counts = counts_run(choice, machine, 3 * EXPLORE_EVERY, short=True)
    tried = [i + 1 for i, count in enumerate(counts) if count == 1]
    assert tried == [EXPLORE_EVERY, 2 * EXPLORE_EVERY, 3 * EXPLORE_EVERY], counts
    assert choice.current == 2  # one thread is slower here: no move
    assert machine.threads == 2  # set back after each batch


def test_other_batches_never_try_and_a_given_count_never_moves() -> None:
    machine = FakeMachine(2, {2: 0.044, 1: 0.020})
    assert set(counts_run(TextThreadChoice(2, 1, machine.clock), machine, 60, short=False)) == {2}
    assert set(counts_run(TextThreadChoice(2, None, machine.clock), machine, 60, short=True)) == {2}


def test_the_choice_follows_the_machine() -> None:
    # Start-up chose two threads; then another process takes a core: two threads spinning
    # take 44 ms a text, one thread 20 ms.
    machine = FakeMachine(2, {2: 0.044, 1: 0.020})
    choice = TextThreadChoice(2, other=1, clock=machine.clock)
    counts_run(choice, machine, EXPLORE_EVERY, short=True)
    assert choice.current == 1
    # The core is free again: one thread 17 ms, two 13.9 ms.
    machine.seconds_on = {2: 0.0139, 1: 0.017}
    counts_run(choice, machine, EXPLORE_EVERY, short=True)
    assert choice.current == 2


def test_a_try_must_be_faster_by_the_margin() -> None:
    machine = FakeMachine(2, {2: 0.044, 1: 0.044 * MARGIN * 1.01})
    choice = TextThreadChoice(2, other=1, clock=machine.clock)
    counts_run(choice, machine, 3 * EXPLORE_EVERY, short=True)
    assert choice.current == 2


def test_a_count_given_at_start_up_is_kept() -> None:
    machine = FakeMachine(2, {2: 0.044, 1: 0.020})
    choice = choose_text_threads(machine, lambda texts: None, given=2)
    assert set(counts_run(choice, machine, 3 * EXPLORE_EVERY, short=True)) == {2}
