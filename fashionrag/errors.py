"""The one error vocabulary of fashionrag and its one mapping to gRPC status codes and HTTP codes.

Cores raise these domain errors, each with a short message for people and, for programs, a
reason (`google.rpc.ErrorInfo`), the request fields at fault (`google.rpc.BadRequest`) and a few
facts (ErrorInfo metadata). Servicers never pick status codes themselves: `map_errors` ends the
call with the class's gRPC code and those details as a `google.rpc.Status`; the HTTP side sends
`json_body`; clients read it all back with `from_rpc_error`, so callers in any language branch on
data rather than prose.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, NamedTuple, NoReturn, TypeVar

import grpc
from google.protobuf.message import DecodeError
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

log = logging.getLogger(__name__)

DOMAIN = "fashionrag.dev"
# gRPC sends the message (percent-encoded: up to 3 bytes per UTF-8 byte) and the Status (again
# the message, then the details; base64) as trailers, and refuses trailers past 8 KiB (the
# caller sees RESOURCE_EXHAUSTED instead of the error). These caps keep the worst case near
# 5 KiB, whatever a caller sent; a Python caller in the same process still sees everything.
MAX_MESSAGE_BYTES = 400
MAX_VIOLATIONS = 10
MAX_FIELD_BYTES = 64
MAX_DESCRIPTION_BYTES = 96
MAX_REASON_BYTES = 64
MAX_METADATA_BYTES = 768


class FieldViolation(NamedTuple):
    """One request field at fault (`google.rpc.BadRequest.FieldViolation`).

    `field` is the field's path in the request message (`top_k`, `categories[3]`), the same
    names on the HTTP side.
    """

    field: str
    description: str


class FashionragError(Exception):
    """Base of every error a fashionrag core raises on purpose.

    Args:
        message: for people: what was wrong and what to do, short (it is capped on the wire).
        reason: for programs: a stable UPPER_SNAKE_CASE name of the cause (ErrorInfo.reason);
            the class's `default_reason` when not given.
        field: the one request field at fault; its violation's description is `message`.
        violations: request fields at fault, each with what is wrong with it.
        metadata: a few small facts for programs (ErrorInfo.metadata), e.g. the backend down.
    """

    grpc_code: grpc.StatusCode = grpc.StatusCode.INTERNAL
    http_status: int = 500
    default_reason: str = "INTERNAL"

    def __init__(
        self,
        message: str = "",
        *,
        reason: str | None = None,
        field: str | None = None,
        violations: Iterable[FieldViolation | tuple[str, str]] = (),
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.reason = reason or self.default_reason
        own = [FieldViolation(field, message)] if field is not None else []
        self.violations: tuple[FieldViolation, ...] = (
            *own,
            *(FieldViolation(*v) for v in violations),
        )
        self.metadata: dict[str, str] = dict(metadata or {})


class InvalidArgument(FashionragError):
    """The caller sent something malformed; the message says what and what is allowed."""

    grpc_code = grpc.StatusCode.INVALID_ARGUMENT
    http_status = 400
    default_reason = "INVALID_ARGUMENT"


class NotFound(FashionragError):
    """A named thing (an image id, a collection) does not exist."""

    grpc_code = grpc.StatusCode.NOT_FOUND
    http_status = 404
    default_reason = "NOT_FOUND"


class ResourceExhausted(FashionragError):
    """Too much at once: a batch over its limit, or a full queue. Retry later or send less."""

    grpc_code = grpc.StatusCode.RESOURCE_EXHAUSTED
    http_status = 429
    default_reason = "RESOURCE_EXHAUSTED"


class FailedPrecondition(FashionragError):
    """The system is not in a state where the call can work (e.g. models disagree)."""

    grpc_code = grpc.StatusCode.FAILED_PRECONDITION
    http_status = 409
    default_reason = "FAILED_PRECONDITION"


class ModelMismatch(FailedPrecondition):
    """A collection's vectors come from another model than the embedder's."""

    default_reason = "MODEL_MISMATCH"


class Unavailable(FashionragError):
    """A backend (the embedder, ChromaDB) cannot be reached; retrying later may work.

    Raise it with `metadata={"backend": ...}` naming the backend.
    """

    grpc_code = grpc.StatusCode.UNAVAILABLE
    http_status = 503
    default_reason = "BACKEND_UNAVAILABLE"


class DeadlineExceeded(FashionragError):
    """The caller's deadline passed before the work was done."""

    grpc_code = grpc.StatusCode.DEADLINE_EXCEEDED
    http_status = 504
    default_reason = "DEADLINE_EXCEEDED"


class Unauthenticated(FashionragError):
    """The caller did not present the credentials the service asks for (its bearer token)."""

    grpc_code = grpc.StatusCode.UNAUTHENTICATED
    http_status = 401
    default_reason = "UNAUTHENTICATED"


class ConfigurationError(FashionragError):
    """A service was started with settings it cannot work with (a model it cannot load...)."""

    default_reason = "CONFIGURATION_ERROR"


def _clip(text: str, limit: int) -> str:
    """`text` cut to at most `limit` UTF-8 bytes, marked with an ellipsis when cut."""
    data = text.encode()
    if len(data) <= limit:
        return text
    return data[: limit - 3].decode(errors="ignore") + "…"


