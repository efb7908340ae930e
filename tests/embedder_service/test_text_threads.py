"""The text thread count: kept on the faster of two counts as the machine changes, judged on
the service's own batches of a few short texts (a small fake stands in for torch's thread-count
calls and for the clock, which each batch advances by what it takes on the count it ran on)."""

from __future__ import annotations

import functools

from embedder_service.text_threads import (
    EXPLORE_EVERY,
    MARGIN,
    MAX_TEXTS,
    RECENT,
    RECHECK_AFTER,
    STALE_AFTER,
    TextThreadChoice,
    _Track,
    choose_text_threads,
)


class FakeMachine:
    """torch's thread-count calls, and a clock a batch of n texts advances by n times
    `seconds_on[count]`."""

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

    def batch(self, texts: int = 1) -> int:
        self.now += texts * self.seconds_on[self.threads]
        return self.threads


def counts_run(
    choice: TextThreadChoice, machine: FakeMachine, batches: int, short: bool
) -> list[int]:
    """The thread count each of `batches` batches of one text alone ran on (a short one, or
    not)."""
    return [choice.run(machine, 1, short, False, machine.batch) for _ in range(batches)]


def sizes_run(
    choice: TextThreadChoice, machine: FakeMachine, sizes: list[int], short: bool = True
) -> list[int]:
    """The thread count each batch with company ran on, one batch of that many texts per entry
    of `sizes`."""
    return [choice.run(machine, n, short, True, functools.partial(machine.batch, n)) for n in sizes]


def test_every_so_often_a_short_text_tries_the_other_count() -> None:
    machine = FakeMachine(2, {2: 0.0139, 1: 0.017})
    choice = TextThreadChoice(2, other=1, clock=machine.clock)
    counts = counts_run(choice, machine, 3 * EXPLORE_EVERY, short=True)
    tried = [i + 1 for i, count in enumerate(counts) if count == 1]
    assert tried == [EXPLORE_EVERY, 2 * EXPLORE_EVERY, 3 * EXPLORE_EVERY], counts
    assert choice.count() == 2  # one thread is slower here: no move
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
    # Two tries win in a row: the first after EXPLORE_EVERY, the next RECHECK_AFTER later.
    counts_run(choice, machine, EXPLORE_EVERY + RECHECK_AFTER - 1, short=True)
    assert choice.count() == 2
    counts_run(choice, machine, 1, short=True)
    assert choice.count() == 1
    # The core is free again: one thread 17 ms, two 13.9 ms.
    machine.seconds_on = {2: 0.0139, 1: 0.017}
    counts_run(choice, machine, EXPLORE_EVERY + RECHECK_AFTER, short=True)
    assert choice.count() == 2


def test_a_try_must_be_faster_by_the_margin() -> None:
    machine = FakeMachine(2, {2: 0.044, 1: 0.044 * MARGIN * 1.01})
    choice = TextThreadChoice(2, other=1, clock=machine.clock)
    counts_run(choice, machine, 3 * EXPLORE_EVERY, short=True)
    assert choice.count() == 2


def test_a_count_given_at_start_up_is_kept() -> None:
    machine = FakeMachine(2, {2: 0.044, 1: 0.020})
    choice = choose_text_threads(machine, lambda texts: None, given=2)
    assert set(counts_run(choice, machine, 3 * EXPLORE_EVERY, short=True)) == {2}


def test_texts_with_company_follow_the_machine_too() -> None:
    # Eight callers at once: the embedder sees batches of 3 to 5 texts from several callers,
    # and the query service and ChromaDB busy beside it make two threads the slower.
    machine = FakeMachine(2, {2: 0.0105, 1: 0.0085})
    choice = TextThreadChoice(2, other=1, clock=machine.clock)
    sizes_run(choice, machine, [3, 4, 5] * (RECENT + EXPLORE_EVERY))
    assert choice.count(company=True) == 1
    machine.seconds_on = {2: 0.006, 1: 0.0085}
    sizes_run(choice, machine, [3, 4, 5] * (RECENT + EXPLORE_EVERY))
    assert choice.count(company=True) == 2


