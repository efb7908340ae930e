"""What every fashionrag client shares: a channel that lets gRPC's own machinery spread calls over
every replica behind a DNS name (round_robin), skip replicas that report NOT_SERVING
(client-side health checking) and retry with jittered backoff; finding replicas added to the name
(servers close connections at a maximum age, and the channel then resolves the name again);
waiting until the service is ready, or failing fast when no replica is (a CallPolicy, per client);
and gRPC errors turned into fashionrag's domain errors in one place."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Concatenate, ParamSpec, Self, TypeVar

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from fashionrag.errors import Unavailable, from_rpc_error
from fashionrag.grpc_options import CHANNEL_OPTIONS
from fashionrag.grpc_security import PLAINTEXT, ClientSecurity

# A channel resolves its DNS name again when a connection ends (a server's maximum connection age,
# a replica gone), but by default at most once in 30 s: a replica added to the name would wait that
# long on top of the connection age. Once a second keeps it prompt while a burst of connections
# ending together still costs the DNS server one query.
MIN_SECONDS_BETWEEN_RESOLUTIONS = 1.0
CLIENT_OPTIONS: list[tuple[str, int]] = [
    *CHANNEL_OPTIONS,
    ("grpc.dns_min_time_between_resolutions_ms", round(MIN_SECONDS_BETWEEN_RESOLUTIONS * 1000)),
]


@dataclass(frozen=True)
class CallPolicy:
    """What a client's calls do while no replica can take them, and how soon it finds a replica
    that comes back.

    Attributes:
        wait_for_ready: True: a call waits (up to its deadline) for a replica to be READY, as a
            batch job wants; False: it fails at once with UNAVAILABLE, as a service answering
            people wants.
        max_attempts: tries per call, retries included (gRPC allows at most 5).
        max_reconnect_backoff_seconds: the longest pause between attempts to reconnect to a
            replica that went away; None: gRPC's default (120 s, reached after a few minutes
            down), so a replica back from a restart may wait that long before it is used.
        retry_throttling: stop retrying while most calls fail (gRPC's retryThrottling: after
            about five failures in a row, until calls succeed again), so an overloaded
            service is not sent every call several times.
    """

    wait_for_ready: bool = True
    max_attempts: int = 5
    max_reconnect_backoff_seconds: float | None = None
    retry_throttling: bool = False

    def channel_options(self) -> list[tuple[str, int]]:
        """The channel options this policy sets."""
        if self.max_reconnect_backoff_seconds is None:
            return []
        cap = round(self.max_reconnect_backoff_seconds * 1000)
        return [
            ("grpc.initial_reconnect_backoff_ms", min(cap, 250)),
            ("grpc.max_reconnect_backoff_ms", cap),
        ]


# A batch job (the indexer) rides out a replica's restart by waiting for it.
PATIENT = CallPolicy()
# A service on the path of a person's request (the query service calling the embedder) answers
# UNAVAILABLE within a moment when no replica is up, rather than holding the request for its
# whole deadline; retries fit well inside a second (gRPC's jittered backoff: 0.2 s, then 0.4 s,
# at most), and a replica back from a restart is found within about a second.
FAIL_FAST = CallPolicy(
    wait_for_ready=False, max_attempts=3, max_reconnect_backoff_seconds=1.0, retry_throttling=True
)


def service_config(
    service_name: str, retryable: Sequence[str], policy: CallPolicy = PATIENT
) -> dict[str, Any]:
    """The gRPC service config of a client of `service_name`: round_robin over every address,
    health-checked, and the codes in `retryable` retried with jittered exponential backoff, as
    `policy` says."""
    config: dict[str, Any] = {
        "loadBalancingConfig": [{"round_robin": {}}],
        "healthCheckConfig": {"serviceName": service_name},
        "methodConfig": [
            {
                "name": [{"service": service_name}],
                "waitForReady": policy.wait_for_ready,
                "retryPolicy": {
                    "maxAttempts": policy.max_attempts,
                    "initialBackoff": "0.2s",
                    "maxBackoff": "5s",
                    "backoffMultiplier": 2,
                    "retryableStatusCodes": list(retryable),
                },
            }
        ],
    }
    if policy.retry_throttling:
        config["retryThrottling"] = {"maxTokens": 10, "tokenRatio": 0.1}
    return config


class GrpcClient:
    """A channel to one address, or to every replica behind "dns:///name:port" (or
    "dns://DNS_SERVER:53/name:port", to ask that DNS server rather than the system's).

    Subclasses name their service, what to call it in messages, and which codes to retry.

    Args:
        target: "host:port", or "dns:///name:port" to use every address the name resolves to;
            the name is resolved again whenever a connection ends, so replicas added to it
            receive calls within about the servers' maximum connection age.
        timeout: the default deadline of each call, in seconds.
        policy: whether calls wait for a replica or fail fast (PATIENT or FAIL_FAST).
        security: TLS (mutual TLS) and the bearer token to send (default: plaintext, none).
    """

    service_name: ClassVar[str]
    label: ClassVar[str]  # e.g. "embedder", for messages
    backend: ClassVar[str]  # e.g. "embedder": the metadata `backend` when it fails or is late
    retryable: ClassVar[tuple[str, ...]] = ("UNAVAILABLE",)

    def __init__(
        self,
        target: str,
        timeout: float = 60.0,
        policy: CallPolicy = PATIENT,
        *,
        security: ClientSecurity = PLAINTEXT,
    ) -> None:
        self.target = target
        self.timeout = timeout
        self.policy = policy
        config = service_config(self.service_name, self.retryable, policy)
        options = [
            *CLIENT_OPTIONS,
            *policy.channel_options(),
            ("grpc.service_config", json.dumps(config)),
        ]
        self.channel = security.open_channel(target, options)
        self._health = health_pb2_grpc.HealthStub(self.channel)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the channel."""
        self.channel.close()

    def wait_until_ready(self, timeout: float = 120.0) -> None:
        """Block until the service reports SERVING.

        Raises:
            Unavailable: not SERVING within `timeout` seconds.
        """
        try:
            self._require_serving(timeout, wait_for_ready=True)
        except grpc.RpcError as exc:
            raise Unavailable(
                f"{self.label} at {self.target} not ready within {timeout:.0f}s: {exc}",
                metadata={"backend": self.backend},
            ) from exc

    def check_serving(self, timeout: float = 1.0) -> None:
        """Ask, without waiting for a connection, whether a replica reports SERVING now.

        Raises:
            Unavailable: none does (no replica reachable, or all NOT_SERVING), or no answer
                within `timeout` seconds; the message names the service and its address.
        """
        try:
            self._require_serving(timeout, wait_for_ready=False)
        except grpc.RpcError as exc:
            code = exc.code().name if isinstance(exc, grpc.Call) else "UNKNOWN"
            details = exc.details() if isinstance(exc, grpc.Call) else str(exc)
            raise Unavailable(
                f"{self.label} at {self.target}: {code}: {details}",
                metadata={"backend": self.backend},
            ) from exc

    def _require_serving(self, timeout: float, *, wait_for_ready: bool) -> None:
        """Ask the health service once; the two callers differ only in waiting and wording.

        Raises:
            grpc.RpcError: the call failed.
            Unavailable: it answered, but not SERVING.
        """
        response = self._health.Check(
            health_pb2.HealthCheckRequest(service=self.service_name),
            timeout=timeout,
            wait_for_ready=wait_for_ready,
        )
        if response.status != health_pb2.HealthCheckResponse.SERVING:
            raise Unavailable(
                f"{self.label} at {self.target} is not serving", metadata={"backend": self.backend}
            )


C = TypeVar("C", bound=GrpcClient)
P = ParamSpec("P")
R = TypeVar("R")


def translate_errors(
    method: Callable[Concatenate[C, P], R],
) -> Callable[Concatenate[C, P], R]:
    """Turn the gRPC errors of a client method into fashionrag's domain errors, naming the
    service and its address."""

    @functools.wraps(method)
    def wrapper(client: C, /, *args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return method(client, *args, **kwargs)
        except grpc.RpcError as exc:
            raise from_rpc_error(exc, f"{client.label} at {client.target}", client.backend) from exc

    return wrapper
