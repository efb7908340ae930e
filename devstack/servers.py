"""Real servers as child processes on loopback ports, waited on until healthy: `chroma run`, the
embedder and the query service, and runs of the indexer. One implementation for the pytest
fixtures, the benchmarks (as context managers) and the demo (detached, long-lived)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import grpc
import httpx
from grpc_health.v1 import health_pb2, health_pb2_grpc

from devstack.ports import free_port
from fashionrag.grpc_security import PLAINTEXT, ClientSecurity
from query_service.client import SERVICE_NAME as QUERY_SERVICE

ROOT = Path(__file__).resolve().parent.parent
TINY_MODEL = ROOT / "configs" / "tiny-clip.json"
VENV_BIN = Path(sys.executable).parent


def child_env(**extra: str) -> dict[str, str]:
    """The environment of a child service: ours, no FASHIONRAG_* leaking in, offline hub."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FASHIONRAG_")}
    env.update({"HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1", "ANONYMIZED_TELEMETRY": "False"})
    env.update(extra)
    return env


class Server:
    """A child process serving on `port`; `stop()` sends SIGTERM and waits, and so does leaving a
    `with` block.

    Args:
        name: what messages call it.
        args: its command line.
        port: the port it serves on (gRPC, or HTTP for `chroma run`).
        log_path: the file its stdout and stderr are appended to; None leaves them on ours.
        env: its environment; `child_env()` when None.
        health_path: an HTTP path that answers 200 once it is ready; empty: it has the gRPC
            health service instead.
        health_service: the gRPC health service name to wait on ("": the server's overall
            health).
        detach: start it in a session of its own, so that it outlives this process and a Ctrl-C
            in our terminal does not reach it (the demo's services).
    """

    def __init__(
        self,
        name: str,
        args: Sequence[str],
        port: int,
        log_path: Path | None = None,
        env: dict[str, str] | None = None,
        *,
        health_path: str = "",
        health_service: str = "",
        detach: bool = False,
    ) -> None:
        self.name = name
        self.args = list(args)
        self.port = port
        self.log_path = log_path
        self.env = env or child_env()
        self.health_path = health_path
        self.health_service = health_service
        self.detach = detach
        self.process: subprocess.Popen[bytes] | None = None
        self.address = f"127.0.0.1:{port}"
        self.http = ""  # the HTTP base URL, for servers that have one

    def start(self) -> Server:
        log = self.log_path.open("ab") if self.log_path else None
        try:
            self.process = subprocess.Popen(
                self.args,
                stdout=log,
                stderr=subprocess.STDOUT if log else None,
                env=self.env,
                cwd=ROOT,
                start_new_session=self.detach,
            )
        finally:
            if log:
                log.close()  # the child has its own copy of the descriptor
        return self

    def wait_ready(self, timeout: float | None = None) -> Server:
        """Wait until its health check passes (`timeout` None: 60 s for HTTP, 120 s for gRPC)."""
        if self.health_path:
            wait_http(self, self.health_path, 60.0 if timeout is None else timeout)
        else:
            wait_grpc_serving(
                self, self.health_service, timeout=120.0 if timeout is None else timeout
            )
        return self

    def log(self) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")

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

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def resident_mb(server: Server) -> float:
    """The server process's resident memory (VmRSS), in MB."""
    assert server.process is not None
    for line in Path(f"/proc/{server.process.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {server.name} (pid {server.process.pid})")


def wait_grpc_serving(
    server: Server, service: str = "", timeout: float = 120.0, security: ClientSecurity = PLAINTEXT
) -> None:
    """Wait until the server's health service reports SERVING (asked over TLS where `security`
    says: a server with TLS refuses plaintext)."""
    deadline = time.monotonic() + timeout
    with security.open_channel(server.address) as channel:
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


def _launch(server: Server, wait: bool, timeout: float | None) -> Server:
    """Start `server` and, if `wait`, wait until it is ready; one that never gets ready is
    stopped rather than left behind."""
    server.start()
    if wait:
        try:
            server.wait_ready(timeout)
        except BaseException:
            server.stop()
            raise
    return server


