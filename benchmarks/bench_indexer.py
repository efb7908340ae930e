"""End-to-end indexing speed: `python -m indexer_service` with the embedder service, with and
without garment records (`--regions garments|none`, same data, same embedder, same run), against
the embedder's own image throughput at the same batch size and requests in flight (the ceiling:
decode, file saves and upserts hidden behind the model), with each indexer stage's busy time to
name the one that holds it back, and against the original project's way — `collection.add`
with image URIs, Chroma's ImageLoader and OpenCLIPEmbeddingFunction in-process — on the same
photo-like images, model and ChromaDB server.

    python -m benchmarks.bench_indexer [--images 128] [--repeat 2] [--skip-original]
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.common import write_results
from devstack import sample_data
from devstack.servers import indexer_args, run_indexer, start_chroma, start_embedder
from embedder_service.client import EmbedderClient, ImageRequest
from fashionrag.collection_store import connect
from indexer_service.dataset import iter_rows, load_split
from indexer_service.records import save_original

BATCH = 32  # images per embed request, the indexer's default


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
    per photo once running, garments written per photo, and each stage's busy seconds."""

    whole: float
    running: float
    seconds_per_photo: float
    garments_per_photo: float
    seconds: float = 0.0
    stage_seconds: dict[str, float] = field(default_factory=dict)

    def holdup(self, threads: dict[str, int]) -> str:
        """Each stage's share of the run's time that it was busy (per thread); the busiest
        first, the one that holds the others back."""
        shares = {
            name: busy / max(threads.get(name, 1) * self.seconds, 1e-9)
            for name, busy in self.stage_seconds.items()
        }
        ranked = sorted(shares.items(), key=lambda kv: -kv[1])
        return ", ".join(f"{name} {share:.0%}" for name, share in ranked)


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
        seconds=float(summary["seconds"]),
        stage_seconds=dict(summary.get("stage_seconds", {})),
    )


def embedder_own(
    client: EmbedderClient, requests: list[ImageRequest], batch: int, concurrency: int
) -> float:
    """Images per second of the embedder alone on the same images (and boxes), `batch` per
    request and `concurrency` requests in flight, as the indexer sends them."""
    parts = [requests[i : i + batch] for i in range(0, len(requests), batch)]
    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(lambda part: client.embed_images(part, 600), parts))
    return len(requests) / (time.perf_counter() - started)


