"""A small LRU of text vectors, so a repeated query costs no embedder call."""

from __future__ import annotations

import threading
from collections.abc import Callable

import cachetools
import numpy as np

from query_service.metrics import QueryMetrics

Embed = Callable[[str, float | None], np.ndarray]


class TextVectorCache:
    """Text vectors by text, shared by every caller (the vectors are read-only).

    Keyed by the text alone: whoever owns it clears it whenever the model may have changed
    (the query service does so each time the collection is opened and its model checked).

    Args:
        embed: embeds one text, given the time left of the caller's deadline.
        size: how many vectors to keep; 0 keeps none (every lookup is a miss).
        metrics: where hits and misses are counted.
    """

    def __init__(self, embed: Embed, size: int = 1024, metrics: QueryMetrics | None = None) -> None:
        self._embed = embed
        self._metrics = metrics or QueryMetrics()
        self._lru: cachetools.LRUCache[str, np.ndarray] | None = (
            cachetools.LRUCache(maxsize=size) if size else None
        )
        self._lock = threading.Lock()

    def vector(self, text: str, timeout: float | None = None) -> np.ndarray:
        """The text's vector, from the cache or the embedder."""
        if self._lru is None:
            self._metrics.text_cache_misses.inc()
            return self._embed(text, timeout)
        with self._lock:
            cached = self._lru.get(text)
        if cached is not None:
            self._metrics.text_cache_hits.inc()
            return cached
        self._metrics.text_cache_misses.inc()
        vector = self._embed(text, timeout)
        vector.flags.writeable = False  # shared by every caller of the cache
        with self._lock:
            self._lru[text] = vector
        return vector

    def clear(self) -> None:
        """Forget every vector."""
        if self._lru is not None:
            with self._lock:
                self._lru.clear()
