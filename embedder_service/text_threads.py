"""How many CPU threads the text tower runs on: measured when the model loads, and re-checked
on the service's own short texts as it runs.

A text batch is small work (a few positions per text) spread over a hundred small parallel
regions, so sharing it between threads can cost more than it saves, and which way it goes
depends on the CPU, the precision and what else runs on the cores. Measured on this project's
2-core Xeon (AMX), ViT-B-32 bf16, one text through the service: 13.9 ms on two threads against
about 17 on one with the cores to itself; when another process then took a core, 44 ms on two
(one of the pair waits for its core at every region) against 20 on one. So the embedder times a
short text and a batch of eight both ways at start-up and keeps the faster; then, while it
serves, every EXPLORE_EVERY-th batch of a few short texts runs on the other count, and the choice
moves there when that was clearly faster than batches of as many texts usually take
(`TextThreadChoice`). Batches of several texts count too: with eight callers at once the query
service and ChromaDB share the cores with the model, the embedder rarely sees a text alone, and
one thread then served 113-117 searches/s against 95-103 on two (bf16, `bench_query`'s setup).
Images keep every thread.
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
# While running: every this-many-th timed batch tries the other thread count, against the
# median of this many recent batches of as many texts on the current count. A batch of at most
# MAX_TEXTS texts of at most SHORT_TOKENS tokens each is timed (queries), so lengths barely
# change the time compared.
EXPLORE_EVERY = 20
RECENT = 9
SHORT_TOKENS = 16
MAX_TEXTS = 8


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

    Batches are compared with batches of as many texts (a batch of one and a batch of five
    differ more than the two counts do); a try comes at the first batch, EXPLORE_EVERY timed
    batches after the last try, whose size has RECENT times on the current count.

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
        # Recent times on the current count, by the number of texts in the batch.
        self._recent: dict[int, deque[float]] = {}
        self._since_try = 0

    def run(self, torch: Any, short_texts: int, work: Callable[[], T]) -> T:
        """Run `work` (a text batch) on the chosen thread count. `short_texts` is the number of
        texts when each has at most SHORT_TOKENS tokens, else 0; a batch of 1 to MAX_TEXTS such
        texts is timed, and now and then runs on the other count instead."""
        timed = self._other is not None and 0 < short_texts <= MAX_TEXTS
        count = self.current
        if timed:
            self._since_try += 1
            if self._since_try >= EXPLORE_EVERY and self._known(short_texts):
                self._since_try = 0
                count = self._other or count
        started = self._clock()
        with torch_threads(torch, count):
            result = work()
        if timed:
            self._record(short_texts, count, self._clock() - started)
        return result

    def _known(self, texts: int) -> bool:
        return len(self._recent.get(texts, ())) == RECENT

    def _record(self, texts: int, count: int, seconds: float) -> None:
        """Take the time of a timed batch of `texts` texts run on `count` threads; move to the
        other count when its try beat the usual time of as many texts by MARGIN."""
        if count == self.current:
            self._recent.setdefault(texts, deque(maxlen=RECENT)).append(seconds)
            return
        usual = statistics.median(self._recent[texts])
        if seconds >= MARGIN * usual:
            return
        log.info(
            "text batches now run on %d thread(s): %d short text(s) took %.1f ms, against a "
            "median of %.1f ms on %d",
            count,
            texts,
            seconds * 1000,
            usual * 1000,
            self.current,
        )
        self.current, self._other = count, self.current
        self._recent = {texts: deque([seconds], maxlen=RECENT)}


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
