"""Reading the body of an image search: bounded in size and in time, and every body that cannot
be read answered with a 4xx that names the problem (never a 500 with a traceback)."""

from __future__ import annotations

import asyncio
import binascii
import logging
import zlib
from collections.abc import Awaitable, Callable
from typing import TypeVar

from aiohttp import hdrs, web
from aiohttp.http_exceptions import ContentEncodingError, HttpProcessingError
from aiohttp.web_protocol import RequestPayloadError
from multidict import MultiDictProxy

from fashionrag.errors import InvalidArgument

log = logging.getLogger(__name__)

# The codings aiohttp decodes with no extra package; anything else would reach the image
# decoder still encoded (aiohttp passes unknown codings through), so it is refused up front.
CONTENT_CODINGS = ("identity", "gzip", "deflate")

_T = TypeVar("_T")


class UploadReader:
    """Reads request bodies of at most `max_bytes` that arrive within `timeout` seconds.

    Errors: 408 when the body is too slow, 413 when its Content-Length is over the limit (at
    once, before reading), 415 for a Content-Encoding other than CONTENT_CODINGS, 400
    (InvalidArgument with a reason) for a body that cannot be decoded: a corrupt gzip or
    deflate stream, a malformed multipart body, a part whose base64 is invalid. A client that
    closes the connection mid-body costs one log line.
    """

    def __init__(self, max_bytes: int, timeout: float) -> None:
        self.max_bytes = max_bytes
        self.timeout = timeout

    async def body(self, request: web.Request) -> bytes:
        """The whole raw body, decoded from its Content-Encoding."""
        return await self._read(request, request.read)

    async def form(
        self, request: web.Request
    ) -> MultiDictProxy[str | bytes | bytearray | web.FileField]:
        """The fields of a multipart (or url-encoded) form."""
        try:
            return await self._read(request, request.post)
        except binascii.Error:
            raise InvalidArgument(
                "a multipart part says Content-Transfer-Encoding: base64 but its body is not "
                "valid base64",
                reason="INVALID_BASE64",
            ) from None
        except (ValueError, RuntimeError, zlib.error, HttpProcessingError) as exc:
            # aiohttp's multipart reader raises these for boundaries, part headers and part
            # encodings it cannot make sense of; their text says which.
            raise InvalidArgument(
                f"the multipart body is malformed: {exc}", reason="MALFORMED_MULTIPART"
            ) from None

    async def _read(self, request: web.Request, read: Callable[[], Awaitable[_T]]) -> _T:
        self._check_headers(request)
        try:
            async with asyncio.timeout(self.timeout):
                return await read()
        except TimeoutError:
            raise web.HTTPRequestTimeout(
                text=f"the request body did not arrive within {self.timeout:g} seconds"
            ) from None
        except ConnectionError:
            log.info(
                "HTTP %s %s: the client at %s closed the connection before its body arrived",
                request.method,
                request.path,
                request.remote,
            )
            # Nobody reads this answer; it only ends the request without a traceback.
            raise web.HTTPBadRequest(text="the connection closed mid-body") from None
        except RequestPayloadError as exc:
            if isinstance(exc.__cause__, ContentEncodingError):
                coding = request.headers.get(hdrs.CONTENT_ENCODING, "")
                raise InvalidArgument(
                    f"the request body is not valid {coding} (its Content-Encoding)",
                    reason="INVALID_CONTENT_ENCODING",
                ) from None
            raise InvalidArgument(
                f"the request body cannot be read: {exc}", reason="UNREADABLE_BODY"
            ) from None

    def _check_headers(self, request: web.Request) -> None:
        coding = request.headers.get(hdrs.CONTENT_ENCODING, "").strip().lower() or "identity"
        if coding not in CONTENT_CODINGS:
            raise web.HTTPUnsupportedMediaType(
                text=f"Content-Encoding {coding!r} is not supported: send the body as "
                + ", ".join(CONTENT_CODINGS),
                headers={hdrs.ACCEPT_ENCODING: ", ".join(CONTENT_CODINGS)},
            )
        length = request.content_length
        if length is not None and length > self.max_bytes:
            raise web.HTTPRequestEntityTooLarge(max_size=self.max_bytes, actual_size=length)
