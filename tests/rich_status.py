"""What a caller in any language reads from a failed call: the `google.rpc.Status` details,
unpacked with the standard library only (not fashionrag's own parser), for tests."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status


@dataclass
class Details:
    """The ErrorInfo and BadRequest of a status."""

    reason: str = ""
    domain: str = ""
    metadata: dict[str, str] = field(default_factory=dict)
    violations: list[tuple[str, str]] = field(default_factory=list)

    @property
    def fields(self) -> list[str]:
        return [f for f, _ in self.violations]


def details(exc: grpc.RpcError) -> Details:
    """The details of a failed call; fails the test when it carries none."""
    assert isinstance(exc, grpc.Call | grpc.aio.AioRpcError)
    status = rpc_status.from_call(exc)  # type: ignore[arg-type]
    assert status is not None, f"{exc.code()} without details: {exc.details()}"
    found = Details()
    for any_ in status.details:
        info = error_details_pb2.ErrorInfo()
        bad = error_details_pb2.BadRequest()
        if any_.Unpack(info):
            found.reason, found.domain, found.metadata = (
                info.reason,
                info.domain,
                dict(info.metadata),
            )
        elif any_.Unpack(bad):
            found.violations = [(v.field, v.description) for v in bad.field_violations]
    return found


def trailers_size(exc: grpc.RpcError) -> int:
    """Bytes of the trailers as sent (binary values base64-encoded, the message
    percent-encoded), to compare with gRPC's 8 KiB limit."""
    assert isinstance(exc, grpc.Call | grpc.aio.AioRpcError)
    size = len((exc.details() or "").encode()) * 3
    trailers: Any = exc.trailing_metadata() or ()
    for key, value in trailers:
        size += len(key) + (len(value) * 4 // 3 + 4 if isinstance(value, bytes) else len(value))
    return size
