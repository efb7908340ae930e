"""End-to-end indexing speed: `python -m indexer_service` with the embedder service, with and
without garment records (`--regions garments|none`, same data, same embedder, same run), and
against the original project's way — `collection.add` with image URIs, Chroma's ImageLoader and
OpenCLIPEmbeddingFunction in-process — on the same photo-like images, model and ChromaDB server.

    python -m benchmarks.bench_indexer [--images 32] [--repeat 2] [--skip-original]
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from dataclasses import dataclass
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


@dataclass(frozen=True)
class Run:
    """One indexer run: photos per second with and without the process's start-up, seconds
    per photo once running, and garments written per photo."""

    whole: float
    running: float
    seconds_per_photo: float
    garments_per_photo: float


def index_once(
    embedder: str, dataset: Path, chroma_url: str, images: Path, name: str, *extra: str
) -> Run:
    started = time.perf_counter()
    result = run_indexer(
        *indexer_args(
            embedder, chroma_url, dataset, images, name, "--log-level", "WARNING", *extra
        ),
        timeout=None,
    )
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(
            f"indexer run {name} failed ({result.returncode}):\n{result.stderr[-3000:]}"
        )
    summary = json.loads(result.stdout.splitlines()[-1])
    indexed = int(summary["indexed"])
    # With and without the process's start-up (imports, connections): a long run amortises it.
    return Run(
        whole=indexed / seconds,
        running=float(summary["images_per_second"]),
        seconds_per_photo=float(summary["seconds"]) / max(indexed, 1),
        garments_per_photo=int(summary["garments"]) / max(indexed, 1),
    )


def fashionrag_way(
    model: str, dataset: Path, chroma_url: str, images: Path, concurrency: int, repeat: int
) -> tuple[Run, Run]:
    """The indexer on the same data with `--regions none` and `--regions garments`, one
    embedder for both (warmed up first), the two alternated `repeat` times so that a machine
    busier in one moment weighs on both; the fastest run of each."""
    with start_embedder(
        None, "--device", "cpu", "--log-level", "WARNING", model=model, timeout=300
    ) as embedder:
        common = ("--limit", "0", "--concurrency", str(concurrency))
        index_once(embedder.address, dataset, chroma_url, images, "warmup", "--limit", "4")
        photos: list[Run] = []
        garments: list[Run] = []
        for n in range(repeat):
            photos.append(
                index_once(
                    embedder.address,
                    dataset,
                    chroma_url,
                    images,
                    f"photos-{n}",
                    *common,
                    "--regions",
                    "none",
                )
            )
            garments.append(
                index_once(embedder.address, dataset, chroma_url, images, f"garments-{n}", *common)
            )
    fastest = min(photos, key=lambda r: r.seconds_per_photo)
    return fastest, min(garments, key=lambda r: r.seconds_per_photo)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_indexer")
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--model", default="ViT-B-32")
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument(
        "--repeat", type=int, default=2, help="runs of each, alternated (the fastest counts)"
    )
    parser.add_argument(
        "--skip-original", action="store_true", help="measure the indexer only (faster)"
    )
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
            original = None
            if not args.skip_original:
                print(
                    "original way (collection.add with URIs, ImageLoader, OpenCLIP EF)...",
                    flush=True,
                )
                original = original_way(args.model, files, chroma.http, 32)
            print("fashionrag indexer with the embedder service...", flush=True)
            photos, garments = fashionrag_way(
                args.model,
                tmp / "data",
                chroma.http,
                tmp / "images",
                args.concurrency,
                args.repeat,
            )

    def versus(value: float) -> str:
        return f"{value / original:.2f}x" if original else "-"

    rows = []
    if original:
        rows.append(
            [
                "original way: collection.add(uris) + ImageLoader + OpenCLIP EF, in-process",
                f"{original:.2f}",
                "1.00x",
                "-",
                "-",
            ]
        )
    for label, run in (("--regions none (photos only)", photos), ("--regions garments", garments)):
        rows += [
            [
                f"indexer {label} + embedder service (concurrency {args.concurrency}), "
                "whole process, start-up included",
                f"{run.whole:.2f}",
                versus(run.whole),
                "-",
                f"{run.garments_per_photo:.2f}",
            ],
            [
                f"the same {label}, once running (the summary's images_per_second)",
                f"{run.running:.2f}",
                versus(run.running),
                f"{run.seconds_per_photo * 1000:.0f}",
                f"{run.garments_per_photo:.2f}",
            ],
        ]
    cost = garments.seconds_per_photo / photos.seconds_per_photo
    notes = [
        f"- garments cost: **{cost:.2f}x** the indexing time per photo "
        f"({photos.seconds_per_photo * 1000:.0f} ms -> {garments.seconds_per_photo * 1000:.0f} ms "
        f"once running), for {garments.garments_per_photo:.2f} garment records per photo; "
        "`--regions none` turns them off"
    ]
    if original:
        notes.append(
            f"- indexer (photos only) / original way: **{photos.whole / original:.2f}x** whole "
            f"process, **{photos.running / original:.2f}x** once running (goal >= 2.5x)"
        )
    print(
        write_results(
            "indexer",
            "Indexing throughput, end to end (images/s), with and without garments",
            f"{args.model} with random weights, fp32, CPU, {args.images} photo-like JPEGs of "
            "about 1024x700 (figures in outfits), one ChromaDB server (chroma run) for all; "
            f"indexer runs: the fastest of {args.repeat}, with and without garments alternated",
            ["way", "images/s", "vs original", "ms per photo", "garments per photo"],
            rows,
            notes,
        )
    )


if __name__ == "__main__":
    main()
