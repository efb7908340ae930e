"""The one lifecycle of every fashionrag gRPC server.

Health (`grpc.health.v1`) reports NOT_SERVING until the service is ready (the model loaded), and a
service that needs backends turns its overall health (service "") NOT_SERVING while one is down
(`set_readiness`); server reflection is on, and SIGTERM or SIGINT turns health back to
NOT_SERVING and stops the server with a grace period so that calls in flight finish.

Every server also closes each connection after a maximum age (calls in flight get the same grace),
so that callers balancing over a DNS name resolve it again and find replicas added since; and it
refuses a port another process already listens on, instead of sharing it (SO_REUSEPORT, gRPC's
default, would let a second server silently take part of the first one's traffic).

Its doors (TLS, mutual TLS, a bearer token) are a ServerSecurity (fashionrag.grpc_security).
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable, Sequence

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from fashionrag import reflection
from fashionrag.errors import ConfigurationError
from fashionrag.grpc_options import CHANNEL_OPTIONS, DEFAULT_MAX_CONNECTION_AGE_SECONDS
from fashionrag.grpc_security import OPEN_DOORS, ServerSecurity
from fashionrag.request_checks import RequestChecks

log = logging.getLogger(__name__)


def server_options(
    max_connection_age_seconds: float, grace_seconds: float
) -> list[tuple[str, int]]:
    """The options of every fashionrag server: the shared message limits, no SO_REUSEPORT, and
    connections closed after `max_connection_age_seconds` (0: never), calls in flight on them
    given `grace_seconds` to finish."""
    options = [*CHANNEL_OPTIONS, ("grpc.so_reuseport", 0)]
    if max_connection_age_seconds > 0:
        options += [
            ("grpc.max_connection_age_ms", round(max_connection_age_seconds * 1000)),
            ("grpc.max_connection_age_grace_ms", round(grace_seconds * 1000)),
        ]
    return options


class GrpcService:
    """A gRPC server with health, reflection and graceful shutdown around some servicers.

    Args:
        name: the service's name for logs.
        address: host:port to listen on (port 0 picks a free one).
        register: adds the servicers to the server.
        service_names: full names of the registered services, for health and reflection.
        grace_seconds: how long calls in flight may run on after a stop is asked, or after
            their connection reached its maximum age.
        interceptors: server interceptors (metrics, request ids); every server also refuses
            undecodable requests and unknown enum numbers (fashionrag.request_checks).
        max_connection_age_seconds: each connection is closed after about this long (0: never),
            so that callers resolve the service's name again.
        security: TLS and the bearer token (default: plaintext, no token).

    Raises:
        ConfigurationError: `address` cannot be listened on (the port is taken, or the host is
            not this machine's), or a TLS file cannot be read.
    """

    def __init__(
        self,
        name: str,
        address: str,
        register: Callable[[grpc.aio.Server], None],
        service_names: Sequence[str],
        grace_seconds: float = 10.0,
        interceptors: Sequence[grpc.aio.ServerInterceptor] = (),
        max_connection_age_seconds: float = DEFAULT_MAX_CONNECTION_AGE_SECONDS,
        security: ServerSecurity = OPEN_DOORS,
    ) -> None:
        self.name = name
        self.grace_seconds = grace_seconds
        self.service_names = list(service_names)
        self.server = grpc.aio.server(
            options=server_options(max_connection_age_seconds, grace_seconds),
            # Innermost: it decodes the requests, so it sits right beside the handlers.
            # The token check sits inside metrics, so refused calls are counted too.
            interceptors=[*interceptors, *security.interceptors(), RequestChecks()],
        )
        register(self.server)
        self.health = health.aio.HealthServicer()  # type: ignore[attr-defined]
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        reflection.enable_server_reflection([*self.service_names, health.SERVICE_NAME], self.server)
        refused = ConfigurationError(
            f"{name}: cannot listen on {address}: the port is in use by another process, "
            "or the host is not an address of this machine"
        )
        self.security = security
        credentials = security.credentials()
        try:
            if credentials is None:
                self.port = self.server.add_insecure_port(address)
            else:
                self.port = self.server.add_secure_port(address, credentials)
        except RuntimeError as exc:  # grpcio's "Failed to bind to address"
            raise refused from exc
        if self.port == 0:  # what older grpcio returned instead of raising
            raise refused
        self._stopping = asyncio.Event()
        self._ready = True
        self._serving = False

    async def _set_health(
        self, status: health_pb2.HealthCheckResponse.ServingStatus.ValueType
    ) -> None:
        for service in ["", *self.service_names]:
            await self.health.set(service, status)

    async def set_readiness(self, ready: bool) -> None:
        """Say whether the server can do its work now (the backends it needs reachable).

        Only the overall health (service "", what compose's and Kubernetes' readiness probes
        ask) follows it; the named services stay SERVING while the process runs, so a caller's
        client-side health check still lets its calls through and they hear at once, in an
        UNAVAILABLE that names it, which backend is down (rather than waiting, or a bare "no
        healthy backend" from their own channel). Kept until the server starts serving.
        """
        self._ready = ready
        if self._serving:
            await self.health.set("", self._overall())

    def _overall(self) -> health_pb2.HealthCheckResponse.ServingStatus.ValueType:
        serving = health_pb2.HealthCheckResponse.SERVING
        return serving if self._ready else health_pb2.HealthCheckResponse.NOT_SERVING

    def request_stop(self) -> None:
        """Ask the server to drain and stop (what SIGTERM does)."""
        self._stopping.set()

    async def run(self, ready: Callable[[], Awaitable[None]] | None = None) -> None:
        """Start, run `ready` (e.g. load the model) while NOT_SERVING, serve until a stop.

        Args:
            ready: awaited after the port is open and before health turns SERVING.
        """
        await self._set_health(health_pb2.HealthCheckResponse.NOT_SERVING)
        await self.server.start()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop)
        log.info(
            "%s listening on port %d, %s (NOT_SERVING until ready)",
            self.name,
            self.port,
            self.security.describe(),
        )
        try:
            if ready is not None:
                await ready()
            for service in self.service_names:
                await self.health.set(service, health_pb2.HealthCheckResponse.SERVING)
            await self.health.set("", self._overall())
            self._serving = True
            log.info("%s ready: SERVING", self.name)
            await self._stopping.wait()
        finally:
            self._serving = False
            log.info(
                "%s stopping: NOT_SERVING, draining for up to %.0fs", self.name, self.grace_seconds
            )
            await self.health.enter_graceful_shutdown()
            await self.server.stop(self.grace_seconds)
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
            log.info("%s stopped", self.name)