def test_texts_alone_and_with_company_learn_apart() -> None:
    # Alone, two threads are faster; with company (other processes busy), one thread, one-text
    # batches with company too. Load that comes and goes round by round must not drag either
    # along.
    machine = FakeMachine(2, {2: 0.0139, 1: 0.017})
    choice = TextThreadChoice(2, other=1, clock=machine.clock)
    lone, company = {2: 0.0139, 1: 0.017}, {2: 0.0105, 1: 0.0085}
    for _ in range(6):
        machine.seconds_on = lone
        counts_run(choice, machine, 25, short=True)
        machine.seconds_on = company
        sizes_run(choice, machine, [1, 3, 4] * 25)
    assert (choice.count(company=False), choice.count(company=True)) == (2, 1)
    # Each runs on its own count at once, a try at most aside.
    machine.seconds_on = lone
    assert counts_run(choice, machine, EXPLORE_EVERY, short=True).count(2) >= EXPLORE_EVERY - 1
    machine.seconds_on = company
    assert sizes_run(choice, machine, [1, 3, 4] * 10).count(1) >= 28  # two tries at most


def test_a_try_is_judged_against_batches_of_as_many_texts() -> None:
    # Two threads are the faster, and texts cost by their number: a one-text try on one thread
    # is quicker than a typical batch of the mix, but not than one text on two threads.
    machine = FakeMachine(2, {2: 0.0139, 1: 0.017})
    choice = TextThreadChoice(2, other=1, clock=machine.clock)
    counts = sizes_run(choice, machine, list(range(1, 8)) * 40)  # 7 sizes: tries land on each
    tries = counts.count(1)
    assert 8 <= tries <= len(counts) // EXPLORE_EVERY  # it tried, and never moved
    assert choice.count(company=True) == 2


def test_times_of_a_batch_size_not_seen_for_long_are_dropped() -> None:
    # Eight texts came once under another load; a try on eight texts much later is not judged
    # against those times, but waits for RECENT new ones.
    track = _Track(2, 1)
    for _ in range(RECENT):
        track.record(8, track.count_for(8, timed=True), 0.05)
    assert track.count_for(8, timed=True) == 2
    for _ in range(STALE_AFTER):
        track.record(3, track.count_for(3, timed=True), 0.02)
    assert len(track.recent[8]) == RECENT
    track.count_for(8, timed=True)
    assert 8 not in track.recent
    track.since_try = EXPLORE_EVERY  # a try is due: still none until eight texts have times
    assert track.count_for(8, timed=True) == 2


def test_one_lucky_try_does_not_move_the_choice() -> None:
    # Under load one batch's time swings: a try must win twice in a row to move.
    track = _Track(2, 1)
    for _ in range(RECENT):
        track.record(4, track.count_for(4, timed=True), 0.020)
    track.since_try = EXPLORE_EVERY - 1
    assert track.count_for(4, timed=True) == 1
    assert track.record(4, 1, 0.010) is None  # lucky
    assert track.current == 2
    for _ in range(RECHECK_AFTER - 1):
        assert track.count_for(4, timed=True) == 2
        track.record(4, 2, 0.020)
    assert track.count_for(4, timed=True) == 1  # checked again soon
    assert track.record(4, 1, 0.025) is None  # it was luck
    assert track.current == 2
    track.since_try = EXPLORE_EVERY - 1
    track.record(4, track.count_for(4, timed=True), 0.010)
    track.since_try = EXPLORE_EVERY - 1
    assert track.count_for(4, timed=True) == 1
    assert track.record(4, 1, 0.010) == 0.020  # two in a row: moved
    assert (track.current, track.other) == (1, 2)


def test_a_win_not_checked_again_soon_expires() -> None:
    # A win whose recheck could not come (its batch size went quiet) does not pair with a win
    # much later, under what may be another load.
    track = _Track(2, 1)
    for _ in range(RECENT):
        track.record(4, track.count_for(4, timed=True), 0.020)
    track.since_try = EXPLORE_EVERY - 1
    assert track.record(4, track.count_for(4, timed=True), 0.010) is None  # a first win
    for n in [5, 6, 7, 8] * 6:  # other sizes, none with enough times for a try
        assert track.record(n, track.count_for(n, timed=True), 0.025) is None
    track.since_try = EXPLORE_EVERY - 1
    assert track.count_for(4, timed=True) == 1
    assert track.record(4, 1, 0.010) is None  # a first win again, not a second
    assert track.current == 2


def test_long_or_many_texts_are_not_timed() -> None:
    machine = FakeMachine(2, {2: 0.044, 1: 0.020})
    choice = TextThreadChoice(2, other=1, clock=machine.clock)
    assert set(sizes_run(choice, machine, [MAX_TEXTS + 1] * 100)) == {2}
    assert set(sizes_run(choice, machine, [1, 3] * 100, short=False)) == {2}
