"""Progress: the counts, a bar on a terminal, a log line every ten seconds otherwise."""

from __future__ import annotations

import io
import logging

import pytest

from indexer_service.progress import Progress


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def progress_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith("progress:")]


def test_counts_add_up_over_batches() -> None:
    with Progress(stream=io.StringIO()) as progress:
        progress.update(indexed=7, skipped=1)
        progress.update(indexed=2, failed=1)
    assert (progress.counts.indexed, progress.counts.skipped, progress.counts.failed) == (9, 1, 1)
    assert progress.counts.done == 11


def test_without_a_terminal_a_log_line_every_ten_seconds(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="indexer_service.progress")
    clock, stream = Clock(), io.StringIO()
    with Progress(total=100, stream=stream, clock=clock) as progress:
        assert not progress.on_terminal
        for step, seconds in enumerate([1, 5, 10.5, 12, 20, 20.6]):
            clock.now = 100 + seconds
            progress.update(indexed=4, failed=step % 2)
    assert progress_lines(caplog) == [
        "progress: 13 rows (12 indexed, 0 skipped, 1 failed), 1.1 img/s",
        "progress: 27 rows (24 indexed, 0 skipped, 3 failed), 1.2 img/s",
    ]
    assert stream.getvalue() == ""  # no bar drawn into a log


def test_on_a_terminal_a_bar_with_the_counts_and_no_log_lines(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="indexer_service.progress")
    clock, terminal = Clock(), Terminal()
    with Progress(total=10, desc="indexing train", stream=terminal, clock=clock) as progress:
        assert progress.on_terminal
        clock.now += 60
        progress.update(indexed=8, skipped=1, failed=1)
    bar = terminal.getvalue()
    assert "indexing train" in bar and "10/10" in bar
    assert "indexed=8" in bar and "skipped=1" in bar and "failed=1" in bar
    assert progress_lines(caplog) == []


def test_seconds_follow_the_clock() -> None:
    clock = Clock()
    with Progress(stream=io.StringIO(), clock=clock) as progress:
        clock.now += 42.5
        assert progress.seconds == 42.5
