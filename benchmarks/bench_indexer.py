"""End-to-end indexing speed: `python -m indexer_service` with the embedder service, against the
original project's way — `collection.add` with image URIs, Chroma's ImageLoader and
OpenCLIPEmbeddingFunction in-process — on the same photo-like images, model and ChromaDB server.

    python -m benchmarks.bench_indexer [--images 64] [--model ViT-B-32]
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from pathlib import Path

from benchmarks.common import write_results
from devstack import sample_data
from devstack.servers import indexer_args, run_indexer, start_chroma, start_embedder
from fashionrag.collection_store import connect
from indexer_service.dataset import iter_rows, load_split
from indexer_service.records import save_original


def original_way(model: str, files: list[Path], chroma_url: str, batch: int) -> float:
    """The original project: add URIs, Chroma loads and embeds them one image at a time."""
    from chromadb.utils.data_loaders import ImageLoader
    from chromadb.utils.embedding_functions import OpenCLIPEmbeddingFunction

    ef = OpenCLIPEmbeddingFunction(model_name=model, checkpoint=None, device="cpu")  # type: ignore[arg-type]
    collection = connect(chroma_url).create_collection(
        "original", embedding_function=ef, data_loader=ImageLoader()
    )
    uris = [str(f) for f in files]
    started = time.perf_counter()
    for start in range(0, len(uris), batch):
        part = uris[start : start + batch]
        collection.add(ids=[f"o-{start + i}" for i in range(len(part))], uris=part)
    seconds = time.perf_counter() - started
    assert collection.count() == len(uris)
    return len(uris) / seconds


def fashionrag_way(
    model: str, dataset: Path, chroma_url: str, images: Path, concurrency: int
) -> tuple[float, float]:
    with start_embedder(
        None, "--device", "cpu", "--log-level", "WARNING", model=model, timeout=300
    ) as embedder:
        started = time.perf_counter()
        result = run_indexer(
            *indexer_args(
                embedder.address,
                chroma_url,
                dataset,
                images,
                "fashionrag",
                "--limit",
                "0",
                "--concurrency",
                str(concurrency),
                "--log-level",
                "WARNING",
            ),
            timeout=None,
        )
        seconds = time.perf_counter() - started
    result.check_returncode()
    summary = json.loads(result.stdout.splitlines()[-1])
    # With and without the process's start-up (imports, connections): a long run amortises it.
    return int(summary["indexed"]) / seconds, float(summary["images_per_second"])


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_indexer")
    parser.add_argument("--images", type=int, default=160)
    parser.add_argument("--model", default="ViT-B-32")
    parser.add_argument("--concurrency", type=int, default=2)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        sample_data.generate(tmp / "data", "train", args.images, photos=True, files=2)
        # The original way reads files from disk: give it the same images as files.
        files = [
            save_original(tmp / "files", "train", row)
            for row in iter_rows(load_split(str(tmp / "data"), "train"))
        ]
        with start_chroma(tmp / "chroma", tmp / "chroma.log") as chroma:
            print(
                "original way (collection.add with URIs, ImageLoader, OpenCLIP EF)...", flush=True
            )
            original = original_way(args.model, files, chroma.http, 32)
            print("fashionrag indexer with the embedder service...", flush=True)
            ours, ours_running = fashionrag_way(
                args.model, tmp / "data", chroma.http, tmp / "images", args.concurrency
            )

    rows = [
        [
            "original way: collection.add(uris) + ImageLoader + OpenCLIP EF, in-process",
            f"{original:.2f}",
            "1.00x",
        ],
        [
            f"python -m indexer_service + embedder service (concurrency {args.concurrency}), "
            "whole process, start-up included",
            f"{ours:.2f}",
            f"{ours / original:.2f}x",
        ],
        [
            "the same, once running (the summary's images_per_second)",
            f"{ours_running:.2f}",
            f"{ours_running / original:.2f}x",
        ],
    ]
    print(
        write_results(
            "indexer",
            "Indexing throughput, end to end (images/s)",
            f"{args.model} with random weights, CPU, {args.images} photo-like JPEGs of about "
            "1024x700, one ChromaDB server (chroma run) for both",
            ["way", "images/s", "vs original"],
            rows,
            [
                f"- indexer / original way: **{ours / original:.2f}x** whole process, "
                f"**{ours_running / original:.2f}x** once running (goal >= 2.5x)"
            ],
        )
    )


if __name__ == "__main__":
    main()
