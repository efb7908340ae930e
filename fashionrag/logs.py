"""Logging set-up shared by the services: one line per event, with time, level and logger."""

from __future__ import annotations

import logging


def setup_logging(level: str = "INFO") -> None:
    """Log to stderr at `level` (stdout stays free for results such as the indexer's JSON)."""
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # One line per HTTP request to ChromaDB drowns the service's own lines.
    logging.getLogger("httpx").setLevel(logging.WARNING)
