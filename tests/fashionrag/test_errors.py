"""Every domain error reaches a real gRPC caller with its own status code and its details
(`google.rpc.Status`: ErrorInfo, BadRequest), short enough for gRPC's trailers; requests that do
not decode are INVALID_ARGUMENT; clients read it all back into domain errors."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

import grpc
import pytest
from google.protobuf import type_pb2
from prometheus_client import CollectorRegistry

from fashionrag import errors
from fashionrag.grpc_metrics import ObservabilityInterceptor, RpcMetrics
from fashionrag.grpc_server import GrpcService
from fashionrag.request_checks import unknown_enum_values
from fashionrag.v1 import embedder_pb2, embedder_pb2_grpc, query_pb2, query_pb2_grpc
from tests.rich_status import details, trailers_size

GRPC_TRAILERS_LIMIT = 8 * 1024


class Raising(embedder_pb2_grpc.EmbedderServiceServicer, query_pb2_grpc.QueryServiceServicer):
    def __init__(self, error: BaseException) -> None:
        self.error = error

    @errors.map_errors
    async def GetModelInfo(self, request, context):
        raise self.error

    @errors.map_errors
    async def Search(self, request, context):
        raise self.error


Call = Callable[[grpc.aio.Channel], object]


def fail(
    error: BaseException,
    call: Call | None = None,
    interceptors: Sequence[grpc.aio.ServerInterceptor] = (),
) -> grpc.aio.AioRpcError:
    """The error a real caller gets from a real server whose methods raise `error` (the call
    is GetModelInfo unless `call` makes another)."""

    async def run() -> grpc.aio.AioRpcError:
        def register(server: grpc.aio.Server) -> None:
            embedder_pb2_grpc.add_EmbedderServiceServicer_to_server(Raising(error), server)
            query_pb2_grpc.add_QueryServiceServicer_to_server(Raising(error), server)

        names = ["fashionrag.v1.EmbedderService", "fashionrag.v1.QueryService"]
        service = GrpcService("t", "127.0.0.1:0", register, names, interceptors=interceptors)
        task = asyncio.create_task(service.run())
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{service.port}") as channel:
                with pytest.raises(grpc.aio.AioRpcError) as info:
                    if call is None:
                        await embedder_pb2_grpc.EmbedderServiceStub(channel).GetModelInfo(
                            embedder_pb2.GetModelInfoRequest(), timeout=10, wait_for_ready=True
                        )
                    else:
                        await call(channel)  # type: ignore[misc]
                return info.value
        finally:
            service.request_stop()
            await task

    return asyncio.run(run())


def all_error_classes() -> set[type[errors.FashionragError]]:
    """Every class of the one vocabulary (services' own subclasses, such as the indexer's
    DatasetUnavailable, inherit their class's mapping and are not part of it)."""
    found: set[type[errors.FashionragError]] = {errors.FashionragError}
    stack = [errors.FashionragError]
    while stack:
        for sub in stack.pop().__subclasses__():
            if sub.__module__ == errors.__name__:
                found.add(sub)
            stack.append(sub)
    return found


CODES: list[tuple[errors.FashionragError, grpc.StatusCode, int, str]] = [
    (errors.InvalidArgument("bad"), grpc.StatusCode.INVALID_ARGUMENT, 400, "INVALID_ARGUMENT"),
    (errors.NotFound("none"), grpc.StatusCode.NOT_FOUND, 404, "NOT_FOUND"),
    (
        errors.ResourceExhausted("full"),
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        429,
        "RESOURCE_EXHAUSTED",
    ),
    (
        errors.FailedPrecondition("st"),
        grpc.StatusCode.FAILED_PRECONDITION,
        409,
        "FAILED_PRECONDITION",
    ),
    (errors.ModelMismatch("models"), grpc.StatusCode.FAILED_PRECONDITION, 409, "MODEL_MISMATCH"),
    (errors.Unavailable("down"), grpc.StatusCode.UNAVAILABLE, 503, "BACKEND_UNAVAILABLE"),
    (errors.DeadlineExceeded("late"), grpc.StatusCode.DEADLINE_EXCEEDED, 504, "DEADLINE_EXCEEDED"),
    (errors.Unauthenticated("who"), grpc.StatusCode.UNAUTHENTICATED, 401, "UNAUTHENTICATED"),
    (errors.ConfigurationError("conf"), grpc.StatusCode.INTERNAL, 500, "CONFIGURATION_ERROR"),
    (errors.FashionragError("base"), grpc.StatusCode.INTERNAL, 500, "INTERNAL"),
]


def test_every_error_class_has_a_mapping_test() -> None:
    assert {type(error) for error, *_ in CODES} == all_error_classes()


@pytest.mark.parametrize(("error", "code", "http", "reason"), CODES)
def test_error_maps_to_its_status_code_and_reason(
    error: errors.FashionragError, code: grpc.StatusCode, http: int, reason: str
) -> None:
    rpc_error = fail(error)
    assert rpc_error.code() == code
    assert rpc_error.details() == str(error)
    found = details(rpc_error)
    assert (found.reason, found.domain) == (reason, errors.DOMAIN)
    assert found.violations == []
    assert error.http_status == http
    assert errors.json_body(error) == {
        "error": str(error),
        "code": code.name,
        "reason": reason,
        "field_violations": [],
        "metadata": {},
    }


def test_unexpected_error_is_internal_without_the_internals() -> None:
    rpc_error = fail(ValueError("secret internals"))
    assert rpc_error.code() == grpc.StatusCode.INTERNAL
    assert "secret internals" not in (rpc_error.details() or "")
    assert details(rpc_error).reason == "INTERNAL"


def test_details_carry_reason_fields_and_metadata() -> None:
    error = errors.InvalidArgument(
        "top_k is 0; it must be between 1 and 100",
        field="top_k",
        violations=[("categories[1]", "unknown category 'x'")],
        reason="SOME_REASON",
        metadata={"allowed": "a|b"},
    )
    found = details(fail(error))
    assert found.reason == "SOME_REASON"
    assert found.violations == [
        ("top_k", "top_k is 0; it must be between 1 and 100"),
        ("categories[1]", "unknown category 'x'"),
    ]
    assert found.metadata == {"allowed": "a|b"}
    body = errors.json_body(error)
    assert body["reason"] == "SOME_REASON"
    assert body["field_violations"][0] == {
        "field": "top_k",
        "description": "top_k is 0; it must be between 1 and 100",
    }
    assert body["metadata"] == {"allowed": "a|b"}


def test_a_huge_error_stays_within_grpcs_trailers_and_keeps_its_code() -> None:
    # Caller-made text everywhere, non-ASCII (percent-encoding triples it): before the caps,
    # 2,000 names in a message came back as RESOURCE_EXHAUSTED, the trailers over their limit.
    name = "ü" * 3000
    error = errors.InvalidArgument(
        name,
        violations=[(f"categories[{i}]{name}", name) for i in range(2000)],
        metadata={f"k{i}": name for i in range(20)},
    )
    rpc_error = fail(error)
    assert rpc_error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert len((rpc_error.details() or "").encode()) <= errors.MAX_MESSAGE_BYTES
    found = details(rpc_error)
    assert len(found.violations) == errors.MAX_VIOLATIONS
    assert found.violations[0][0].startswith("categories[0]")
    assert found.metadata["field_violations"] == "2000"
    assert trailers_size(rpc_error) < GRPC_TRAILERS_LIMIT * 3 // 4
    body = errors.json_body(error)
    assert len(body["field_violations"]) == errors.MAX_VIOLATIONS
    assert body["error"] == rpc_error.details()


def test_details_keep_the_request_id_trailer() -> None:
    observed = ObservabilityInterceptor(RpcMetrics("t", CollectorRegistry()))
    rpc_error = fail(errors.NotFound("none", reason="X_GONE"), interceptors=[observed])
    trailers: Any = rpc_error.trailing_metadata()
    keys = [key for key, _ in trailers]
    assert "x-request-id" in keys
    assert details(rpc_error).reason == "X_GONE"


async def _garbage(channel: grpc.aio.Channel) -> None:
    raw = channel.unary_unary(  # no serializer: the bytes as given
        "/fashionrag.v1.QueryService/Search", request_serializer=None, response_deserializer=None
    )
    await raw(b"\xff\xff\xff\xff\x0f", timeout=10, wait_for_ready=True)


def test_bytes_that_are_not_a_request_are_invalid_argument() -> None:
    # grpcio alone answers UNKNOWN ("Unexpected DecodeError"); the servicer never runs.
    rpc_error = fail(AssertionError("the servicer ran"), call=_garbage)
    assert rpc_error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert details(rpc_error).reason == "MALFORMED_REQUEST"
    assert "/fashionrag.v1.QueryService/Search" in (rpc_error.details() or "")


async def _unknown_mode(channel: grpc.aio.Channel) -> None:
    request = query_pb2.SearchRequest(text="red tops", category_mode=7)  # type: ignore[arg-type]
    await query_pb2_grpc.QueryServiceStub(channel).Search(request, timeout=10, wait_for_ready=True)


def test_unknown_enum_number_is_invalid_argument_naming_the_field() -> None:
    rpc_error = fail(AssertionError("the servicer ran"), call=_unknown_mode)
    assert rpc_error.code() == grpc.StatusCode.INVALID_ARGUMENT
    found = details(rpc_error)
    assert found.reason == "UNKNOWN_ENUM_VALUE"
    assert found.fields == ["category_mode"]


async def _health_garbage(channel: grpc.aio.Channel) -> None:
    raw = channel.unary_stream(
        "/grpc.health.v1.Health/Watch", request_serializer=None, response_deserializer=None
    )
    async for _ in raw(b"\xff\xff\xff", timeout=10, wait_for_ready=True):
        pass


def test_garbage_to_a_server_streaming_method_is_invalid_argument() -> None:
    rpc_error = fail(AssertionError("unused"), call=_health_garbage)
    assert rpc_error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert details(rpc_error).reason == "MALFORMED_REQUEST"


def test_unknown_enum_values_are_named_by_their_path() -> None:
    message = type_pb2.Type(
        fields=[
            type_pb2.Field(kind=type_pb2.Field.TYPE_STRING),
            type_pb2.Field(kind=99, cardinality=type_pb2.Field.CARDINALITY_OPTIONAL),  # type: ignore[arg-type]
        ],
        syntax=7,  # type: ignore[arg-type]
    )
    assert [v.field for v in unknown_enum_values(message)] == ["fields[1].kind", "syntax"]
    assert unknown_enum_values(type_pb2.Type(syntax=type_pb2.SYNTAX_PROTO3)) == []


class FakeCall(grpc.RpcError, grpc.Call):  # a fault we cannot cause
    def __init__(self, code: grpc.StatusCode, trailers: tuple = ()) -> None:
        self._code = code
        self._trailers = trailers

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return "why"

    def trailing_metadata(self) -> tuple:
        return self._trailers


@pytest.mark.parametrize(
    ("code", "cls"),
    [
        (grpc.StatusCode.INVALID_ARGUMENT, errors.InvalidArgument),
        (grpc.StatusCode.UNAVAILABLE, errors.Unavailable),
        (grpc.StatusCode.FAILED_PRECONDITION, errors.FailedPrecondition),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, errors.ResourceExhausted),
        (grpc.StatusCode.DEADLINE_EXCEEDED, errors.DeadlineExceeded),
        (grpc.StatusCode.NOT_FOUND, errors.NotFound),
        (grpc.StatusCode.UNAUTHENTICATED, errors.Unauthenticated),
        (grpc.StatusCode.INTERNAL, errors.FashionragError),
    ],
)
def test_client_side_translation_keeps_the_kind(code: grpc.StatusCode, cls: type) -> None:
    error = errors.from_rpc_error(FakeCall(code), "svc")
    assert type(error) is cls
    assert error.grpc_code == code or cls is errors.FashionragError
    assert "svc" in str(error) and "why" in str(error)


