"""Embedder throughput: the service against its own engine in-process (gRPC overhead) and against
the original project's way (Chroma's OpenCLIPEmbeddingFunction, one image at a time, fp32), on the
same photo-like JPEGs and the same model; and dynamic batching against none under 16 concurrent
single-text callers; and the text tower on the batch's real length against open_clip's
`encode_text` on all positions, one text and 16, in the same run; text latency while a burst of
large PNGs is embedded against the same server idle, and what the burst leaves in its memory;
and decoding 2000+ px photos reduced (JPEG draft, PNG shrunk after) against full size.

    python -m benchmarks.bench_embedder [--images 48] [--model ViT-B-32] [--text-only]
                                        [--image-load-only]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import logging
import statistics
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from PIL import Image

from benchmarks.common import rate, write_results
from devstack.sample_data import large_png, photo_jpeg
from devstack.servers import Server, resident_mb, start_embedder
from embedder_service.client import EmbedderClient
from embedder_service.engine import EmbedEngine
from embedder_service.images import decode_reduced
from embedder_service.model import OpenClipModel
from embedder_service.settings import EmbedderSettings

BATCH = 32
# Best of a few runs: a 2-core machine's timings wander by 10% from run to run.
REPEAT = 3
# Text latencies are medians of this many calls, the two ways taking turns so that a busy
# neighbour slows both alike.
TEXT_REPEAT = 15


def images(n: int) -> list[bytes]:
    # Fashionpedia's photos are mostly around 1024 px on the long side, portrait or landscape.
    sizes = [(1024, 683), (683, 1024), (800, 1066), (1024, 768)]
    return [photo_jpeg(*sizes[i % len(sizes)], seed=i) for i in range(n)]


def original_way(model: str, data: list[bytes]) -> float:
    """Chroma's OpenCLIPEmbeddingFunction as the original project used it: an ImageLoader-style
    decode to a numpy array, then one image per call."""
    from chromadb.utils.embedding_functions import OpenCLIPEmbeddingFunction

    ef = OpenCLIPEmbeddingFunction(model_name=model, checkpoint=None, device="cpu")  # type: ignore[arg-type]

    def run() -> None:
        for d in data:
            ef([np.array(Image.open(io.BytesIO(d)))])  # ImageLoader's decode, then one image

    run_small = data[:2]
    for d in run_small:  # warm-up
        ef([np.array(Image.open(io.BytesIO(d)))])
    return rate(len(data), run, 2)


def in_process(
    settings: EmbedderSettings, data: list[bytes], texts: list[str]
) -> tuple[float, float]:
    """The service's own engine, called in this process: images/s and texts/s."""
    engine = EmbedEngine(OpenClipModel.load(settings), settings)

    async def best_rate(count: int, work: Callable[[], Awaitable[None]]) -> float:
        best = float("inf")
        for _ in range(REPEAT):
            started = time.perf_counter()
            await work()
            best = min(best, time.perf_counter() - started)
        return count / best

    async def run() -> tuple[float, float]:
        items = [(str(i), d) for i, d in enumerate(data)]
        await engine.embed_images(items[:2])

        async def run_images() -> None:
            for start in range(0, len(items), BATCH):
                await engine.embed_images(items[start : start + BATCH])

        async def run_texts() -> None:
            for start in range(0, len(texts), 64):
                await engine.embed_texts(texts[start : start + 64])

        rates = await best_rate(len(items), run_images), await best_rate(len(texts), run_texts)
        await engine.close()
        return rates

    return asyncio.run(run())


def service(model: str, flags: list[str]) -> Server:
    """The embedder service with `model` (random weights) on the CPU, SERVING; `flags` more."""
    return start_embedder(
        None, "--device", "cpu", *flags, "--log-level", "WARNING", model=model, timeout=300
    )


def through_service(
    model: str, flags: list[str], data: list[bytes], texts: list[str]
) -> tuple[float, float]:
    with service(model, flags) as server, EmbedderClient(server.address) as client:
        client.embed_images(data[:2])

        def run_images() -> None:
            for start in range(0, len(data), BATCH):
                client.embed_images(data[start : start + BATCH])

        def run_texts() -> None:
            for start in range(0, len(texts), 64):
                client.embed_texts(texts[start : start + 64])

        return rate(len(data), run_images, REPEAT), rate(len(texts), run_texts, REPEAT)


def concurrent_single_texts(model: str, flags: list[str], callers: int, per_caller: int) -> float:
    """texts/s when `callers` threads each send `per_caller` one-text requests."""
    with service(model, flags) as server, EmbedderClient(server.address) as client:
        client.embed_texts(["warm-up"])

        def caller(i: int) -> None:
            for j in range(per_caller):
                client.embed_texts([f"a photo of item {i}-{j}"])

        with ThreadPoolExecutor(callers) as pool:
            return rate(callers * per_caller, lambda: list(pool.map(caller, range(callers))))


