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
from embedder_service.model import OpenClipModel, cpu_has_amx
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
    engine = EmbedEngine.load(settings)

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


def matmul_rate(precision: str, n: int = 2048, repeat: int = 5) -> float:
    """FLOP/s of one n x n by n x n matrix product on this machine's CPU, best of `repeat`: the
    rate that a model made of matrix products can hope to reach."""
    import torch

    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[precision]
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    torch.mm(a, b)  # warm-up
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - started)
    return 2 * n**3 / best


def flops_per_image(model_name: str) -> float:
    """Floating-point operations of one image through the model's image tower, counted by torch
    (each multiply-add counts 2)."""
    import open_clip
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    model = open_clip.create_model(model_name, device="cpu").eval()
    size = model.visual.image_size
    size = tuple(size) if isinstance(size, (tuple, list)) else (size, size)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model.encode_image(torch.zeros(1, 3, *size))
    return float(counter.get_total_flops())


def against_the_limit(
    model_name: str, precisions: list[str], data: list[bytes], texts: list[str]
) -> list[list[str]]:
    """The embedder's batch throughput (engine in-process, and the model's forward pass alone
    on already decoded images) at each precision, as FLOP/s against the machine's fp32 matmul
    rate; the precisions take turns, medians of REPEAT rounds with their spread. Past fp32, the
    lowest cosine of its image vectors to fp32's and the top-10 agreement of text queries over
    the images."""
    # The matmul rate is measured again in each round, beside the model: the best of all.
    peaks = {p: matmul_rate(p) for p in precisions}
    flops = flops_per_image(model_name)
    settings = {
        p: EmbedderSettings.model_validate(
            {"model": model_name, "pretrained": "none", "device": "cpu", "precision": p}
        )
        for p in precisions
    }
    engines = {p: EmbedEngine.load(settings[p]) for p in precisions}
    models = {p: engines[p].model for p in precisions}
    items = [(str(i), d) for i, d in enumerate(data)]
    decoded = [models["fp32"].preprocess(Image.open(io.BytesIO(d)).convert("RGB")) for d in data]
    engine_rates: dict[str, list[float]] = {p: [] for p in precisions}
    model_rates: dict[str, list[float]] = {p: [] for p in precisions}
    vectors: dict[str, np.ndarray] = {}

    async def run() -> None:
        for p in precisions:
            await engines[p].embed_images(items[:2])  # warm-up
            models[p].embed_images(decoded[:2])
        for r in range(REPEAT):
            for p in precisions if r % 2 == 0 else precisions[::-1]:
                peaks[p] = max(peaks[p], matmul_rate(p, repeat=2))
                outcomes = []
                started = time.perf_counter()
                for start in range(0, len(items), BATCH):
                    outcomes += await engines[p].embed_images(items[start : start + BATCH])
                engine_rates[p].append(len(items) / (time.perf_counter() - started))
                vectors[p] = np.stack([o.vector for o in outcomes if o.vector is not None])
                started = time.perf_counter()
                for start in range(0, len(decoded), BATCH):
                    models[p].embed_images(decoded[start : start + BATCH])
                model_rates[p].append(len(decoded) / (time.perf_counter() - started))
        for engine in engines.values():
            await engine.close()

    asyncio.run(run())
    fp32_peak = peaks["fp32"]
    rows = [
        [
            "GFLOP/s, torch fp32 matmul 2048^3 (best of all rounds)",
            f"{fp32_peak / 1e9:.0f}",
            "1.00x",
        ]
    ]
    rows += [
        [
            f"GFLOP/s, torch {p} matmul 2048^3 (best of all rounds)",
            f"{peaks[p] / 1e9:.0f}",
            f"{peaks[p] / fp32_peak:.2f}x",
        ]
        for p in precisions[1:]
    ]
    rows.append(
        [f"GFLOP per image, {model_name} image tower (FlopCounterMode)", f"{flops / 1e9:.2f}", ""]
    )
    text_ranks = {
        p: np.argsort(-(models[p].embed_texts(texts)[0] @ vectors[p].T), axis=1)[:, :10]
        for p in precisions
    }
    for p in precisions:
        for label, measured in (
            (f"engine in-process, batch {BATCH}, decode included", engine_rates[p]),
            (f"model forward alone, batch {BATCH}", model_rates[p]),
        ):
            rate = statistics.median(measured)
            spread = f"{min(measured):.1f}-{max(measured):.1f}"
            agree = ""
            if p != "fp32" and label.startswith("engine"):
                cosine = float(np.min(np.sum(vectors[p] * vectors["fp32"], axis=1)))
                shared = np.mean(
                    [
                        len(set(a) & set(b)) / 10
                        for a, b in zip(text_ranks[p], text_ranks["fp32"], strict=True)
                    ]
                )
                agree = f"; vs fp32: cosine >= {cosine:.4f}, top-10 agreement {shared:.1%}"
            rows.append(
                [
                    f"images/s, {p}, {label} (rounds {spread}) = GFLOP/s{agree}",
                    f"{rate:.2f} = {rate * flops / 1e9:.0f}",
                    f"{rate * flops / fp32_peak:.0%} of fp32 matmul"
                    + (f", {rate * flops / peaks[p]:.0%} of {p} matmul" if p != "fp32" else ""),
                ]
            )
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
    # The original way runs fp32: so does the embedder, unless asked (the limits rows show bf16).
    parser.add_argument("--precision", default="fp32")
    parser.add_argument(
        "--text-only", action="store_true", help="only the text-latency rows (a short run)"
    )
    parser.add_argument(
        "--limits-only",
        action="store_true",
        help="only the image throughput against the machine's matmul rate (a short run)",
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
    text_rows = []
    if not args.limits_only:
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

    precisions = ["fp32", "bf16"] if cpu_has_amx() else ["fp32"]
    print("image throughput against the machine's matmul rate...", flush=True)
    limit_rows = against_the_limit(args.model, precisions, data, texts)
    if args.limits_only:
        print(
            write_results(
                "embedder_limits",
                "Embedder image throughput against the machine's matmul rate",
                f"{args.model} with random weights (--pretrained none), CPU, {args.images} "
                f"photo-like JPEGs of about 1024x700, batch {BATCH}, precisions alternated, "
                f"medians of {REPEAT} rounds; top-10 agreement: {len(texts)} text queries over "
                "the images",
                ["measure", "value", "vs baseline"],
                limit_rows,
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
        *limit_rows,
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
