"""What every benchmark shares: the machine's description, timing, the results file (servers and
data come from devstack)."""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from devstack.servers import ROOT
from embedder_service.client import EmbedderClient
from fashionrag.collection import ImageRecord
from fashionrag.collection_store import connect, open_collections
from fashionrag.fashionpedia import CATEGORIES

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


def fill_photos(chroma_url: str, embedder: EmbedderClient, n: int, collection_name: str) -> None:
    """A collection `collection_name` of `n` random unit photo vectors with the contract's
    metadata, for the embedder's model."""
    model = embedder.model_info()
    collection = open_collections(connect(chroma_url), collection_name, model, create=True).photos
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
