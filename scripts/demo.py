"""`make demo`: ChromaDB, the embedder and the query service as local processes, index the first
images of a Fashionpedia split, run a sample query, and leave the services running.

Online it uses the real model and dataset from the Hugging Face hub. Offline:
    make demo DATASET=./sample_data MODEL=configs/tiny-clip.json PRETRAINED=none
(./sample_data is generated on first use). `make demo-stop` stops the services. Every flag can
also come from FASHIONRAG_<FLAG> (e.g. FASHIONRAG_QUERY_PORT); flags win.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, CliApp

from devstack.servers import (
    ROOT,
    Server,
    indexer_args,
    run_indexer,
    start_chroma,
    start_embedder,
    start_query,
)
from fashionrag.collection import DEFAULT_COLLECTION
from fashionrag.errors import FashionragError
from fashionrag.fashionpedia import HUB_DATASET
from fashionrag.settings import settings_config
from query_service.cli import format_table
from query_service.client import QueryClient
from query_service.json_contract import outcome_dict

STATE = ROOT / ".demo"
PIDS = STATE / "pids.json"
PY = sys.executable
OFFLINE_WAY = (
    "make demo DATASET=./sample_data MODEL=configs/tiny-clip.json PRETRAINED=none\n"
    "(random weights: the pipeline runs end to end, but the results mean nothing)"
)


class DemoSettings(BaseSettings):
    """Settings of `make demo` (scripts/demo.py)."""

    model_config = settings_config("make demo")

    dataset: str = Field(
        HUB_DATASET, description="a Hugging Face hub id, a local directory, or ./sample_data"
    )
    model: str = Field("ViT-B-32", description="an OpenCLIP name, hf-hub:<id>, or a config .json")
    pretrained: str = Field(
        "laion2b_s34b_b79k", description="a tag, a local checkpoint file, or none (random weights)"
    )
    limit: int = Field(1000, ge=0, description="index the first N images of the train split")
    query: str = Field("red tops", description="the sample search run at the end")
    chroma_port: int = Field(8000, ge=1, le=65535, description="ChromaDB's HTTP port")
    embedder_port: int = Field(50051, ge=1, le=65535, description="the embedder's gRPC port")
    query_port: int = Field(50052, ge=1, le=65535, description="the query service's gRPC port")
    http_port: int = Field(8080, ge=1, le=65535, description="the gallery and JSON API port")
    stop: bool = Field(False, description="stop a running demo and exit")


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


def needs_hub(args: DemoSettings) -> list[str]:
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


def started(server: Server, pids: dict[str, int]) -> Server:
    """Record a started service's pid, so that `make demo-stop` finds it."""
    assert server.process is not None
    pids[server.name] = server.process.pid
    PIDS.write_text(json.dumps(pids))
    say(f"started {server.name} (pid {server.process.pid}), log: .demo/{server.name}.log")
    return server


def wait_ready(server: Server, timeout: float) -> None:
    try:
        server.wait_ready(timeout)
    except (RuntimeError, TimeoutError) as exc:
        reason = str(exc).splitlines()[0]
        raise SystemExit(
            f"demo: {reason}; .demo/{server.name}.log ends:\n{server.log()[-3000:]}"
        ) from None


def sample_search(address: str, text: str) -> int:
    """Run the sample search through the query client and print its table; the exit status."""
    with QueryClient(address, timeout=60) as client:
        try:
            outcome = client.text(text, top_k=5)
        except FashionragError as error:
            print(f"demo: the sample search failed: {error}", file=sys.stderr)
            return 1
    print(format_table(outcome_dict(outcome)))
    return 0


def main(argv: list[str]) -> int:
    args = CliApp.run(DemoSettings, cli_args=argv)

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
        say("generating ./sample_data (generated outfits in Fashionpedia's schema)")
        subprocess.run(
            [
                PY,
                "-m",
                "devstack.sample_data",
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
                f"demo: port {port} is in use; free it or choose other ports with "
                "FASHIONRAG_CHROMA_PORT, FASHIONRAG_EMBEDDER_PORT, FASHIONRAG_QUERY_PORT, "
                "FASHIONRAG_HTTP_PORT (or --chroma-port ...)",
                file=sys.stderr,
            )
            return 2

    pids: dict[str, int] = {}
    # The services outlive `make demo` (sessions of their own) and run in the person's own
    # environment: online, with any FASHIONRAG_* settings they have.
    env = dict(os.environ)
    chroma = started(
        start_chroma(
            ROOT / "chroma_data",
            STATE / "chroma.log",
            args.chroma_port,
            env=env,
            detach=True,
            wait=False,
        ),
        pids,
    )
    emb = started(
        start_embedder(
            STATE / "embedder.log",
            port=args.embedder_port,
            model=args.model,
            pretrained=args.pretrained,
            precision="auto",  # the demo runs as a user would: the fastest on this machine
            env=env,
            detach=True,
            wait=False,
        ),
        pids,
    )
    qry = started(
        start_query(
            STATE / "query.log",
            emb.address,
            chroma.http,
            DEFAULT_COLLECTION,
            port=args.query_port,
            http_port=args.http_port,
            env=env,
            detach=True,
            wait=False,
        ),
        pids,
    )
    chroma_url, embedder, query = chroma.http, emb.address, qry.address
    wait_ready(chroma, 60)
    wait_ready(qry, 60)
    say("loading the model (a first run downloads the weights)...")
    wait_ready(emb, 1800)

    say(f"indexing the first {args.limit} images of {args.dataset} (train split)")
    index = run_indexer(
        *indexer_args(
            embedder,
            chroma_url,
            args.dataset,
            "images_data",
            DEFAULT_COLLECTION,
            "--split",
            "train",
            "--limit",
            str(args.limit),
        ),
        timeout=None,
        env=env,
        capture_stderr=False,
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
    status = sample_search(query, args.query)
    print()
    say(f"gallery: http://127.0.0.1:{args.http_port}/?q={args.query.replace(' ', '+')}")
    say(f"running: ChromaDB {chroma_url}, embedder {embedder}, query {query} (gRPC)")
    say(f'search more: .venv/bin/python -m query_service search "a long dress" --address {query}')
    say("stop everything: make demo-stop")
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
