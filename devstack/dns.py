"""A DNS server on loopback whose answers a test changes while it runs: replicas joining and
leaving a service's name, as a Kubernetes headless Service or compose `--scale` would make them.

gRPC channels ask it through the authority of their target,
`dns://127.0.0.1:PORT/name.test:50051`, so nothing of the machine's own resolver changes.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Any

from dnslib import QTYPE, RR, A
from dnslib.server import BaseResolver, DNSLogger, DNSServer

from devstack.ports import free_port


class _Records(BaseResolver):
    """A-records by name, changed under a lock while the server threads read them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._addresses: dict[str, list[str]] = {}

    def set(self, name: str, addresses: Iterable[str]) -> None:
        with self._lock:
            self._addresses[name.rstrip(".").lower()] = list(addresses)

    def resolve(self, request: Any, handler: Any) -> Any:
        reply = request.reply()
        question = request.q
        name = str(question.qname).rstrip(".").lower()
        with self._lock:
            addresses = list(self._addresses.get(name, []))
        # AAAA and other questions get an empty answer: the names here are IPv4 only. The TTL
        # matters little: gRPC resolves again when a connection ends, not when a TTL runs out.
        if question.qtype == QTYPE.A:
            for address in addresses:
                reply.add_answer(RR(question.qname, QTYPE.A, rdata=A(address), ttl=1))
        return reply


class LoopbackDns:
    """Answers A-queries for the names set on it, over UDP and TCP on 127.0.0.1; a context
    manager that stops both servers on leaving.

    Args:
        port: the port (a free one when None).
    """

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.records = _Records()
        quiet = DNSLogger("-request,-reply,-truncated,-error,-recv,-send,-data", False)
        # c-ares asks over UDP and falls back to TCP for long answers: serve both.
        self._servers = [
            DNSServer(self.records, address="127.0.0.1", port=self.port, tcp=tcp, logger=quiet)
            for tcp in (False, True)
        ]
        self._started = False

    def set(self, name: str, addresses: Iterable[str]) -> None:
        """Make `name` resolve to `addresses` (none: the name has no address)."""
        self.records.set(name, addresses)

    def target(self, name: str, port: int) -> str:
        """The gRPC target that resolves `name` through this server: every address, `port`."""
        return f"dns://127.0.0.1:{self.port}/{name}:{port}"

    def start(self) -> LoopbackDns:
        for server in self._servers:
            server.start_thread()
        self._started = True
        return self

    def stop(self) -> None:
        """Stop answering and close the sockets (they are bound from construction on)."""
        for server in self._servers:
            if self._started:
                server.stop()
            server.server.server_close()
        self._started = False

    def __enter__(self) -> LoopbackDns:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