def text_latencies(settings: EmbedderSettings, texts: list[str]) -> list[list[str]]:
    """Median ms of one text and of 16: open_clip's own `encode_text` on all the context's
    positions (the embedder before it ran on the real length) against the embedder's model call,
    same weights, taking turns; and the lowest cosine between their vectors."""
    import open_clip
    import torch

    model = OpenClipModel.load(settings)
    torch.manual_seed(settings.seed)  # the same seeded weights as the embedder's
    name = model.description.model_name
    clip = open_clip.create_model(name, precision=model.description.precision, device="cpu")
    clip.eval()
    tokenizer = open_clip.get_tokenizer(name)

    def full_context(batch: list[str]) -> np.ndarray:
        with torch.inference_mode():
            vectors = clip.encode_text(tokenizer(batch))
            return torch.nn.functional.normalize(vectors.float(), dim=-1).numpy()

    calls: dict[str, Callable[[list[str]], object]] = {
        "full": full_context,
        "real": model.embed_texts,
    }
    rows = []
    for batch in (["red tops"], texts[:16]):
        runs: dict[str, list[float]] = {way: [] for way in calls}
        for call in calls.values():
            call(batch)  # warm-up
        for _ in range(TEXT_REPEAT):
            for way, call in calls.items():
                started = time.perf_counter()
                call(batch)
                runs[way].append((time.perf_counter() - started) * 1000)
        full, real = (statistics.median(runs[way]) for way in calls)
        cosine = float(np.min(np.sum(full_context(batch) * model.embed_texts(batch)[0], axis=1)))
        label = f"{len(batch)} text{'s' if len(batch) > 1 else ''}"
        rows += [
            [f"ms, {label}, open_clip encode_text on all positions", f"{full:.1f}", "1.00x"],
            [
                f"ms, {label}, embedder on the real length (cosine >= {cosine:.6f})",
                f"{real:.1f}",
                f"{full / real:.2f}x",
            ],
        ]
    return rows


def text_latency_under_image_load(
    model: str, flags: list[str], side: int = 4000, burst: int = 8
) -> list[list[str]]:
    """Text latency (ms) on an idle server, then while `burst` callers each send one
    `side` x `side` PNG at once; and the server's resident memory before, at the peak and
    after."""
    png = large_png(side)
    with service(model, flags) as server, EmbedderClient(server.address, timeout=300) as client:
        client.embed_texts(["warm-up"])
        client.embed_images([large_png(300)])

        def latency() -> float:
            started = time.perf_counter()
            client.embed_text("red tops")
            return (time.perf_counter() - started) * 1000

        idle = [latency() for _ in range(TEXT_REPEAT)]
        before = peak = resident_mb(server)
        loaded: list[float] = []
        with ThreadPoolExecutor(burst) as pool:
            uploads = [pool.submit(client.embed_images, [png]) for _ in range(burst)]
            while not all(u.done() for u in uploads):
                loaded.append(latency())
                peak = max(peak, resident_mb(server))
            for u in uploads:
                u.result()
        time.sleep(1)
        after = resident_mb(server)
    idle_p50 = statistics.median(idle)
    label = f"{burst} x {side}x{side} PNG"
    return [
        ["ms, 1 text, idle server (median)", f"{idle_p50:.1f}", "1.00x"],
        *(
            [
                f"ms, 1 text, during {label} ({name}, {len(loaded)} texts)",
                f"{v:.1f}",
                f"{v / idle_p50:.2f}x",
            ]
            for name, v in (
                ("median", statistics.median(loaded)),
                ("mean", statistics.mean(loaded)),
                ("max", max(loaded)),
            )
        ),
        [
            f"MB resident, before / peak / 1 s after {label}",
            f"{before:.0f} / {peak:.0f} / {after:.0f}",
            f"+{after - before:.0f} MB kept",
        ],
    ]


