"""What every benchmark shares: the machine's description, timing, servers, the results file."""

from __future__ import annotations

import os
import platform
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from fashionrag.collection import connect
from tests.servers import free_port

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench_results"


def machine() -> str:
    """CPU model, cores, memory, and library versions, for the results' heading."""
    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (
        f"{cpu}, {os.cpu_count()} cores, {mem:.0f} GiB, {gpu}; Python "
        f"{platform.python_version()}, torch {torch.__version__}"
    )


def rate(count: int, fn: Callable[[], Any], repeat: int = 1) -> float:
    """Items per second of `fn` (which handles `count` items), best of `repeat` runs."""
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - started)
    return count / best


class Embedder:
    """An embedder service process for the length of a `with` block."""

    def __init__(self, *args: str) -> None:
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        env = {**os.environ, "HF_HUB_OFFLINE": "1"}
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "embedder_service",
                "--port",
                str(self.port),
                *args,
                "--log-level",
                "WARNING",
            ],
            cwd=ROOT,
            env=env,
        )

    def __enter__(self) -> Embedder:
        with grpc.insecure_channel(self.address) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise RuntimeError("embedder exited")
                try:
                    status = stub.Check(health_pb2.HealthCheckRequest(), timeout=1).status
                    if status == health_pb2.HealthCheckResponse.SERVING:
                        return self
                except grpc.RpcError:
                    pass
                time.sleep(0.3)
        raise TimeoutError("embedder not ready")

    def __exit__(self, *exc: object) -> None:
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(60)


def write_results(
    name: str, title: str, settings: str, header: list[str], rows: list[list[str]], notes: list[str]
) -> str:
    """Write bench_results/<name>.md and return its text."""
    lines = [
        f"### {title}",
        "",
        f"Machine: {machine()}.",
        "",
        f"Settings: {settings}.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    lines += ["", *notes]
    text = "\n".join(lines) + "\n"
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.md").write_text(text)
    return text


def chroma_server(data: Path) -> tuple[subprocess.Popen[bytes], str]:
    """`chroma run` on a free loopback port, data under `data`: the process and its URL."""
    port = free_port()
    process = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "chroma"),
            "run",
            "--path",
            str(data),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            connect(url).heartbeat()
            return process, url
        except Exception:
            time.sleep(0.2)
    raise RuntimeError("chroma did not start")
