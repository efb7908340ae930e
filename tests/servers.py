"""Real servers for the tests: `chroma run` and the fashionrag services as child processes on
free loopback ports."""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import grpc
import httpx
from grpc_health.v1 import health_pb2, health_pb2_grpc

ROOT = Path(__file__).resolve().parent.parent
TINY_MODEL = ROOT / "configs" / "tiny-clip.json"
VENV_BIN = Path(sys.executable).parent


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


def child_env(**extra: str) -> dict[str, str]:
    """The environment of a child service: ours, no FASHIONRAG_* leaking in, offline hub."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FASHIONRAG_")}
    env.update({"HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1", "ANONYMIZED_TELEMETRY": "False"})
    env.update(extra)
    return env


class Server:
    """A child process serving on `port`; `stop()` sends SIGTERM and waits."""

    def __init__(
        self,
        name: str,
        args: Sequence[str],
        port: int,
        log_path: Path,
        env: dict[str, str] | None = None,
    ) -> None:
        self.name = name
        self.args = list(args)
        self.port = port
        self.log_path = log_path
        self.env = env or child_env()
        self.process: subprocess.Popen[bytes] | None = None
        self.address = f"127.0.0.1:{port}"
        self.http = ""  # the HTTP base URL, for servers that have one

    def start(self) -> Server:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            self.args, stdout=log, stderr=subprocess.STDOUT, env=self.env, cwd=ROOT
        )
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def check_alive(self) -> None:
        assert self.process is not None
        if self.process.poll() is not None:
            raise RuntimeError(f"{self.name} exited with {self.process.returncode}:\n{self.log()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        """Signal the process and wait for it; return its exit code."""
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else 0
        self.process.send_signal(sig)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()


def wait_grpc_serving(server: Server, service: str = "", timeout: float = 120.0) -> None:
    """Wait until the server's health service reports SERVING."""
    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(server.address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            server.check_alive()
            try:
                status = stub.Check(
                    health_pb2.HealthCheckRequest(service=service), timeout=1
                ).status
                if status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.2)
    raise TimeoutError(f"{server.name} not SERVING after {timeout}s:\n{server.log()}")


def wait_http(server: Server, path: str, timeout: float = 60.0) -> None:
    """Wait until GET path answers 200."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        server.check_alive()
        try:
            if httpx.get(f"http://{server.address}{path}", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{server.name} not answering {path} after {timeout}s:\n{server.log()}")


def start_chroma(data_dir: Path, log_path: Path, port: int | None = None) -> Server:
    """`chroma run` on a free loopback port, data under `data_dir`, ready to use."""
    port = port or free_port()
    server = Server(
        "chroma",
        [
            str(VENV_BIN / "chroma"),
            "run",
            "--path",
            str(data_dir),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        port,
        log_path,
    )
    server.start()
    wait_http(server, "/api/v2/heartbeat")
    return server


def start_embedder(
    log_path: Path, *extra: str, port: int | None = None, model: Path = TINY_MODEL, seed: int = 0
) -> Server:
    """The embedder with the tiny model-config and seeded random weights, SERVING."""
    port = port or free_port()
    server = Server(
        "embedder",
        [
            sys.executable,
            "-m",
            "embedder_service",
            "--port",
            str(port),
            "--model",
            str(model),
            "--pretrained",
            "none",
            "--seed",
            str(seed),
            *extra,
        ],
        port,
        log_path,
    )
    server.start()
    wait_grpc_serving(server)
    return server


def start_query(
    log_path: Path,
    embedder: str,
    chroma_url: str,
    collection: str,
    *extra: str,
    port: int | None = None,
) -> Server:
    """The query service, SERVING, its HTTP side on a free port too (`server.http`)."""
    port = port or free_port()
    http_port = free_port()
    server = Server(
        "query",
        [
            sys.executable,
            "-m",
            "query_service",
            "serve",
            "--port",
            str(port),
            "--embedder",
            embedder,
            "--chroma",
            chroma_url,
            "--collection",
            collection,
            "--http-port",
            str(http_port),
            *extra,
        ],
        port,
        log_path,
    )
    server.http = f"http://127.0.0.1:{http_port}"
    server.start()
    wait_grpc_serving(server)
    return server


def indexer_args(
    embedder: str, chroma_url: str, dataset: Path, images: Path, collection: str, *extra: str
) -> list[str]:
    """The arguments of `python -m indexer_service` that every run here names, then `extra`."""
    return [
        "--embedder",
        embedder,
        "--chroma",
        chroma_url,
        "--dataset",
        str(dataset),
        "--images-dir",
        str(images),
        "--collection",
        collection,
        *extra,
    ]


def run_indexer(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run `python -m indexer_service` to the end; stdout's last line is its JSON summary."""
    return subprocess.run(
        [sys.executable, "-m", "indexer_service", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=child_env(),
        cwd=ROOT,
    )
