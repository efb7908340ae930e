"""Every HTTP error of the query service as a JSON body of one shape (that of
fashionrag.errors.json_body): domain errors, aiohttp's own (404, 405, 413...), anything
unexpected, and the errors aiohttp's HTTP parser answers before any application code runs (a
malformed or over-long request line or header: JsonErrorRunner)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from typing import Any

from aiohttp import hdrs, web
from aiohttp.http_exceptions import ContentEncodingError, HttpProcessingError, LineTooLong
from aiohttp.web_protocol import RequestHandler, RequestPayloadError
from aiohttp.web_request import BaseRequest

from fashionrag.errors import FashionragError, json_body
from query_service.http_doors import SECURITY_HEADERS

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# The gRPC code that means the same as an HTTP error no domain error stands for (google.rpc.Code's
# own mapping), so that `code` means one thing across both APIs.
GRPC_CODES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    405: "UNIMPLEMENTED",
    408: "DEADLINE_EXCEEDED",
    413: "RESOURCE_EXHAUSTED",
    429: "RESOURCE_EXHAUSTED",
    501: "UNIMPLEMENTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
RETRY_AFTER_SECONDS = "1"
# The headers of aiohttp's error responses that describe their text body, not the error.
_BODY_HEADERS = frozenset({hdrs.CONTENT_TYPE, hdrs.CONTENT_LENGTH, hdrs.CONTENT_ENCODING})


def http_error_body(status: int, message: str, reason: str = "") -> dict[str, Any]:
    """The JSON body of an HTTP error that no domain error stands for: `code` is the gRPC code
    of the same meaning, `reason` the status's name (METHOD_NOT_ALLOWED) unless given."""
    if not reason:
        try:
            reason = HTTPStatus(status).name
        except ValueError:
            reason = f"HTTP_{status}"
    body = json_body(FashionragError(message, reason=reason))
    body["code"] = GRPC_CODES.get(status, "INVALID_ARGUMENT" if status < 500 else "INTERNAL")
    return body


def _message(request: web.Request, exc: web.HTTPException) -> str:
    """What went wrong, for people: aiohttp's own text where it says more than the status."""
    if isinstance(exc, web.HTTPMethodNotAllowed):
        allowed = ", ".join(sorted(exc.allowed_methods))
        return f"{exc.method} is not allowed on {request.path}; use {allowed}"
    if isinstance(exc, web.HTTPNotFound) and exc.text == f"{exc.status}: {exc.reason}":
        return f"no such route: {request.path}"
    return exc.text or exc.reason


@web.middleware
async def errors_to_json(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every error a handler (or the router) raises becomes its HTTP code with a JSON body saying
    what was wrong: `error`, `code` and, as in gRPC's details, `reason`, `field_violations` and
    `metadata`. aiohttp's HTTP errors keep their headers (405's Allow); anything unexpected is
    logged with its traceback and answered 500 without the internals."""
    try:
        return await handler(request)
    except FashionragError as exc:
        # Too busy (429): say when to ask again, so that a polite client backs off.
        headers = {"Retry-After": RETRY_AFTER_SECONDS} if exc.http_status == 429 else None
        return web.json_response(json_body(exc), status=exc.http_status, headers=headers)
    except web.HTTPException as exc:
        if exc.status < 400:  # redirects and the like are not errors
            raise
        headers = {k: v for k, v in exc.headers.items() if k not in _BODY_HEADERS}
        body = http_error_body(exc.status, _message(request, exc))
        return web.json_response(body, status=exc.status, headers=headers)
    except Exception:
        log.exception("unexpected error in HTTP %s %s", request.method, request.path)
        body = http_error_body(500, f"internal error in {request.method} {request.path}")
        return web.json_response(body, status=500)


def parser_error(status: int, exc: BaseException | None) -> tuple[int, dict[str, Any]]:
    """The status and JSON body for an error aiohttp's HTTP parser found (or, with a status of
    500 and up, an error its request handler caught)."""
    if isinstance(exc, LineTooLong):
        limit = exc.args[1] if len(exc.args) > 1 else "the allowed"
        message = f"the request line or a header is longer than {limit} bytes"
        return 400, http_error_body(400, message, "LINE_TOO_LONG")
    if isinstance(exc, ContentEncodingError):
        # Only an encoding aiohttp would decode with a package it lacks (br, zstd) gets here.
        message = "the request's Content-Encoding cannot be decoded here; send gzip or deflate"
        return 415, http_error_body(415, message, "UNSUPPORTED_CONTENT_ENCODING")
    if isinstance(exc, HttpProcessingError):
        return 400, http_error_body(400, exc.message or "malformed request", "MALFORMED_REQUEST")
    if status >= 500:
        return status, http_error_body(status, "internal error")
    return status, http_error_body(status, HTTPStatus(status).phrase)


class JsonErrorRequestHandler(RequestHandler):
    """aiohttp's connection handler, answering the errors it finds itself (before any
    middleware runs) with the same JSON bodies and security headers as the application's, and
    one log line instead of a traceback."""

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        status, body = parser_error(status, exc)
        if status >= 500:
            log.error("HTTP %d for a request from %s", status, request.remote, exc_info=exc)
        else:
            log.info(
                "HTTP %d for a malformed request from %s: %s",
                status,
                request.remote,
                body["reason"],
            )
        if request.writer.output_size > 0:  # as aiohttp's own: too late for another response
            raise ConnectionError("a response is sent already, cannot send the error")
        response = web.json_response(body, status=status, headers=SECURITY_HEADERS)
        response.force_close()
        return response

    def log_exception(self, *args: Any, **kw: Any) -> None:
        """aiohttp's "Unhandled exception" traceback, except for a request body that cannot be
        decoded (a corrupt gzip stream): that one is answered 400 already (UploadReader), and
        aiohttp meets it again only while draining the body after the answer."""
        if isinstance(kw.get("exc_info"), RequestPayloadError):
            log.debug("closing a connection whose request body cannot be read")
            return
        super().log_exception(*args, **kw)


class _JsonErrorServer(web.Server):
    """aiohttp's low-level server, whose connections are JsonErrorRequestHandler's."""

    def __call__(self) -> RequestHandler:
        return JsonErrorRequestHandler(self, loop=self._loop, **self._kwargs)


class JsonErrorRunner(web.AppRunner):
    """An AppRunner whose parser-level errors are JSON too.

    aiohttp 3.x has no public hook for those (aio-libs/aiohttp#3287): its request handler
    answers them with text/plain from `RequestHandler.handle_error`, so this runner serves the
    app through a server that makes JsonErrorRequestHandler's. It relies on `web.Server`'s
    `_loop` and `_kwargs`, which test_http_safety's over-long request line test guards.
    """

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        return _JsonErrorServer(
            server.request_handler,
            request_factory=server.request_factory,
            handler_cancellation=server.handler_cancellation,
            loop=server._loop,
            **server._kwargs,
        )