def test_client_reads_the_details_into_the_domain_error() -> None:
    sent = errors.ModelMismatch(
        "models differ", metadata={"collection": "c"}, violations=[("model", "another one")]
    )
    rpc_error = fail(sent)
    received = errors.from_rpc_error(rpc_error, "query service at x", backend="query")
    assert type(received) is errors.ModelMismatch
    assert received.reason == "MODEL_MISMATCH"
    assert received.metadata == {"collection": "c"}
    assert received.violations == (errors.FieldViolation("model", "another one"),)


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        (grpc.StatusCode.UNAVAILABLE, "BACKEND_UNAVAILABLE"),
        (grpc.StatusCode.DEADLINE_EXCEEDED, "DEADLINE_EXCEEDED"),
    ],
)
def test_backend_failure_without_details_names_the_backend(
    code: grpc.StatusCode, reason: str
) -> None:
    error = errors.from_rpc_error(FakeCall(code), "svc", "embedder")
    assert error.reason == reason
    assert error.metadata == {"backend": "embedder"}


def test_a_refused_request_does_not_blame_the_backend() -> None:
    error = errors.from_rpc_error(FakeCall(grpc.StatusCode.INVALID_ARGUMENT), "svc", "embedder")
    assert error.metadata == {}


def test_unavailable_relayed_keeps_the_backend_the_service_named() -> None:
    rpc_error = fail(errors.Unavailable("chroma down", metadata={"backend": "chromadb"}))
    error = errors.from_rpc_error(rpc_error, "query service at x", backend="query")
    assert (error.reason, error.metadata) == ("BACKEND_UNAVAILABLE", {"backend": "chromadb"})


def test_a_subclass_defined_elsewhere_is_never_what_a_client_gets() -> None:
    class ElsewhereUnavailable(errors.Unavailable):  # as the indexer's DatasetUnavailable
        pass

    rpc_error = fail(errors.Unavailable("embedder down", metadata={"backend": "embedder"}))
    error = errors.from_rpc_error(rpc_error, "query service at x", backend="query")
    assert type(error) is errors.Unavailable, ElsewhereUnavailable


def test_inconsistent_details_are_ignored_not_fatal() -> None:
    status = errors.to_status(errors.NotFound("another message"))
    trailers = (("grpc-status-details-bin", status.SerializeToString()),)
    error = errors.from_rpc_error(FakeCall(grpc.StatusCode.NOT_FOUND, trailers), "svc")
    assert type(error) is errors.NotFound and error.reason == "NOT_FOUND"
