"""The indexer's progress: the counts of a run, shown as a bar on a terminal and as a log line
every few seconds otherwise (a container's log, a CI job)."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import IO

from tqdm import tqdm

log = logging.getLogger(__name__)


@dataclass
class Counts:
    """How many rows a run indexed, skipped (already in the collection) and failed, and how
    many garment records it wrote and failed."""

    indexed: int = 0
    skipped: int = 0
    failed: int = 0
    garments: int = 0
    garments_failed: int = 0

    @property
    def done(self) -> int:
        return self.indexed + self.skipped + self.failed


class Progress:
    """Counts the rows done and shows them.

    Args:
        total: the rows expected, when known (for the bar's ETA).
        desc: the bar's label.
        stream: where the bar goes; when it is not a terminal, log lines instead.
        log_every: seconds between two log lines when there is no bar.
        clock: the monotonic clock (a fake one in tests).
    """

    def __init__(
        self,
        total: int | None = None,
        desc: str = "indexing",
        *,
        stream: IO[str] | None = None,
        log_every: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.counts = Counts()
        self.log_every = log_every
        self._clock = clock
        self._started = clock()
        self._last_log = self._started
        # disable=None: tqdm draws only when the stream is a terminal.
        self._bar = tqdm(
            total=total,
            unit="img",
            desc=desc,
            file=stream or sys.stderr,
            disable=None,
            dynamic_ncols=True,
        )

    @property
    def on_terminal(self) -> bool:
        """Whether a bar is drawn (else log lines are written)."""
        return not self._bar.disable

    @property
    def seconds(self) -> float:
        """Seconds since the run started."""
        return self._clock() - self._started

    def update(
        self,
        *,
        indexed: int = 0,
        skipped: int = 0,
        failed: int = 0,
        garments: int = 0,
        garments_failed: int = 0,
    ) -> None:
        """Add a batch's counts, and show them (the bar counts rows; garments are extras)."""
        self.counts.indexed += indexed
        self.counts.skipped += skipped
        self.counts.failed += failed
        self.counts.garments += garments
        self.counts.garments_failed += garments_failed
        if self.on_terminal:
            self._bar.update(indexed + skipped + failed)
            self._bar.set_postfix(
                indexed=self.counts.indexed,
                skipped=self.counts.skipped,
                failed=self.counts.failed,
                garments=self.counts.garments,
                refresh=False,
            )
            return
        now = self._clock()
        if now - self._last_log >= self.log_every:
            self._last_log = now
            extra = f", {self.counts.garments} garments" if self.counts.garments else ""
            log.info(
                "progress: %d rows (%d indexed, %d skipped, %d failed), %.1f img/s%s",
                self.counts.done,
                self.counts.indexed,
                self.counts.skipped,
                self.counts.failed,
                self.counts.indexed / max(now - self._started, 1e-9),
                extra,
            )

    def close(self) -> None:
        """Finish the bar (it stays on the terminal)."""
        self._bar.close()

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
