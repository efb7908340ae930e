"""How many CPU threads the text tower runs on: chosen by measurement when the model loads.

A text batch is small work (a few positions per text) spread over a hundred small parallel
regions, so sharing it between threads can cost more than it saves, and which way it goes
depends on the CPU and the precision. Measured on this project's 2-core Xeon (AMX), ViT-B-32,
one text: bf16 15.5 ms on one thread against 21.0 ms on two, and one thread won at every batch
size up to 16; fp32 26.5 ms on two against 33.0 ms on one. So the embedder times a short text
and a batch of eight both ways at start-up and keeps the faster; images keep every thread.
"""

from __future__ import annotations

import logging
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

log = logging.getLogger(__name__)

# The batches timed: one short query, and eight (concurrent callers' texts in one batch).
PROBES = (["a red top"], [f"a photo of a {word} outfit" for word in "abcdefgh"])
WARM_UPS = 2
TRIES = 5
# One thread must beat all of them by this much: a start-up beside other busy work measures
# noisily, and the choice holds for the process's life.
MARGIN = 0.9


@contextmanager
def torch_threads(torch: Any, count: int | None) -> Iterator[None]:
    """Run the block with torch's intra-op threads set to `count` (None: as they are), then
    set them back. The embedder runs every model call on one thread of its own, so no image
    batch runs meanwhile. torch also keeps a process-wide count, so other threads' small torch
    work (the decode threads' preprocessing) may run on that many threads meanwhile."""
    before = torch.get_num_threads()
    if count is None or count == before:
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


def fastest_text_threads(torch: Any, embed: Callable[[list[str]], object]) -> int:
    """One thread when it runs the text probes clearly faster (by MARGIN), else all of them."""
    every = torch.get_num_threads()
    if every <= 1:
        return every
    timed = {count: seconds_per_round(torch, embed, count) for count in (every, 1)}
    chosen = 1 if timed[1] < MARGIN * timed[every] else every
    log.info(
        "text batches run on %d thread(s): %s",
        chosen,
        ", ".join(f"{c} thread(s) {s * 1000:.1f} ms" for c, s in timed.items()),
    )
    return chosen
