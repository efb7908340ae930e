"""The text thread count: kept on the faster of two counts as the machine changes, judged on
the service's own one-text batches (a small fake torch records the counts set; the times are
given)."""

from __future__ import annotations

from embedder_service import text_threads
from embedder_service.text_threads import EXPLORE_EVERY, MARGIN, RECENT, TextThreadChoice


class FakeTorch:
    """torch's thread-count calls, recorded."""

    def __init__(self, threads: int) -> None:
        self.threads = threads

    def get_num_threads(self) -> int:
        return self.threads

    def set_num_threads(self, count: int) -> None:
        self.threads = count


def counts_run(choice: TextThreadChoice, torch: FakeTorch, batches: int, short: bool) -> list[int]:
    """The thread count each of `batches` text batches ran on."""
    return [choice.run(torch, short, torch.get_num_threads) for _ in range(batches)]


def test_every_so_often_a_short_text_tries_the_other_count() -> None:
    torch = FakeTorch(2)
    choice = TextThreadChoice(2, other=1)
    counts = counts_run(choice, torch, 3 * EXPLORE_EVERY, short=True)
    tried = [i + 1 for i, count in enumerate(counts) if count == 1]
    assert tried == [EXPLORE_EVERY, 2 * EXPLORE_EVERY, 3 * EXPLORE_EVERY], counts
    assert torch.threads == 2  # set back after each batch


def test_other_batches_never_try_and_a_given_count_never_moves() -> None:
    torch = FakeTorch(2)
    assert set(counts_run(TextThreadChoice(2, other=1), torch, 3 * EXPLORE_EVERY, False)) == {2}
    assert set(counts_run(TextThreadChoice(1), torch, 3 * EXPLORE_EVERY, True)) == {1}


def test_a_clearly_faster_try_moves_the_choice_and_a_slower_one_does_not() -> None:
    choice = TextThreadChoice(2, other=1)
    for _ in range(RECENT):
        choice.record(2, 0.044)  # two threads, while another process holds a core
    choice.record(1, 0.044 * MARGIN * 1.01)  # not faster by the margin
    assert choice.current == 2
    choice.record(1, 0.020)
    assert choice.current == 1
    # Now the cores are free again: one thread's usual time, then a faster try on two.
    for _ in range(RECENT):
        choice.record(1, 0.017)
    choice.record(2, 0.0139)
    assert choice.current == 2


def test_after_a_move_it_waits_for_a_full_window_before_trying_again() -> None:
    torch = FakeTorch(2)
    choice = TextThreadChoice(2, other=1)
    counts_run(choice, torch, EXPLORE_EVERY - 1, short=True)  # the next batch is due to try
    choice.record(1, 0.0)  # a try far faster than any: the choice moves to one thread
    assert choice.current == 1
    # Due, but one time on one thread is not a window to judge a try against.
    assert counts_run(choice, torch, 1, short=True) == [1]
    counts = counts_run(choice, torch, 2 * EXPLORE_EVERY, short=True)
    assert counts.count(2) >= 1


def test_a_start_up_count_given_is_kept() -> None:
    torch = FakeTorch(2)
    choice = text_threads.choose_text_threads(torch, lambda texts: None, given=1)
    assert set(counts_run(choice, torch, 2 * EXPLORE_EVERY, True)) == {1}
