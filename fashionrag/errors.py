"""The one error vocabulary of fashionrag and its one mapping to gRPC status codes and HTTP codes.

Cores raise these domain errors; servicers never pick status codes themselves: `map_errors`
turns each error into its class's gRPC code, and the HTTP side reads `http_status`.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc

log = logging.getLogger(__name__)


class FashionragError(Exception):
    """Base of every error a fashionrag core raises on purpose."""

    grpc_code: grpc.StatusCode = grpc.StatusCode.INTERNAL
    http_status: int = 500


class InvalidArgument(FashionragError):
    """The caller sent something malformed; the message says what and what is allowed."""

    grpc_code = grpc.StatusCode.INVALID_ARGUMENT
    http_status = 400


class NotFound(FashionragError):
    """A named thing (an image id, a collection) does not exist."""

    grpc_code = grpc.StatusCode.NOT_FOUND
    http_status = 404


class ResourceExhausted(FashionragError):
    """Too much at once: a batch over its limit, or a full queue. Retry later or send less."""

    grpc_code = grpc.StatusCode.RESOURCE_EXHAUSTED
    http_status = 429


class FailedPrecondition(FashionragError):
    """The system is not in a state where the call can work (e.g. models disagree)."""

    grpc_code = grpc.StatusCode.FAILED_PRECONDITION
    http_status = 409


class ModelMismatch(FailedPrecondition):
    """A collection's vectors come from another model than the embedder's."""


class Unavailable(FashionragError):
    """A backend (the embedder, ChromaDB) cannot be reached; retrying later may work."""

    grpc_code = grpc.StatusCode.UNAVAILABLE
    http_status = 503


class DeadlineExceeded(FashionragError):
    """The caller's deadline passed before the work was done."""

    grpc_code = grpc.StatusCode.DEADLINE_EXCEEDED
    http_status = 504


class ConfigurationError(FashionragError):
    """A service was started with settings it cannot work with (a model it cannot load...)."""


_Servicer = TypeVar("_Servicer")
_Request = TypeVar("_Request")
_Response = TypeVar("_Response")
Handler = Callable[[_Servicer, _Request, grpc.aio.ServicerContext], Awaitable[_Response]]


def map_errors(
    method: Handler[_Servicer, _Request, _Response],
) -> Handler[_Servicer, _Request, _Response]:
    """Wrap an async servicer method so domain errors end the call with their status code.

    Anything unexpected is logged with its traceback and reported as INTERNAL, without the
    internals in the message.
    """

    @functools.wraps(method)
    async def wrapper(
        self: _Servicer, request: _Request, context: grpc.aio.ServicerContext
    ) -> _Response:
        try:
            return await method(self, request, context)
        except FashionragError as exc:
            await context.abort(exc.grpc_code, str(exc))
        except grpc.aio.AbortError:
            raise
        except Exception:
            log.exception("unexpected error in %s", method.__qualname__)
            await context.abort(grpc.StatusCode.INTERNAL, f"internal error in {method.__name__}")
        raise AssertionError("context.abort returned")  # pragma: no cover

    return wrapper


def code_name(code: Any) -> str:
    """The status code's name for logs and metrics, whatever form it comes in."""
    return getattr(code, "name", str(code))


_BY_CODE: dict[grpc.StatusCode, type[FashionragError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
    grpc.StatusCode.OUT_OF_RANGE: InvalidArgument,
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhausted,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPrecondition,
    grpc.StatusCode.UNAVAILABLE: Unavailable,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceeded,
}


def from_rpc_error(exc: grpc.RpcError, what: str) -> FashionragError:
    """The domain error for a failed call to another service.

    Args:
        exc: the error a gRPC stub raised.
        what: which service was called, for the message (e.g. "embedder at 127.0.0.1:50051").
    """
    code = exc.code() if isinstance(exc, grpc.Call) else grpc.StatusCode.UNKNOWN
    details = exc.details() if isinstance(exc, grpc.Call) else str(exc)
    cls = _BY_CODE.get(code, FashionragError)
    return cls(f"{what}: {code_name(code)}: {details}")