@dataclass
class Measured:
    """The indexer's runs and the embedder's own rates, per kind (photos, garments)."""

    runs: dict[str, list[Run]] = field(default_factory=lambda: {"photos": [], "garments": []})
    own: dict[str, list[float]] = field(default_factory=lambda: {"photos": [], "garments": []})

    def median(self, kind: str) -> Run:
        """The run of median speed (the faster of the middle two)."""
        ranked = sorted(self.runs[kind], key=lambda r: r.seconds_per_photo)
        return ranked[(len(ranked) - 1) // 2]


def fashionrag_way(
    model: str,
    dataset: Path,
    chroma_url: str,
    images: Path,
    concurrency: int,
    repeat: int,
    requests: dict[str, list[ImageRequest]],
) -> Measured:
    """The indexer on the same data with `--regions none` and `--regions garments`, one
    embedder for all (warmed up first), each beside the embedder's own rate on the same images
    (and boxes), all alternated `repeat` times so that a machine busier in one moment weighs on
    each alike."""
    measured = Measured()
    with (
        start_embedder(
            None,
            "--device",
            "cpu",
            # A batch with its garment boxes can outlast the connection's grace on a busy machine:
            # no retried work in what is measured.
            "--max-connection-age-seconds",
            "0",
            "--log-level",
            "WARNING",
            model=model,
            timeout=300,
        ) as embedder,
        EmbedderClient(embedder.address) as client,
    ):
        common = ("--limit", "0", "--concurrency", str(concurrency), "--batch-size", str(BATCH))
        index_once(embedder.address, dataset, chroma_url, images, "warmup", "--limit", "4")
        for n in range(repeat):
            for kind, regions in (("photos", "none"), ("garments", "garments")):
                name = f"{kind}-{n}"
                own = embedder_own(client, requests[kind], BATCH, concurrency)
                run = index_once(
                    embedder.address,
                    dataset,
                    chroma_url,
                    images,
                    name,
                    *common,
                    "--regions",
                    regions,
                )
                measured.own[kind].append(own)
                measured.runs[kind].append(run)
    return measured


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_indexer")
    parser.add_argument("--images", type=int, default=128)
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
        dataset_rows = list(iter_rows(load_split(str(tmp / "data"), "train")))
        # The original way reads files from disk: give it the same images as files.
        files = [save_original(tmp / "files", "train", row) for row in dataset_rows]
        requests = {
            "photos": [ImageRequest(str(r.image_id), r.image) for r in dataset_rows],
            "garments": [
                ImageRequest(str(r.image_id), r.image, [g.bbox for g in r.garments()])
                for r in dataset_rows
            ],
        }
        with start_chroma(tmp / "chroma", tmp / "chroma.log") as chroma:
            original = None
            if not args.skip_original:
                print(
                    "original way (collection.add with URIs, ImageLoader, OpenCLIP EF)...",
                    flush=True,
                )
                original = original_way(args.model, files, chroma.http, BATCH)
            print("fashionrag indexer with the embedder service...", flush=True)
            measured = fashionrag_way(
                args.model,
                tmp / "data",
                chroma.http,
                tmp / "images",
                args.concurrency,
                args.repeat,
                requests,
            )
    photos, garments = measured.median("photos"), measured.median("garments")

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
    threads = {"embed": args.concurrency}
    notes = []
    for kind, label, run in (
        ("photos", "--regions none (photos only)", photos),
        ("garments", "--regions garments", garments),
    ):
        own = statistics.median(measured.own[kind])
        spread = f"{min(measured.own[kind]):.2f}-{max(measured.own[kind]):.2f}"
        ratio = run.running / own
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
            [
                f"the embedder alone on the same images{' and boxes' if kind == 'garments' else ''}"
                f", batch {BATCH}, {args.concurrency} in flight (runs {spread})",
                f"{own:.2f}",
                versus(own),
                f"{1000 / own:.0f}",
                f"{run.garments_per_photo:.2f}",
            ],
        ]
        verdict = "met" if ratio >= 0.9 else "not met"
        notes.append(
            f"- {label}: indexer / embedder alone **{ratio:.2f}x** (goal >= 0.9: {verdict}); "
            f"stages busy (share of the run, per thread): {run.holdup(threads)}"
        )
    cost = garments.seconds_per_photo / photos.seconds_per_photo
    notes.append(
        f"- garments cost: **{cost:.2f}x** the indexing time per photo "
        f"({photos.seconds_per_photo * 1000:.0f} ms -> {garments.seconds_per_photo * 1000:.0f} ms "
        f"once running), for {garments.garments_per_photo:.2f} garment records per photo; "
        "`--regions none` turns them off"
    )
    if original:
        notes.append(
            f"- indexer (photos only) / original way: **{photos.whole / original:.2f}x** whole "
            f"process, **{photos.running / original:.2f}x** once running (goal >= 2.5x)"
        )
    notes.append(
        "- stages: read = the dataset rows (parquet) into batches; embed = skip what exists "
        "(ChromaDB get) and the embed request, waiting on the embedder; write = file saves and "
        "upserts. An embed share near 100% means the embedder holds the indexer back."
    )
    print(
        write_results(
            "indexer",
            "Indexing throughput, end to end (images/s), with and without garments",
            f"{args.model} with random weights, fp32, CPU, {args.images} photo-like JPEGs of "
            "about 1024x700 (figures in outfits), one ChromaDB server (chroma run) for all; "
            f"batch {BATCH}; indexer runs: the median of {args.repeat}, each beside the "
            "embedder alone, with and without garments, all alternated",
            ["way", "images/s", "vs original", "ms per photo", "garments per photo"],
            rows,
            notes,
        )
    )


if __name__ == "__main__":
    main()
