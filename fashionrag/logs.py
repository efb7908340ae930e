"""Logging set-up shared by the services: one line per event with the call's request id, as text
for people or as JSON lines for log collectors (`--log-format json`)."""

from __future__ import annotations

import json
import logging
from typing import Any

from fashionrag.request_context import RequestIdFilter


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, request_id, message (and exc_info)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self.formatTime(record),
            "level": record.levelname,
            "logger": record.name,
            "request_id": getattr(record, "request_id", "-"),
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exc_info"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def setup_logging(level: str = "INFO", fmt: str = "text") -> None:
    """Log to stderr at `level` (stdout stays free for results such as the indexer's JSON).

    Args:
        level: DEBUG, INFO, WARNING or ERROR.
        fmt: "text" or "json".
    """
    handler = logging.StreamHandler()
    handler.addFilter(RequestIdFilter())
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s")
        )
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
    # One line per HTTP request to ChromaDB drowns the service's own lines.
    logging.getLogger("httpx").setLevel(logging.WARNING)
