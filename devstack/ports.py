"""Free loopback ports for the servers a test, a benchmark or the smoke test starts."""

from __future__ import annotations

import os
import random
import socket

# Ports are drawn below the kernel's ephemeral range (32768-60999 on Linux), so neither a client
# socket's local port nor another bind(0) can take one between our check and the child's bind;
# and a port is never handed out twice in a process, so two calls in a row (a service's gRPC and
# metrics ports, say) cannot get the same one.
_PORT_RANGE = (20000, 32000)
_handed_out: set[int] = set()
_random = random.Random(os.getpid())


def free_port() -> int:
    """A TCP port free on the loopback interface now and not handed out before by this process."""
    for _ in range(1000):
        port = _random.randrange(*_PORT_RANGE)
        if port in _handed_out:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise RuntimeError(f"no free loopback port in {_PORT_RANGE}")
