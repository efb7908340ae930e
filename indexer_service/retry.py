"""The indexer's one retry policy: tenacity around whole operations, to wait out outages.

Which layer retries what:

- **Short blips of one embedder call** (a replica restarting, a rolled pod, a full queue) are
  retried by gRPC itself, through the service config in `embedder_service/client.py`:
  UNAVAILABLE and RESOURCE_EXHAUSTED, 5 attempts, jittered backoff from 0.2 s to 5 s,
  wait-for-ready. Nothing here sees them.
- **Outages** (the embedder away past gRPC's 5 attempts, ChromaDB down or restarting) come out as
  `Unavailable`, `ResourceExhausted`, `DeadlineExceeded` or an unreachable ChromaDB; this policy
  retries the whole operation (ChromaDB get, embed a batch, upsert a chunk, count) with jittered
  exponential backoff up to 10 s, for at most `--retry-seconds`. ChromaDB's HTTP client retries
  nothing, so for ChromaDB this is the only layer.
- **The budget is a bound, not a hint**: no pause runs past it, and an embed call's deadline is
  cut to what is left of it. An embedder that is gone makes a call wait for its deadline
  (wait-for-ready), so without the cut one attempt alone would wait out the client's 60 s (or
  more, scaled by the batch's work) whatever `--retry-seconds` says. An operation therefore ends
  within about a second of `--retry-seconds` (0: one attempt with the client's own deadline),
  and it fails as `Unavailable`, naming the operation and the fault. Once one operation has
  failed the run, the others stop retrying at once (`cancel`) instead of waiting out their own
  budgets.
- **Nothing else is retried**: an image that cannot be decoded is an outcome, not an error (it
  goes to the failure log); any other error, or an outage that outlasts `--retry-seconds`, stops
  the run, and the next run goes on from what was written.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

import tenacity

from fashionrag.collection_store import is_unreachable
from fashionrag.errors import DeadlineExceeded, FashionragError, ResourceExhausted, Unavailable

log = logging.getLogger(__name__)

T = TypeVar("T")

# The shortest deadline an attempt is given, so the last one near the end of the budget can still
# reach a backend that came back, rather than fail before it starts.
MIN_ATTEMPT_SECONDS = 1.0


def is_transient(exc: BaseException) -> bool:
    """Whether a fault is worth waiting out: a backend restarting, overloaded or unreachable."""
    return isinstance(exc, Unavailable | ResourceExhausted | DeadlineExceeded) or is_unreachable(
        exc
    )


@dataclass(frozen=True)
class RetryPolicy:
    """Retries one operation through transient faults for at most `seconds`.

    Args:
        seconds: how long one operation may take through its retries (`--retry-seconds`); 0
            tries once.
        max_wait: the longest pause between two attempts, in seconds.
        cancel: once set (the run failed elsewhere), no operation waits or tries again.
        clock: monotonic seconds (a fake one in tests).
        sleep: how a pause is waited (a fake one in tests; default: waiting on `cancel`).
    """

    seconds: float = 600.0
    max_wait: float = 10.0
    cancel: threading.Event = field(default_factory=threading.Event, repr=False, compare=False)
    clock: Callable[[], float] = field(default=time.monotonic, repr=False, compare=False)
    sleep: Callable[[float], None] | None = field(default=None, repr=False, compare=False)

    def _pause(self, seconds: float) -> None:
        self.cancel.wait(seconds)

    def call(self, what: str, fn: Callable[[], T]) -> T:
        """Call `fn` until it succeeds, fails for good, or `seconds` have passed.

        Args:
            what: the operation's name (with its backend's), for the log and the error.
            fn: the operation.

        Returns:
            What `fn` returned.

        Raises:
            Unavailable: a transient fault outlasted `seconds` (it names `what` and the fault).
            The error of `fn` when it is not transient.
        """
        return self.call_with_deadline(what, lambda _seconds: fn(), float("inf"))

    def call_with_deadline(self, what: str, fn: Callable[[float], T], deadline: float) -> T:
        """Like `call`, for an operation with a deadline: `fn` is given each attempt's deadline
        in seconds, `deadline` cut to what is left of `seconds` (never under
        `MIN_ATTEMPT_SECONDS`; uncut when `seconds` is 0).

        Args:
            what: the operation's name (with its backend's), for the log and the error.
            fn: the operation, called with its attempt's deadline.
            deadline: the deadline the operation has when nothing is wrong.

        Returns:
            What `fn` returned.

        Raises:
            Unavailable: a transient fault outlasted `seconds` (it names `what` and the fault).
            The error of `fn` when it is not transient.
        """
        began = self.clock()
        end = began + self.seconds

        def left() -> float:
            return end - self.clock()

        def attempt() -> T:
            if self.seconds <= 0:
                return fn(deadline)
            return fn(min(deadline, max(left(), MIN_ATTEMPT_SECONDS)))

        backoff = tenacity.wait_random_exponential(multiplier=0.5, max=self.max_wait)

        def wait(state: tenacity.RetryCallState) -> float:
            # No pause runs past the budget: the last attempt starts when it ends, not later.
            return max(0.0, min(backoff(state), left()))

        def before_sleep(state: tenacity.RetryCallState) -> None:
            pause = state.next_action.sleep if state.next_action else 0
            exc = state.outcome.exception() if state.outcome else None
            log.warning("%s failed (%s); retry %d in %.1fs", what, exc, state.attempt_number, pause)

        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception(is_transient),
            wait=wait,
            stop=lambda _state: left() <= 0 or self.cancel.is_set(),
            sleep=self.sleep or self._pause,
            before_sleep=before_sleep,
            reraise=True,
        )
        try:
            return retrying(attempt)
        except Exception as exc:
            if not is_transient(exc):
                raise
            backend = exc.metadata.get("backend", "") if isinstance(exc, FashionragError) else ""
            raise Unavailable(
                f"{what} failed for {self.clock() - began:.1f}s "
                f"(--retry-seconds {self.seconds:g}): {exc}",
                metadata={"backend": backend or ("chromadb" if is_unreachable(exc) else "")},
            ) from exc