def to_status(error: FashionragError) -> status_pb2.Status:
    """The `google.rpc.Status` of a domain error, capped to fit gRPC's trailers: an ErrorInfo
    always, a BadRequest when fields are at fault (the first MAX_VIOLATIONS; the total is then
    in the metadata as `field_violations`)."""
    metadata: dict[str, str] = {}
    if len(error.violations) > MAX_VIOLATIONS:
        metadata["field_violations"] = str(len(error.violations))
    used = 0
    for key, value in error.metadata.items():
        key, value = _clip(key, 64), _clip(str(value), MAX_METADATA_BYTES // 2)
        used += len(key.encode()) + len(value.encode())
        if used > MAX_METADATA_BYTES:
            break
        metadata[key] = value
    info = error_details_pb2.ErrorInfo(
        reason=_clip(error.reason, MAX_REASON_BYTES), domain=DOMAIN, metadata=metadata
    )
    status = status_pb2.Status(
        code=error.grpc_code.value[0], message=_clip(str(error), MAX_MESSAGE_BYTES)
    )
    status.details.add().Pack(info)
    if error.violations:
        bad = error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(
                    field=_clip(v.field, MAX_FIELD_BYTES),
                    description=_clip(v.description, MAX_DESCRIPTION_BYTES),
                )
                for v in error.violations[:MAX_VIOLATIONS]
            ]
        )
        status.details.add().Pack(bad)
    return status


def json_body(error: FashionragError) -> dict[str, Any]:
    """The HTTP JSON body of a domain error: the same capped content as its gRPC status."""
    status = to_status(error)
    info, bad = _unpack(status)
    return {
        "error": status.message,
        "code": error.grpc_code.name,
        "reason": info.reason,
        "field_violations": [
            {"field": v.field, "description": v.description} for v in bad.field_violations
        ],
        "metadata": dict(info.metadata),
    }


def _unpack(
    status: status_pb2.Status,
) -> tuple[error_details_pb2.ErrorInfo, error_details_pb2.BadRequest]:
    info = error_details_pb2.ErrorInfo()
    bad = error_details_pb2.BadRequest()
    for detail in status.details:
        if detail.Is(info.DESCRIPTOR):
            detail.Unpack(info)
        elif detail.Is(bad.DESCRIPTOR):
            detail.Unpack(bad)
    return info, bad


async def abort(context: grpc.aio.ServicerContext, error: FashionragError) -> NoReturn:
    """End a call with the error's code, message and `google.rpc.Status` details."""
    status = rpc_status.to_status(to_status(error))
    # abort_with_status would replace the trailers set so far (the request id).
    trailers = (*(context.trailing_metadata() or ()), *status.trailing_metadata)
    await context.abort(status.code, status.details, trailers)
    raise AssertionError("context.abort returned")  # pragma: no cover


_Servicer = TypeVar("_Servicer")
_Request = TypeVar("_Request")
_Response = TypeVar("_Response")
Handler = Callable[[_Servicer, _Request, grpc.aio.ServicerContext], Awaitable[_Response]]


def map_errors(
    method: Handler[_Servicer, _Request, _Response],
) -> Handler[_Servicer, _Request, _Response]:
    """Wrap an async servicer method so domain errors end the call with their status code and
    details.

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
            await abort(context, exc)
        except grpc.aio.AbortError:
            raise
        except Exception:
            log.exception("unexpected error in %s", method.__qualname__)
            await abort(context, FashionragError(f"internal error in {method.__name__}"))

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
    grpc.StatusCode.UNAUTHENTICATED: Unauthenticated,
}


def _details(exc: grpc.Call | grpc.aio.AioRpcError) -> status_pb2.Status | None:
    """The `google.rpc.Status` a failed call carries, if any (and it agrees with the call)."""
    try:
        # An AioRpcError has the same synchronous accessors as a grpc.Call.
        return rpc_status.from_call(exc)  # type: ignore[arg-type]
    except (ValueError, DecodeError):  # another server's inconsistent or garbled details
        return None


def from_rpc_error(exc: grpc.RpcError, what: str, backend: str = "") -> FashionragError:
    """The domain error for a failed call to another service, with the reason, field
    violations and metadata the service sent.

    Args:
        exc: the error a gRPC stub raised.
        what: which service was called, for the message (e.g. "embedder at 127.0.0.1:50051").
        backend: the service's short name (e.g. "embedder"); an UNAVAILABLE or
            DEADLINE_EXCEEDED error says it in its metadata as `backend`, unless the service
            named another backend of its own (a call that waits for a replica to be ready ends
            DEADLINE_EXCEEDED when none comes, so that too can mean the backend is down).
    """
    call = exc if isinstance(exc, grpc.Call | grpc.aio.AioRpcError) else None
    code = call.code() if call is not None else grpc.StatusCode.UNKNOWN
    details = call.details() if call is not None else str(exc)
    status = _details(call) if call is not None else None
    cls = _BY_CODE.get(code, FashionragError)
    reason: str | None = None
    violations: list[FieldViolation] = []
    metadata: dict[str, str] = {}
    if status is not None:
        info, bad = _unpack(status)
        reason = info.reason or None
        violations = [FieldViolation(v.field, v.description) for v in bad.field_violations]
        metadata = dict(info.metadata)
    # A reason of its own names the subclass (MODEL_MISMATCH: ModelMismatch): the vocabulary's
    # own, never a service's subclass that inherits its reason (the indexer's DatasetUnavailable).
    cls = next(
        (
            c
            for c in cls.__subclasses__()
            if c.__module__ == __name__ and c.default_reason == reason
        ),
        cls,
    )
    if issubclass(cls, Unavailable | DeadlineExceeded) and backend:
        metadata.setdefault("backend", backend)
    return cls(
        f"{what}: {code_name(code)}: {details}",
        reason=reason,
        violations=violations,
        metadata=metadata,
    )
