"""`make demo`: ChromaDB, the embedder and the query service as local processes, index the first
images of a Fashionpedia split, run a sample query, and leave the services running.

Online it uses the real model and dataset from the Hugging Face hub. Offline:
    make demo DATASET=./sample_data MODEL=configs/tiny-clip.json PRETRAINED=none
(./sample_data is generated on first use). `make demo-stop` stops the services.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import grpc
import httpx
from grpc_health.v1 import health_pb2, health_pb2_grpc

ROOT = Path(__file__).resolve().parent.parent
STATE = ROOT / ".demo"
PIDS = STATE / "pids.json"
PY = sys.executable
OFFLINE_WAY = (
    "make demo DATASET=./sample_data MODEL=configs/tiny-clip.json PRETRAINED=none\n"
    "(random weights: the pipeline runs end to end, but the results mean nothing)"
)


def say(text: str) -> None:
    print(f"demo: {text}", flush=True)


def hub_reachable(timeout: float = 5.0) -> bool:
    """Whether huggingface.co answers on its HTTPS port."""
    if os.environ.get("HF_HUB_OFFLINE") == "1":
        return False
    try:
        with socket.create_connection(("huggingface.co", 443), timeout=timeout):
            return True
    except OSError:
        return False


def needs_hub(args: argparse.Namespace) -> list[str]:
    needs = []
    if not Path(args.dataset).is_dir() and args.dataset != "./sample_data":
        needs.append(f"the dataset {args.dataset}")
    local = args.pretrained.lower() == "none" or Path(args.pretrained).is_file()
    if not local:
        needs.append(f"the {args.model} weights ({args.pretrained})")
    return needs


def stop_previous() -> None:
    if not PIDS.exists():
        return
    for name, pid in json.loads(PIDS.read_text()).items():
        try:
            os.kill(pid, signal.SIGTERM)
            say(f"stopped the previous demo's {name} (pid {pid})")
        except ProcessLookupError:
            pass
    PIDS.unlink()
    time.sleep(1)


def port_free(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def start(name: str, args: list[str], pids: dict[str, int]) -> subprocess.Popen[bytes]:
    log = (STATE / f"{name}.log").open("ab")
    process = subprocess.Popen(
        args, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True
    )  # outlives `make demo`
    pids[name] = process.pid
    PIDS.write_text(json.dumps(pids))
    say(f"started {name} (pid {process.pid}), log: .demo/{name}.log")
    return process


def wait_until(name: str, process: subprocess.Popen[bytes], ready: object, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log = (STATE / f"{name}.log").read_text(errors="replace")
            raise SystemExit(f"demo: {name} exited ({process.returncode}):\n{log[-3000:]}")
        if ready():  # type: ignore[operator]
            return
        time.sleep(0.5)
    raise SystemExit(f"demo: {name} not ready after {timeout:.0f}s; see .demo/{name}.log")


def grpc_serving(address: str) -> bool:
    with grpc.insecure_channel(address) as channel:
        try:
            response = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=1
            )
        except grpc.RpcError:
            return False
    return response.status == health_pb2.HealthCheckResponse.SERVING


def http_ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def main() -> int:
    parser = argparse.ArgumentParser(prog="make demo")
    parser.add_argument("--dataset", default="detection-datasets/fashionpedia")
    parser.add_argument("--model", default="ViT-B-32")
    parser.add_argument("--pretrained", default="laion2b_s34b_b79k")
    parser.add_argument("--limit", type=int, default=1000)
    parser.add_argument("--query", default="red tops")
    parser.add_argument("--chroma-port", type=int, default=int(os.environ.get("CHROMA_PORT", 8000)))
    parser.add_argument(
        "--embedder-port", type=int, default=int(os.environ.get("EMBEDDER_PORT", 50051))
    )
    parser.add_argument("--query-port", type=int, default=int(os.environ.get("QUERY_PORT", 50052)))
    parser.add_argument("--http-port", type=int, default=int(os.environ.get("HTTP_PORT", 8080)))
    parser.add_argument("--stop", action="store_true", help="stop a running demo and exit")
    args = parser.parse_args()

    STATE.mkdir(exist_ok=True)
    stop_previous()
    if args.stop:
        return 0

    needs = needs_hub(args)
    if needs and not hub_reachable():
        print(
            f"demo: the Hugging Face hub cannot be reached from here, and it is needed for "
            f"{' and '.join(needs)}.\nRun the same pipeline offline on generated data in "
            f"Fashionpedia's schema:\n  {OFFLINE_WAY}",
            file=sys.stderr,
        )
        return 2
    if args.dataset == "./sample_data" and not (ROOT / "sample_data").is_dir():
        say("generating ./sample_data (random pictures in Fashionpedia's schema)")
        subprocess.run(
            [
                PY,
                "-m",
                "indexer_service.sample_data",
                "sample_data",
                "--rows",
                str(max(args.limit, 50)),
            ],
            check=True,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    for port in (args.chroma_port, args.embedder_port, args.query_port, args.http_port):
        if not port_free(port):
            print(
                f"demo: port {port} is in use; free it or set CHROMA_PORT, EMBEDDER_PORT, "
                "QUERY_PORT, HTTP_PORT",
                file=sys.stderr,
            )
            return 2

    pids: dict[str, int] = {}
    chroma_url = f"http://127.0.0.1:{args.chroma_port}"
    embedder = f"127.0.0.1:{args.embedder_port}"
    query = f"127.0.0.1:{args.query_port}"
    chroma = start(
        "chroma",
        [
            str(Path(PY).parent / "chroma"),
            "run",
            "--path",
            "chroma_data",
            "--host",
            "127.0.0.1",
            "--port",
            str(args.chroma_port),
        ],
        pids,
    )
    emb = start(
        "embedder",
        [
            PY,
            "-m",
            "embedder_service",
            "--port",
            str(args.embedder_port),
            "--model",
            args.model,
            "--pretrained",
            args.pretrained,
        ],
        pids,
    )
    qry = start(
        "query",
        [
            PY,
            "-m",
            "query_service",
            "serve",
            "--port",
            str(args.query_port),
            "--embedder",
            embedder,
            "--chroma",
            chroma_url,
            "--http-port",
            str(args.http_port),
        ],
        pids,
    )
    wait_until("chroma", chroma, lambda: http_ok(f"{chroma_url}/api/v2/heartbeat"), 60)
    wait_until("query", qry, lambda: grpc_serving(query), 60)
    say("loading the model (a first run downloads the weights)...")
    wait_until("embedder", emb, lambda: grpc_serving(embedder), 1800)

    say(f"indexing the first {args.limit} images of {args.dataset} (train split)")
    index = subprocess.run(
        [
            PY,
            "-m",
            "indexer_service",
            "--embedder",
            embedder,
            "--chroma",
            chroma_url,
            "--dataset",
            args.dataset,
            "--split",
            "train",
            "--limit",
            str(args.limit),
            "--images-dir",
            "images_data",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    if index.returncode != 0:
        say("indexing failed (see above); the services are still running: make demo-stop")
        return index.returncode
    summary = json.loads(index.stdout.strip().splitlines()[-1])
    say(
        f"indexed {summary['indexed']}, skipped {summary['skipped']} (already there), "
        f"failed {summary['failed']} in {summary['seconds']:.1f}s"
    )

    say(f'searching "{args.query}"')
    search = subprocess.run(
        [PY, "-m", "query_service", "search", args.query, "-k", "5", "--address", query], cwd=ROOT
    )
    print()
    say(f"gallery: http://127.0.0.1:{args.http_port}/?q={args.query.replace(' ', '+')}")
    say(f"running: ChromaDB {chroma_url}, embedder {embedder}, query {query} (gRPC)")
    say(f'search more: .venv/bin/python -m query_service search "a long dress" --address {query}')
    say("stop everything: make demo-stop")
    return search.returncode


if __name__ == "__main__":
    sys.exit(main())
