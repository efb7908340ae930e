"""How many CPU threads the text tower runs on: measured when the model loads, and re-checked
on the service's own short texts as it runs.

A text batch is small work (a few positions per text) spread over a hundred small parallel
regions, so sharing it between threads can cost more than it saves, and which way it goes
depends on the CPU, the precision and what else runs on the cores. Measured on this project's
2-core Xeon (AMX), ViT-B-32 bf16, one text through the service: 13.9 ms on two threads against
about 17 on one with the cores to itself; when another process then took a core, 44 ms on two
(one of the pair waits for its core at every region) against 20 on one. So the embedder times a
short text and a batch of eight both ways at start-up and keeps the faster; then, while it
serves, every EXPLORE_EVERY-th batch of short texts runs on the other count, and the choice
moves there when two such tries in a row were clearly faster than batches of as many texts
usually take (`TextThreadChoice`).

Texts alone and texts with company learn their counts apart (company: the batcher saw other
callers, in this batch or the one before; see `DynamicBatcher`). Alone means no other search is
running, and the query service and ChromaDB wait for the text; company means several callers,
whose other steps share the cores with the model. With eight callers at once
(bf16, `bench_query`'s setup) batches of three or four texts on one thread served 112
searches/s against 96 on two, while a lone caller's text was faster on two (18.7 against 25.6
ms a search). Images keep every thread.
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
# While running: every this-many-th timed batch of a kind (texts alone, or with company)
# tries the other thread count, against the median of this many recent batches of as many texts
# on the current count. A batch of at most MAX_TEXTS texts of at most SHORT_TOKENS tokens each is
# timed (queries), so lengths barely change the time compared.
EXPLORE_EVERY = 20
RECENT = 9
# Times of a batch size not seen for this many timed batches are dropped: they came from
# another load (a try is never judged against them).
STALE_AFTER = 5 * EXPLORE_EVERY
# A move takes this many tries in a row that win, the next coming RECHECK_AFTER timed batches
# after a win: under eight callers one batch's time swings with what the other processes do at
# that moment, and single lucky tries moved the choice back and forth (123 searches/s against
# 146 when it held still).
CONFIRMS = 2
RECHECK_AFTER = 5
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


class _Track:
    """The thread count of one kind of batch (texts alone, or with company), and how long its
    batches took lately on it, by the number of texts."""

    def __init__(self, current: int, other: int) -> None:
        self.current = current
        self.other = other
        self.recent: dict[int, deque[float]] = {}
        self.last_seen: dict[int, int] = {}  # the timed batch that last had that many texts
        self.timed = 0
        self.since_try = 0
        self.wins = 0  # tries in a row that beat the usual time
        self.won_at = 0  # the timed batch of the last win

    def count_for(self, texts: int, timed: bool) -> int:
        """The count a batch of `texts` runs on: the other one when a try is due (EXPLORE_EVERY
        timed batches since the last, and RECENT recent times known for as many texts)."""
        if not timed:
            return self.current
        self.timed += 1
        if self.timed - self.last_seen.get(texts, self.timed) > STALE_AFTER:
            self.recent.pop(texts, None)
        self.last_seen[texts] = self.timed
        self.since_try += 1
        if self.since_try >= EXPLORE_EVERY and len(self.recent.get(texts, ())) == RECENT:
            self.since_try = 0
            if self.timed - self.won_at > EXPLORE_EVERY:
                self.wins = 0  # a win with no recheck soon after stood under another load
            return self.other
        return self.current

    def record(self, texts: int, count: int, seconds: float) -> float | None:
        """Take a timed batch's seconds on `count` threads. CONFIRMS tries in a row that beat
        the usual time of as many texts by MARGIN move the track there; the last returns that
        usual time."""
        if count == self.current:
            self.recent.setdefault(texts, deque(maxlen=RECENT)).append(seconds)
            return None
        usual = statistics.median(self.recent[texts])
        if seconds >= MARGIN * usual:
            self.wins = 0
            return None
        self.wins += 1
        self.won_at = self.timed
        if self.wins < CONFIRMS:
            self.since_try = EXPLORE_EVERY - RECHECK_AFTER
            return None
        self.wins = 0
        self.current, self.other = count, self.current
        self.recent = {texts: deque([seconds], maxlen=RECENT)}
        return usual


class TextThreadChoice:
    """The thread count text batches run on, kept on the faster of two as the machine changes,
    for texts alone and texts with company apart.

    Not thread-safe: the embedder makes every model call on its one model thread. A move rests
    on CONFIRMS timed tries in a row, each against the median of RECENT batches of as many texts,
    so a try that happens to be slow only delays a move, and one lucky fast try does not make
    one.

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
        self._clock = clock
        # Without another count, nothing is tried or timed.
        self._tracks = {company: _Track(current, other or current) for company in (False, True)}

    def count(self, company: bool = False) -> int:
        """The count texts alone, or with company, run on now (tries aside)."""
        return self._tracks[company].current

    def run(self, torch: Any, texts: int, short: bool, company: bool, work: Callable[[], T]) -> T:
        """Run `work`, a batch of `texts` texts (`short` when each has at most SHORT_TOKENS
        tokens; `company` when from concurrent callers), on the chosen thread count; a batch of
        1 to MAX_TEXTS short texts is timed, and now and then runs on the other count instead."""
        track = self._tracks[company]
        timed = short and 0 < texts <= MAX_TEXTS and track.other != track.current
        count = track.count_for(texts, timed)
        started = self._clock()
        with torch_threads(torch, count):
            result = work()
        seconds = self._clock() - started
        usual = track.record(texts, count, seconds) if timed else None
        if usual is not None:
            log.info(
                "%s now run on %d thread(s): %d short text(s) took %.1f ms, against a median "
                "of %.1f ms on %d",
                "texts with company" if company else "texts alone",
                count,
                texts,
                seconds * 1000,
                usual * 1000,
                track.other,
            )
        return result


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
