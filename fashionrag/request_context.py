"""The request id of the call being served, carried through the call's context so every log line
of it can name it (`x-request-id`: the caller's, or a new one)."""

from __future__ import annotations

import contextvars
import logging

REQUEST_ID_HEADER = "x-request-id"

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")


class RequestIdFilter(logging.Filter):
    """Adds `request_id` (the current call's, or "-") to every log record."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id.get()
        return True
