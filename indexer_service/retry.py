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
- **Nothing else is retried**: an image that cannot be decoded is an outcome, not an error (it
  goes to the failure log); any other error, or an outage that outlasts `--retry-seconds`, stops
  the run, and the next run goes on from what was written.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import tenacity

from fashionrag.collection_store import is_unreachable
from fashionrag.errors import DeadlineExceeded, ResourceExhausted, Unavailable

log = logging.getLogger(__name__)

T = TypeVar("T")


def is_transient(exc: BaseException) -> bool:
    """Whether a fault is worth waiting out: a backend restarting, overloaded or unreachable."""
    return isinstance(exc, Unavailable | ResourceExhausted | DeadlineExceeded) or is_unreachable(
        exc
    )


@dataclass(frozen=True)
class RetryPolicy:
    """Retries one operation through transient faults for at most `seconds`.

    Args:
        seconds: how long one operation may be retried (`--retry-seconds`); 0 tries once.
        max_wait: the longest pause between two attempts, in seconds.
    """

    seconds: float = 600.0
    max_wait: float = 10.0

    def call(self, what: str, fn: Callable[[], T]) -> T:
        """Call `fn` until it succeeds, fails for good, or `seconds` have passed.

        Args:
            what: the operation's name, for the log line of each retry.
            fn: the operation.

        Returns:
            What `fn` returned.

        Raises:
            The last error of `fn` once it is not transient or the time is up.
        """

        def before_sleep(state: tenacity.RetryCallState) -> None:
            wait = state.next_action.sleep if state.next_action else 0
            exc = state.outcome.exception() if state.outcome else None
            log.warning("%s failed (%s); retry %d in %.1fs", what, exc, state.attempt_number, wait)

        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception(is_transient),
            wait=tenacity.wait_random_exponential(multiplier=0.5, max=self.max_wait),
            stop=tenacity.stop_after_delay(self.seconds),
            before_sleep=before_sleep,
            reraise=True,
        )
        return retrying(fn)