def reduced_decoding(model: str) -> list[list[str]]:
    """ms to decode and preprocess a 2000+ px photo, full size against reduced (the engine's
    rule: both sides kept at twice the model's input), JPEG and PNG, best of REPEAT."""
    import open_clip

    settings = EmbedderSettings.model_validate({"model": model, "pretrained": "none"})
    size = OpenClipModel.load(settings).description.image_size
    preprocess = open_clip.image_transform(size, is_train=False)
    jpegs = [photo_jpeg(w, h, seed=i) for i, (w, h) in enumerate([(2048, 1536), (2000, 3000)])]
    formats = {"JPEG": jpegs, "PNG": [large_png(2048, seed=i) for i in range(2)]}
    rows = []
    for fmt, data in formats.items():
        times = {}
        for way, keep in (("full size", 0), ("reduced", 2 * size)):

            def run(keep: int = keep, data: list[bytes] = data) -> None:
                for d in data:
                    preprocess(decode_reduced(d, 10**8, keep)[0])

            times[way] = len(data) / rate(len(data), run, REPEAT) * 1000
        full, reduced = times["full size"], times["reduced"]
        rows += [
            [f"ms per 2000+ px {fmt}, decode + preprocess, full size", f"{full:.1f}", "1.00x"],
            [
                f"ms per 2000+ px {fmt}, decode + preprocess, reduced",
                f"{reduced:.1f}",
                f"{full / reduced:.2f}x",
            ],
        ]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_embedder")
    parser.add_argument("--images", type=int, default=48)
    parser.add_argument("--texts", type=int, default=128)
    parser.add_argument("--model", default="ViT-B-32")
    parser.add_argument("--precision", default="auto")
    parser.add_argument(
        "--text-only", action="store_true", help="only the text-latency rows (a short run)"
    )
    parser.add_argument(
        "--image-load-only",
        action="store_true",
        help="only texts under large-image load and reduced decoding (a short run)",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    data = images(args.images)
    texts = [
        f"a photo of a {w} garment number {i}"
        for i, w in zip(
            range(args.texts), ["red", "blue", "long", "short"] * args.texts, strict=False
        )
    ]
    flags = ["--precision", args.precision]
    settings = EmbedderSettings.model_validate(
        {"model": args.model, "pretrained": "none", "device": "cpu", "precision": args.precision}
    )
    precision = OpenClipModel.load(settings).description.precision
    if args.image_load_only:
        print("texts under large-image load; reduced decoding...", flush=True)
        print(
            write_results(
                "embedder_image_load",
                "Embedder under large-image load",
                f"{args.model} with random weights (--pretrained none), {precision}, CPU",
                ["measure", "value", "vs baseline"],
                text_latency_under_image_load(args.model, flags) + reduced_decoding(args.model),
                [],
            )
        )
        return
    print("texts: open_clip on all positions vs the real length...", flush=True)
    text_rows = text_latencies(settings, texts)
    if args.text_only:
        print(
            write_results(
                "embedder_text",
                "Embedder text latency",
                f"{args.model} with random weights (--pretrained none), {precision}, CPU, "
                f"medians of {TEXT_REPEAT} calls",
                ["measure", "value", "vs baseline"],
                text_rows,
                [],
            )
        )
        return

    print("original way (Chroma OpenCLIPEmbeddingFunction, 1 image per call)...", flush=True)
    original = original_way(args.model, data)
    print("engine in-process...", flush=True)
    engine_images, engine_texts = in_process(settings, data, texts)
    print("service...", flush=True)
    service_images, service_texts = through_service(args.model, flags, data, texts)
    print("16 concurrent single-text callers, batching vs none...", flush=True)
    batched = concurrent_single_texts(args.model, [*flags, "--max-delay-ms", "5"], 16, 8)
    unbatched = concurrent_single_texts(
        args.model, [*flags, "--max-batch-size", "1", "--max-delay-ms", "0"], 16, 8
    )

    rows = [
        ["images/s, original way (Chroma EF, 1 per call, fp32)", f"{original:.2f}", "1.00x"],
        [
            f"images/s, engine in-process (batch {BATCH})",
            f"{engine_images:.2f}",
            f"{engine_images / original:.2f}x",
        ],
        [
            f"images/s, through the service (batch {BATCH})",
            f"{service_images:.2f}",
            f"{service_images / original:.2f}x",
        ],
        ["texts/s, engine in-process (batch 64)", f"{engine_texts:.1f}", ""],
        ["texts/s, through the service (batch 64)", f"{service_texts:.1f}", ""],
        ["texts/s, 16 callers x 1 text, no batching", f"{unbatched:.1f}", "1.00x"],
        [
            "texts/s, 16 callers x 1 text, dynamic batching (5 ms)",
            f"{batched:.1f}",
            f"{batched / unbatched:.2f}x",
        ],
        *text_rows,
        *text_latency_under_image_load(args.model, flags),
        *reduced_decoding(args.model),
    ]
    notes = [
        f"- service / original way, images: **{service_images / original:.2f}x** (goal >= 3x)",
        f"- service / engine in-process, images: **{service_images / engine_images:.2f}x**, "
        f"texts: **{service_texts / engine_texts:.2f}x** (goal >= 0.85x)",
        f"- dynamic batching / none, 16 concurrent single-text callers: "
        f"**{batched / unbatched:.2f}x** (goal > 1x)",
    ]
    print(
        write_results(
            "embedder",
            "Embedder throughput",
            f"{args.model} with random weights (--pretrained none), {precision}, CPU, "
            f"{args.images} photo-like JPEGs of about 1024x700, batch {BATCH}",
            ["measure", "value", "vs baseline"],
            rows,
            notes,
        )
    )


if __name__ == "__main__":
    main()
