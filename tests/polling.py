"""Waiting in tests for what a real process does in its own time: poll a condition until it
holds, and fail naming what did not happen."""

from __future__ import annotations

import time
from collections.abc import Callable

POLL_SECONDS = 0.02


def wait_until(condition: Callable[[], object], what: str, timeout: float = 30.0) -> float:
    """Poll `condition` until it is true; return the seconds that took. Fails naming `what`
    after `timeout` seconds."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"not within {timeout:.0f}s: {what}")
        time.sleep(POLL_SECONDS)
    return time.monotonic() - started
