"""Requests refused before any servicer sees them, as INVALID_ARGUMENT with details: bytes that
do not decode as the method's request message (grpcio itself answers UNKNOWN), and enum numbers
the contract does not define (proto3 keeps them, and code reading them would take an unknown
number for the default)."""

from __future__ import annotations

import functools
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from fashionrag.errors import FashionragError, FieldViolation, InvalidArgument, abort


class _Refused:
    """What the decoder hands on instead of a request it refuses; the handler aborts with it."""

    __slots__ = ("error",)

    def __init__(self, error: FashionragError) -> None:
        self.error = error


@functools.cache
def _has_enums(descriptor: Descriptor) -> bool:
    """Whether a message type holds an enum field anywhere inside it (most do not: no walk)."""
    seen: set[str] = set()
    stack = [descriptor]
    while stack:
        message = stack.pop()
        if message.full_name in seen:
            continue
        seen.add(message.full_name)
        for field in message.fields:
            if field.enum_type is not None:
                return True
            if field.message_type is not None:
                stack.append(field.message_type)
    return False


def _check_value(field: FieldDescriptor, value: Any, path: str) -> list[FieldViolation]:
    if field.enum_type is not None:
        if value in field.enum_type.values_by_number:
            return []
        return [FieldViolation(path, f"{value} is not a {field.enum_type.name} value")]
    if field.message_type is not None and isinstance(value, Message):
        return unknown_enum_values(value, f"{path}.")
    return []


def unknown_enum_values(message: Message, prefix: str = "") -> list[FieldViolation]:
    """The fields of `message` (nested ones too) that hold an enum number their enum does not
    define, each named by its path (`category_mode`, `images[2].kind`)."""
    if not _has_enums(message.DESCRIPTOR):
        return []
    found: list[FieldViolation] = []
    for field, value in message.ListFields():
        path = f"{prefix}{field.name}"
        entry = field.message_type
        if entry is not None and entry.GetOptions().map_entry:
            value_field = entry.fields_by_name["value"]
            for key, item in value.items():
                found += _check_value(value_field, item, f"{path}[{key!r}]")
        elif field.is_repeated:
            for i, item in enumerate(value):
                found += _check_value(field, item, f"{path}[{i}]")
        else:
            found += _check_value(field, value, path)
    return found


def _decoder(method: str, deserializer: Callable[[bytes], Any]) -> Callable[[bytes], Any]:
    def decode(data: bytes) -> Any:
        try:
            request = deserializer(data)
        except Exception:
            return _Refused(
                InvalidArgument(
                    f"the request body is not a valid request message of {method}",
                    reason="MALFORMED_REQUEST",
                )
            )
        if isinstance(request, Message):
            unknown = unknown_enum_values(request)
            if unknown:
                return _Refused(
                    InvalidArgument(
                        "unknown enum value: "
                        + "; ".join(f"{v.field} {v.description}" for v in unknown),
                        reason="UNKNOWN_ENUM_VALUE",
                        violations=unknown,
                    )
                )
        return request

    return decode


Behaviour = Callable[..., Any]  # a handler behaviour: (request, context) -> response(s)


def _checked(behaviour: Behaviour) -> Behaviour:
    """`behaviour`, aborting first when its request was refused (an async generator stays one,
    as grpc.aio tells server-streaming kinds apart by it)."""
    if inspect.isasyncgenfunction(behaviour):

        async def checked_stream(
            request: Any, context: grpc.aio.ServicerContext
        ) -> AsyncIterator[Any]:
            if isinstance(request, _Refused):
                await abort(context, request.error)
            async for response in behaviour(request, context):
                yield response

        return checked_stream

    async def checked(request: Any, context: grpc.aio.ServicerContext) -> Any:
        if isinstance(request, _Refused):
            await abort(context, request.error)
        return await behaviour(request, context)

    return checked


def _is_async(behaviour: Behaviour | None) -> bool:
    return inspect.iscoroutinefunction(behaviour) or inspect.isasyncgenfunction(behaviour)


class RequestChecks(grpc.aio.ServerInterceptor):
    """Refuses undecodable requests and unknown enum numbers with INVALID_ARGUMENT (reasons
    MALFORMED_REQUEST, UNKNOWN_ENUM_VALUE), for every unary-request method of an asyncio server.

    It must be the innermost interceptor: it replaces the handler's request deserializer.
    """

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None or handler.request_streaming or handler.request_deserializer is None:
            return handler
        decode = _decoder(handler_call_details.method, handler.request_deserializer)
        if handler.unary_unary is not None and _is_async(handler.unary_unary):
            return grpc.unary_unary_rpc_method_handler(
                _checked(handler.unary_unary),
                request_deserializer=decode,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream is not None and _is_async(handler.unary_stream):
            return grpc.unary_stream_rpc_method_handler(
                _checked(handler.unary_stream),
                request_deserializer=decode,
                response_serializer=handler.response_serializer,
            )
        return handler
