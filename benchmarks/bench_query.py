"""Search latency through the query service (gRPC, by way of QueryClient) against a collection
of 10,000 vectors, with 1 and 8 concurrent callers, beside the bare cost of the same work
in-process: the text embedded by the model directly and a direct ChromaDB query.

    python -m benchmarks.bench_query [--vectors 10000] [--model ViT-B-32]
"""

from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from benchmarks.common import write_results
from devstack.servers import start_chroma, start_embedder, start_query
from embedder_service.client import EmbedderClient
from embedder_service.model import OpenClipModel
from embedder_service.settings import ModelSettings
from fashionrag.collection import ImageRecord
from fashionrag.collection_store import connect, open_collections
from fashionrag.fashionpedia import CATEGORIES
from query_service.client import QueryClient


def fill(chroma_url: str, embedder: EmbedderClient, n: int) -> None:
    """A collection of `n` random unit vectors with the contract's metadata, for this model."""
    model = embedder.model_info()
    collection = open_collections(connect(chroma_url), "bench", model, create=True).photos
    rng = np.random.default_rng(0)
    for start in range(0, n, 2000):
        count = min(2000, n - start)
        vectors = rng.normal(size=(count, model.dimension)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        records = [
            ImageRecord(
                f"train-{start + i}",
                start + i,
                "train",
                f"/data/{start + i}.jpg",
                640,
                960,
                (CATEGORIES[(start + i) % 27],),
            )
            for i in range(count)
        ]
        collection.upsert(
            ids=[r.id for r in records],
            embeddings=vectors.tolist(),
            metadatas=[r.metadata() for r in records],
        )


def latencies(call: Callable[[str], object], texts: list[str], callers: int) -> list[float]:
    """Per-call seconds when `callers` threads share `texts`."""

    def timed(text: str) -> float:
        started = time.perf_counter()
        call(text)
        return time.perf_counter() - started

    with ThreadPoolExecutor(callers) as pool:
        return list(pool.map(timed, texts))


def p(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1] * 1000


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_query")
    parser.add_argument("--vectors", type=int, default=10_000)
    parser.add_argument("--queries", type=int, default=48)
    parser.add_argument("--model", default="ViT-B-32")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    words = ["red", "blue", "long", "short", "striped", "leather", "summer", "formal"]
    garments = ["dress", "tops", "jacket", "shoes", "skirt", "coat", "bag", "pants"]

    def texts(tag: str) -> list[str]:  # all different: the service's cache must not help
        return [
            f"a {words[i % 8]} {garments[i // 8 % 8]} photo {tag}{i}" for i in range(args.queries)
        ]

    rows = []
    quiet = ("--log-level", "WARNING")
    with (
        tempfile.TemporaryDirectory() as tmp,
        start_chroma(Path(tmp) / "chroma", Path(tmp) / "chroma.log") as chroma,
    ):
        with (
            start_embedder(None, "--device", "cpu", *quiet, model=args.model, timeout=300) as emb,
            EmbedderClient(emb.address) as client,
        ):
            fill(chroma.http, client, args.vectors)
            with (
                start_query(
                    None,
                    emb.address,
                    chroma.http,
                    "bench",
                    "--auto-category",
                    "off",
                    *quiet,
                    http_port=0,
                    timeout=60,
                ) as query,
                # One client (one channel) shared by every caller thread, as a service would.
                QueryClient(query.address, timeout=60) as search_client,
            ):

                def search(text: str) -> object:
                    return search_client.text(text, top_k=10)

                search("warm-up")
                service = {c: latencies(search, texts(f"s{c}-"), c) for c in (1, 8)}
        # The bare cost, with the embedder service gone: model in-process, direct query.
        model = OpenClipModel.load(
            ModelSettings.model_validate(
                {"model": args.model, "pretrained": "none", "device": "cpu"}
            )
        )
        collection = connect(chroma.http).get_collection("bench")

        def bare(text: str) -> object:
            vector = model.embed_texts([text])[0][0]
            return collection.query(
                query_embeddings=[vector.tolist()],
                n_results=10,
                include=["metadatas", "distances"],
            )

        bare("warm-up")
        direct = {c: latencies(bare, texts(f"b{c}-"), c) for c in (1, 8)}

    for callers in (1, 8):
        s, b = service[callers], direct[callers]
        rows.append(
            [
                f"{callers}",
                f"{p(s, 50):.0f}",
                f"{p(s, 95):.0f}",
                f"{p(b, 50):.0f}",
                f"{p(b, 95):.0f}",
                f"{p(s, 50) / p(b, 50):.2f}x",
            ]
        )
    print(
        write_results(
            "query",
            "Search latency (ms)",
            f"{args.model} with random weights, CPU, {args.vectors} vectors in ChromaDB, top 10, "
            f"{args.queries} distinct text queries per row (the text cache never hits)",
            [
                "concurrent callers",
                "service p50",
                "service p95",
                "bare p50",
                "bare p95",
                "service / bare (p50)",
            ],
            rows,
            [
                "- bare: the same text embedded by the model in-process plus a direct "
                "ChromaDB query, no gRPC, no embedder service."
            ],
        )
    )


if __name__ == "__main__":
    main()
