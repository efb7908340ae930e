"""How many CPU threads the text tower runs on: measured when the model loads, and re-checked
on the service's own short texts as it runs.

A text batch is small work (a few positions per text) spread over a hundred small parallel
regions, so sharing it between threads can cost more than it saves, and which way it goes
depends on the CPU, the precision and what else runs on the cores. Measured on this project's
2-core Xeon (AMX), ViT-B-32 bf16, one text through the service: 13.9 ms on two threads against
about 17 on one with the cores to itself; when another process then took a core, 44 ms on two
(one of the pair waits for its core at every region) against 20 on one. So the embedder times a
short text and a batch of eight both ways at start-up and keeps the faster; then, while it
serves, every EXPLORE_EVERY-th batch of one short text runs on the other count, and the choice
moves there when that was clearly faster (`TextThreadChoice`). Images keep every thread.
"""

from __future__ import annotations

import logging
import statistics
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

T = TypeVar("T")

log = logging.getLogger(__name__)

# The batches timed: one short query, and eight (concurrent callers' texts in one batch).
PROBES = (["a red top"], [f"a photo of a {word} outfit" for word in "abcdefgh"])
WARM_UPS = 2
TRIES = 5
# One thread must beat all of them by this much: a start-up beside other busy work measures
# noisily. The same margin holds for a move while running.
MARGIN = 0.9
# While running: every this-many-th one-text batch tries the other thread count, against the
# median of this many recent ones on the current count. A text of at most SHORT_TOKENS tokens
# counts (a query), so lengths barely change the time compared.
EXPLORE_EVERY = 20
RECENT = 9
SHORT_TOKENS = 16


@contextmanager
def torch_threads(torch: Any, count: int) -> Iterator[None]:
    """Run the block with the calling thread's torch intra-op threads set to `count`, then set
    them back. The embedder runs every model call on one thread of its own, so no image batch
    runs meanwhile; the decode threads settled their own count at start
    (`OpenClipModel.start_helper_thread`), so this does not reach them."""
    before = torch.get_num_threads()
    if count == before:
        yield
        return
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def seconds_per_round(torch: Any, embed: Callable[[list[str]], object], count: int) -> float:
    """The median time of one round of PROBES on `count` threads, after warming up; the thread
    count is set around each batch, as embedding sets it, so its switching cost is counted."""

    def one(texts: list[str]) -> None:
        with torch_threads(torch, count):
            embed(texts)

    for _ in range(WARM_UPS):
        for texts in PROBES:
            one(texts)
    rounds = []
    for _ in range(TRIES):
        started = time.perf_counter()
        for texts in PROBES:
            one(texts)
        rounds.append(time.perf_counter() - started)
    return statistics.median(rounds)


class TextThreadChoice:
    """The thread count text batches run on, kept on the faster of two as the machine changes.

    Not thread-safe: the embedder makes every model call on its one model thread. A move rests
    on one timed try against the median of RECENT batches, so a try that happens to be slow only
    delays a move to the next try; a lucky fast one moves the choice, and the next try moves it
    back if it was luck.

    Args:
        current: the count to start on (measured at load, or given).
        other: the count to try now and then; None keeps `current` for good (a count given by
            --text-threads, or a machine with one core).
        clock: seconds, for timing batches (tests give their own).
    """

    def __init__(
        self,
        current: int,
        other: int | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.current = current
        self._other = other
        self._clock = clock
        self._recent: deque[float] = deque(maxlen=RECENT)
        self._short_batches = 0

    def run(self, torch: Any, one_short_text: bool, work: Callable[[], T]) -> T:
        """Run `work` (a text batch) on the chosen thread count. A batch of one short text (at
        most SHORT_TOKENS tokens) is timed, and once RECENT of them are known every
        EXPLORE_EVERY-th runs on the other count instead."""
        count = self.current
        if one_short_text and self._other is not None:
            self._short_batches += 1
            if self._short_batches % EXPLORE_EVERY == 0 and len(self._recent) == RECENT:
                count = self._other
        started = self._clock()
        with torch_threads(torch, count):
            result = work()
        if one_short_text and self._other is not None:
            self._record(count, self._clock() - started)
        return result

    def _record(self, count: int, seconds: float) -> None:
        """Take the time of a one-short-text batch run on `count` threads; move to the other
        count when its try beat the usual time by MARGIN."""
        if count == self.current:
            self._recent.append(seconds)
            return
        usual = statistics.median(self._recent)
        if seconds >= MARGIN * usual:
            return
        log.info(
            "text batches now run on %d thread(s): a short text took %.1f ms, against a median "
            "of %.1f ms on %d",
            count,
            seconds * 1000,
            usual * 1000,
            self.current,
        )
        self.current, self._other = count, self.current
        self._recent.clear()
        self._recent.append(seconds)


def choose_text_threads(
    torch: Any, embed: Callable[[list[str]], object], given: int = 0
) -> TextThreadChoice:
    """`given` threads for good, or (0) one thread when it runs the text probes clearly faster
    (by MARGIN) now, else all of them; re-checked as texts run against the other of the two."""
    if given:
        return TextThreadChoice(given)
    every = torch.get_num_threads()
    if every <= 1:
        return TextThreadChoice(every)
    timed = {count: seconds_per_round(torch, embed, count) for count in (every, 1)}
    chosen = 1 if timed[1] < MARGIN * timed[every] else every
    log.info(
        "text batches run on %d thread(s): %s",
        chosen,
        ", ".join(f"{c} thread(s) {s * 1000:.1f} ms" for c, s in timed.items()),
    )
    return TextThreadChoice(chosen, other=1 if chosen == every else every)
