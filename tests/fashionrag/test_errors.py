"""Every domain error reaches a real gRPC caller with its own status code."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from fashionrag import errors
from fashionrag.grpc_server import GrpcService
from fashionrag.v1 import embedder_pb2, embedder_pb2_grpc


class Raising(embedder_pb2_grpc.EmbedderServicer):
    def __init__(self, error: BaseException) -> None:
        self.error = error

    @errors.map_errors
    async def GetModelInfo(self, request, context):
        raise self.error


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (errors.InvalidArgument("bad"), grpc.StatusCode.INVALID_ARGUMENT),
        (errors.NotFound("none"), grpc.StatusCode.NOT_FOUND),
        (errors.ResourceExhausted("full"), grpc.StatusCode.RESOURCE_EXHAUSTED),
        (errors.FailedPrecondition("state"), grpc.StatusCode.FAILED_PRECONDITION),
        (errors.ModelMismatch("models"), grpc.StatusCode.FAILED_PRECONDITION),
        (errors.Unavailable("down"), grpc.StatusCode.UNAVAILABLE),
        (errors.DeadlineExceeded("late"), grpc.StatusCode.DEADLINE_EXCEEDED),
        (errors.ConfigurationError("conf"), grpc.StatusCode.INTERNAL),
        (ValueError("secret internals"), grpc.StatusCode.INTERNAL),
    ],
)
def test_error_maps_to_its_status_code(error: BaseException, code: grpc.StatusCode) -> None:
    async def call() -> grpc.aio.AioRpcError:
        def register(server: grpc.aio.Server) -> None:
            embedder_pb2_grpc.add_EmbedderServicer_to_server(Raising(error), server)

        service = GrpcService("t", "127.0.0.1:0", register, ["fashionrag.v1.Embedder"])
        task = asyncio.create_task(service.run())
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{service.port}") as channel:
                stub = embedder_pb2_grpc.EmbedderStub(channel)
                with pytest.raises(grpc.aio.AioRpcError) as info:
                    await stub.GetModelInfo(
                        embedder_pb2.GetModelInfoRequest(), timeout=10, wait_for_ready=True
                    )
                return info.value
        finally:
            service.request_stop()
            await task

    rpc_error = asyncio.run(call())
    assert rpc_error.code() == code
    if isinstance(error, errors.FashionragError):
        assert rpc_error.details() == str(error)
    else:
        assert "secret internals" not in (rpc_error.details() or "")


@pytest.mark.parametrize(
    ("code", "cls"),
    [
        (grpc.StatusCode.INVALID_ARGUMENT, errors.InvalidArgument),
        (grpc.StatusCode.UNAVAILABLE, errors.Unavailable),
        (grpc.StatusCode.FAILED_PRECONDITION, errors.FailedPrecondition),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, errors.ResourceExhausted),
        (grpc.StatusCode.DEADLINE_EXCEEDED, errors.DeadlineExceeded),
        (grpc.StatusCode.NOT_FOUND, errors.NotFound),
        (grpc.StatusCode.INTERNAL, errors.FashionragError),
    ],
)
def test_client_side_translation_keeps_the_kind(code: grpc.StatusCode, cls: type) -> None:
    class FakeCall(grpc.RpcError, grpc.Call):  # type: ignore[misc]  # a fault we cannot cause
        def code(self) -> grpc.StatusCode:
            return code

        def details(self) -> str:
            return "why"

    error = errors.from_rpc_error(FakeCall(), "svc")
    assert type(error) is cls
    assert error.grpc_code == code or cls is errors.FashionragError
    assert "svc" in str(error) and "why" in str(error)
