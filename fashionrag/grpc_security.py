"""The doors of every fashionrag gRPC server and client, in one place: TLS (mutual when a server
names a CA for its clients) and an optional bearer token.

A server with a certificate and key listens with TLS only; with a client CA too it requires each
caller to present a certificate signed by that CA. A server with a token refuses every call that
does not carry `authorization: Bearer <token>` with UNAUTHENTICATED, except the health and
reflection services: probes (compose, Kubernetes, load balancers) and gRPC's client-side health
checking ask health without any token, and reflection tells only what the public protos say.

A client trusting a CA opens a TLS channel (presenting its own certificate and key when given);
with a token it sends it on every call, TLS or not (gRPC's own call credentials refuse plaintext
channels, and a private network without TLS is a deployment people choose).
"""

from __future__ import annotations

import argparse
import collections
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health
from grpc_reflection.v1alpha import reflection

from fashionrag.bearer import check_bearer, header_value
from fashionrag.errors import ConfigurationError, FashionragError, abort

# Services any caller may use without the token (full names, as in "/<service>/<method>").
OPEN_SERVICES = frozenset(
    {health.SERVICE_NAME, reflection.SERVICE_NAME, "grpc.reflection.v1.ServerReflection"}
)


def _read(path: str, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ConfigurationError(f"cannot read the {what} {path}: {exc.strerror}") from exc


@dataclass(frozen=True)
class ServerSecurity:
    """A server's doors; empty fields leave that door open (OPEN_DOORS: plaintext, no token).

    Attributes:
        tls_cert: PEM certificate chain the server presents; with `tls_key`, TLS only.
        tls_key: PEM private key of `tls_cert`.
        tls_client_ca: PEM CA bundle; when given, callers must present a certificate it signed
            (mutual TLS).
        auth_token: the bearer token every call but health and reflection must carry.
    """

    tls_cert: str = ""
    tls_key: str = ""
    tls_client_ca: str = ""
    auth_token: str = ""

    def __post_init__(self) -> None:
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ConfigurationError("TLS needs both --tls-cert and --tls-key")
        if self.tls_client_ca and not self.tls_cert:
            raise ConfigurationError("--tls-client-ca (mutual TLS) needs --tls-cert and --tls-key")

    @property
    def tls(self) -> bool:
        """Whether the server listens with TLS."""
        return bool(self.tls_cert)

    def credentials(self) -> grpc.ServerCredentials | None:
        """The server's TLS credentials, or None for plaintext.

        Raises:
            ConfigurationError: a file cannot be read.
        """
        if not self.tls:
            return None
        pair = (_read(self.tls_key, "TLS key"), _read(self.tls_cert, "TLS certificate"))
        client_ca = _read(self.tls_client_ca, "client CA") if self.tls_client_ca else None
        return grpc.ssl_server_credentials(
            [pair], root_certificates=client_ca, require_client_auth=client_ca is not None
        )

    def interceptors(self) -> list[grpc.aio.ServerInterceptor]:
        """The server interceptors these doors need (the token check, when there is a token)."""
        return [BearerTokenCheck(self.auth_token)] if self.auth_token else []

    def describe(self) -> str:
        """For the startup log line, e.g. "mutual TLS, bearer token"."""
        tls = ("mutual TLS" if self.tls_client_ca else "TLS") if self.tls else "plaintext"
        return f"{tls}, {'bearer token' if self.auth_token else 'no token'}"


def _refusal(handler: grpc.RpcMethodHandler, error: FashionragError) -> grpc.RpcMethodHandler:
    """A handler of the same kind as `handler` that ends every call with `error`."""

    async def refuse(request: Any, context: grpc.aio.ServicerContext) -> Any:
        await abort(context, error)

    kinds = {
        (False, False): grpc.unary_unary_rpc_method_handler,
        (False, True): grpc.unary_stream_rpc_method_handler,
        (True, False): grpc.stream_unary_rpc_method_handler,
        (True, True): grpc.stream_stream_rpc_method_handler,
    }
    make: Any = kinds[(handler.request_streaming, handler.response_streaming)]
    return make(
        refuse,
        request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )


class BearerTokenCheck(grpc.aio.ServerInterceptor):
    """Refuses, with UNAUTHENTICATED, every call without `authorization: Bearer <token>`, except
    those to OPEN_SERVICES (health and reflection)."""

    def __init__(self, token: str) -> None:
        self._token = token

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        service = handler_call_details.method.lstrip("/").partition("/")[0]
        if handler is None or service in OPEN_SERVICES:
            return handler
        header = next(
            (
                str(value)
                for key, value in handler_call_details.invocation_metadata or ()
                if key == "authorization"
            ),
            None,
        )
        error = check_bearer(header, self._token)
        return handler if error is None else _refusal(handler, error)


class _CallDetails(
    collections.namedtuple(
        "_CallDetails",
        ("method", "timeout", "metadata", "credentials", "wait_for_ready", "compression"),
    ),
    grpc.ClientCallDetails,
):
    pass


class _SendToken(
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor,
    grpc.StreamStreamClientInterceptor,
):
    """Adds `authorization: Bearer <token>` to every call of a channel."""

    def __init__(self, token: str) -> None:
        self._metadata = ("authorization", header_value(token))

    def _details(self, details: grpc.ClientCallDetails) -> _CallDetails:
        return _CallDetails(
            details.method,
            details.timeout,
            [*(details.metadata or ()), self._metadata],
            details.credentials,
            getattr(details, "wait_for_ready", None),
            getattr(details, "compression", None),
        )

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(self._details(details), request)

    def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(self._details(details), request)

    def intercept_stream_unary(self, continuation: Any, details: Any, requests: Any) -> Any:
        return continuation(self._details(details), requests)

    def intercept_stream_stream(self, continuation: Any, details: Any, requests: Any) -> Any:
        return continuation(self._details(details), requests)


@dataclass(frozen=True)
class ClientSecurity:
    """A client's side of the doors; empty fields leave that door open (plaintext, no token).

    Attributes:
        tls_ca: PEM CA bundle to trust the server's certificate by; when given, the channel
            uses TLS.
        tls_cert: PEM certificate chain to present (mutual TLS), with `tls_key`.
        tls_key: PEM private key of `tls_cert`.
        token: the bearer token to send on every call.
        server_name: the name to check the server's certificate against, when it is not the
            target's host (e.g. a health check on 127.0.0.1 of a certificate for "embedder").
    """

    tls_ca: str = ""
    tls_cert: str = ""
    tls_key: str = ""
    token: str = ""
    server_name: str = ""

    def __post_init__(self) -> None:
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ConfigurationError("a client certificate needs its key, and the key its cert")
        if self.tls_cert and not self.tls_ca:
            raise ConfigurationError("a client certificate is for TLS: name the server's CA too")

    @property
    def tls(self) -> bool:
        """Whether the channel uses TLS."""
        return bool(self.tls_ca)

    def open_channel(self, target: str, options: Sequence[tuple[str, Any]] = ()) -> grpc.Channel:
        """A channel to `target` through these doors.

        Raises:
            ConfigurationError: a file cannot be read.
        """
        options = list(options)
        if self.tls:
            credentials = grpc.ssl_channel_credentials(
                root_certificates=_read(self.tls_ca, "CA"),
                private_key=_read(self.tls_key, "client key") if self.tls_key else None,
                certificate_chain=_read(self.tls_cert, "client certificate")
                if self.tls_cert
                else None,
            )
            if self.server_name:
                options.append(("grpc.ssl_target_name_override", self.server_name))
            channel = grpc.secure_channel(target, credentials, options=options)
        else:
            channel = grpc.insecure_channel(target, options=options)
        if self.token:
            channel = grpc.intercept_channel(channel, _SendToken(self.token))
        return channel


PLAINTEXT = ClientSecurity()
OPEN_DOORS = ServerSecurity()


def add_client_flags(parser: argparse.ArgumentParser, defaults: ClientSecurity = PLAINTEXT) -> None:
    """Add --tls-ca, --tls-cert, --tls-key and --token to a command's parser (defaults from
    `defaults`, e.g. FASHIONRAG_* settings)."""
    parser.add_argument(
        "--tls-ca",
        default=defaults.tls_ca,
        metavar="PEM",
        help="CA that signed the server's certificate: connect with TLS (default: plaintext)",
    )
    parser.add_argument(
        "--tls-cert",
        default=defaults.tls_cert,
        metavar="PEM",
        help="client certificate to present (mutual TLS), with --tls-key",
    )
    parser.add_argument(
        "--tls-key", default=defaults.tls_key, metavar="PEM", help="key of --tls-cert"
    )
    parser.add_argument(
        "--token",
        default=defaults.token,
        help="bearer token to send (better from FASHIONRAG_TOKEN: flags show in `ps`)",
    )


def client_security_from_args(args: argparse.Namespace, server_name: str = "") -> ClientSecurity:
    """The ClientSecurity of flags added by `add_client_flags`.

    Raises:
        ConfigurationError: a certificate without its key, or without a CA.
    """
    return ClientSecurity(args.tls_ca, args.tls_cert, args.tls_key, args.token, server_name)