def start_chroma(
    data_dir: Path | str,
    log_path: Path | None = None,
    port: int | None = None,
    *,
    env: dict[str, str] | None = None,
    detach: bool = False,
    wait: bool = True,
    timeout: float | None = None,
) -> Server:
    """`chroma run` on a free loopback port (or `port`), data under `data_dir`, ready to use
    unless `wait` is False; its URL is `server.http`."""
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
        env,
        health_path="/api/v2/heartbeat",
        detach=detach,
    )
    server.http = f"http://127.0.0.1:{port}"
    return _launch(server, wait, timeout)


def start_embedder(
    log_path: Path | None,
    *extra: str,
    port: int | None = None,
    host: str = "127.0.0.1",
    model: Path | str = TINY_MODEL,
    pretrained: str = "none",
    seed: int = 0,
    precision: str = "fp32",
    env: dict[str, str] | None = None,
    detach: bool = False,
    wait: bool = True,
    timeout: float | None = None,
) -> Server:
    """The embedder, by default with the tiny model-config and seeded random weights, SERVING
    unless `wait` is False; `extra` are more of its flags. `host` is the loopback address it
    listens on: replicas on 127.0.0.2, 127.0.0.3... can share one port, as behind a DNS name.

    fp32 unless asked: tests compare with open_clip's own fp32 vectors, and on a CPU with AMX
    `--precision auto` would pick bf16.
    """
    port = port or free_port()
    server = Server(
        "embedder",
        [
            sys.executable,
            "-m",
            "embedder_service",
            "--host",
            host,
            "--port",
            str(port),
            "--model",
            str(model),
            "--pretrained",
            pretrained,
            "--seed",
            str(seed),
            "--precision",
            precision,
            *extra,
        ],
        port,
        log_path,
        env,
        detach=detach,
    )
    server.address = f"{host}:{port}"
    return _launch(server, wait, timeout)


def start_query(
    log_path: Path | None,
    embedder: str,
    chroma_url: str,
    collection: str,
    *extra: str,
    port: int | None = None,
    http_port: int | None = None,
    env: dict[str, str] | None = None,
    detach: bool = False,
    wait: bool = True,
    timeout: float | None = None,
) -> Server:
    """The query service, serving Search unless `wait` is False; its HTTP side on a free port too
    (or `http_port`; 0 turns it off), at `server.http`.

    Waited on until its Query service is SERVING: that does not wait for its backends (its
    overall health stays NOT_SERVING while one is down), so a test can start it without them.
    """
    port = port or free_port()
    http_port = free_port() if http_port is None else http_port
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
        env,
        health_service=QUERY_SERVICE,
        detach=detach,
    )
    server.http = f"http://127.0.0.1:{http_port}" if http_port else ""
    return _launch(server, wait, timeout)


def indexer_args(
    embedder: str,
    chroma_url: str,
    dataset: Path | str,
    images: Path | str,
    collection: str,
    *extra: str,
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


def start_indexer(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """Start `python -m indexer_service` without waiting (several at once, or one to kill
    mid-run); `communicate()` gives its stdout, whose last line is its JSON summary."""
    return subprocess.Popen(
        [sys.executable, "-m", "indexer_service", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env or child_env(),
        cwd=ROOT,
    )


def run_indexer(
    *args: str,
    timeout: float | None = 300,
    env: dict[str, str] | None = None,
    capture_stderr: bool = True,
) -> subprocess.CompletedProcess[str]:
    """Run `python -m indexer_service` to the end; stdout's last line is its JSON summary.

    `capture_stderr` False leaves its log and progress bar on our terminal (the demo).
    """
    return subprocess.run(
        [sys.executable, "-m", "indexer_service", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE if capture_stderr else None,
        text=True,
        timeout=timeout,
        env=env or child_env(),
        cwd=ROOT,
    )
