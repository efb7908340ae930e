"""Region crops: how much of a garment box reaches the model for each margin, with and without
squaring the crop, and what N boxes per image cost against the whole image alone.

    python -m benchmarks.bench_regions [--outfits 200] [--images 32] [--model ViT-B-32]

Geometry: CLIP's preprocessing resizes a crop's short side to the model's input and keeps the
centred square, so the model sees the centred square of the crop. For each box that gives the
share of the box inside that square ("box kept"), the box's share of the square ("box fills"),
and the square's share outside the image ("padding"); the rest is context around the box. Boxes
come from generated outfits (devstack.garments: tops, pants, dresses, shoes, bags, hats on a
figure, the boxes a little larger than the garments as Fashionpedia's are) and from a spread of
aspect ratios.

Cost: the engine in-process (no gRPC), images/s with N boxes per image against the same images
with none, measured in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from dataclasses import dataclass

import numpy as np

from benchmarks.common import write_results
from devstack.garments import draw_outfit
from devstack.servers import TINY_MODEL
from embedder_service import regions
from embedder_service.engine import EmbedEngine, ImageItem
from embedder_service.settings import EmbedderSettings

MARGINS = (0.0, 0.05, 0.1, 0.2)
ASPECTS = (0.25, 0.5, 1.0, 2.0, 4.0)  # width / height of the box
TALL = ("pants", "dress", "coat")
WIDE = ("shoe", "hat", "belt")
BOXES_PER_IMAGE = (0, 1, 4, 8)


@dataclass(frozen=True)
class Seen:
    """What the model sees of one box's crop, as shares (0..1)."""

    kept: float  # of the box, inside the model's input
    fills: float  # of the model's input, the box
    padding: float  # of the model's input, outside the image


def _area(a: regions.Box) -> float:
    return max(0.0, a[2] - a[0]) * max(0.0, a[3] - a[1])


def _meet(a: regions.Box, b: regions.Box) -> regions.Box:
    return max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])


def seen(box: regions.Box, width: int, height: int, margin: float, square: bool) -> Seen:
    """What of `box` reaches the model when cropped with `margin` (and squared up or not)."""
    box = regions.normalise_box(box, width, height)
    rect = regions.crop_rect(box, width, height, margin, square)
    rw, rh = rect[2] - rect[0], rect[3] - rect[1]
    side = min(rw, rh)
    left, top = rect[0] + (rw - side) / 2, rect[1] + (rh - side) / 2
    view = (left, top, left + side, top + side)
    inside = _area(_meet(box, view))
    image = _area(_meet(view, (0.0, 0.0, float(width), float(height))))
    return Seen(inside / _area(box), inside / side**2, 1 - image / side**2)


def outfit_boxes(outfits: int, seed: int) -> list[tuple[str, regions.Box, int, int]]:
    """(category, box, width, height) of every garment in `outfits` generated photos, portrait
    and landscape."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(outfits):
        width, height = (480, 640) if i % 4 else (640, 480)
        outfit = draw_outfit(rng, width, height)
        out += [(g.category, g.box, width, height) for g in outfit.garments]
    return out


def aspect_boxes() -> list[tuple[str, regions.Box, int, int]]:
    """Boxes of a spread of aspect ratios, a fifth of a 640x640 photo's area, in its middle."""
    out = []
    for aspect in ASPECTS:
        w = (0.2 * 640 * 640 * aspect) ** 0.5
        h = w / aspect
        out.append((f"aspect {aspect:g}", (320 - w / 2, 320 - h / 2, 320 + w / 2, 320 + h / 2)))
    return [(name, box, 640, 640) for name, box in out]


def geometry_rows(boxes: list[tuple[str, regions.Box, int, int]]) -> list[list[str]]:
    """One row per (margin, square): how much of the boxes the model sees, and of what else."""
    rows = []
    for square in (False, True):
        for margin in MARGINS:
            figures = [seen(b, w, h, margin, square) for _, b, w, h in boxes]
            kept = np.array([f.kept for f in figures])
            fills = np.array([f.fills for f in figures])
            padding = np.array([f.padding for f in figures])
            tall = [f.kept for (c, *_), f in zip(boxes, figures, strict=True) if c in TALL]
            wide = [f.kept for (c, *_), f in zip(boxes, figures, strict=True) if c in WIDE]
            rows.append(
                [
                    f"{margin:.0%}",
                    "yes" if square else "no",
                    f"{kept.mean():.1%}",
                    f"{np.mean(tall):.1%}",
                    f"{np.mean(wide):.1%}",
                    f"{(kept > 0.999).mean():.0%}",
                    f"{np.median(fills):.0%}",
                    f"{np.percentile(fills, 10):.0%}",
                    f"{max(0.0, padding.mean()):.1%}",
                ]
            )
    return rows


def aspect_rows(margin: float) -> list[list[str]]:
    """Per aspect ratio: the box kept without squaring, and what fills the input with it."""
    rows = []
    for name, box, w, h in aspect_boxes():
        plain, squared = seen(box, w, h, margin, False), seen(box, w, h, margin, True)
        rows.append(
            [
                name.removeprefix("aspect "),
                f"{plain.kept:.0%}",
                f"{plain.fills:.0%}",
                f"{squared.kept:.0%}",
                f"{squared.fills:.0%}",
            ]
        )
    return rows


def cost(model: str, images: int, seed: int) -> list[tuple[int, float]]:
    """images/s through the engine with N boxes per image, for each N in BOXES_PER_IMAGE."""
    settings = EmbedderSettings.model_validate(
        {"model": model, "pretrained": "none", "device": "cpu", "precision": "fp32"}
    )
    rng = np.random.default_rng(seed)
    outfits = [draw_outfit(rng, 480, 640) for _ in range(images)]

    def items(n: int) -> list[ImageItem]:
        return [
            ImageItem(str(i), o.jpeg, [o.garments[j % len(o.garments)].box for j in range(n)])
            for i, o in enumerate(outfits)
        ]

    async def run() -> list[tuple[int, float]]:
        engine = EmbedEngine.load(settings)
        loop = asyncio.get_running_loop()
        try:
            await engine.embed_images(items(1)[:2])
            out = []
            for n in BOXES_PER_IMAGE:
                batch = items(n)
                best = float("inf")
                for _ in range(3):
                    started = loop.time()
                    # Eight images a request, as the indexer sends them, all requests at once.
                    await asyncio.gather(
                        *(engine.embed_images(batch[s : s + 8]) for s in range(0, len(batch), 8))
                    )
                    best = min(best, loop.time() - started)
                out.append((n, len(batch) / best))
            return out
        finally:
            await engine.close()

    return asyncio.run(run())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--outfits", type=int, default=200)
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--model", default=str(TINY_MODEL))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    boxes = outfit_boxes(args.outfits, args.seed)
    rates = cost(args.model, args.images, args.seed)
    alone = rates[0][1]
    notes = [
        f"{len(boxes)} garment boxes from {args.outfits} generated outfits (a quarter of them "
        "landscape). box kept: the share of the box inside the model's input (mean over all "
        f"boxes; over the tall ones, {', '.join(TALL)}; over the wide ones, {', '.join(WIDE)}); "
        "all kept: boxes wholly inside it; box fills: the box's share of the input (median, "
        "10th percentile); padding: the input's share outside the photo (mean).",
        f"Chosen: margin {regions.MARGIN:.0%}, squared {'yes' if regions.SQUARE else 'no'}.",
        "",
        f"Per aspect ratio (width / height, a box of a fifth of a 640x640 photo), margin "
        f"{regions.MARGIN:.0%}:",
        "",
        "| aspect | kept, not squared | fills, not squared | kept, squared | fills, squared |",
        "|---|---|---|---|---|",
        *("| " + " | ".join(row) + " |" for row in aspect_rows(regions.MARGIN)),
        "",
        f"Cost through the engine in-process ({args.model}, fp32, CPU; {args.images} generated "
        "480x640 JPEG photos, 8 a request, all requests at once; best of 3):",
        "",
        "| boxes per image | images/s | regions/s | images/s vs no boxes |",
        "|---|---|---|---|",
        *(f"| {n} | {r:.1f} | {r * n:.1f} | {r / alone:.2f} |" for n, r in rates),
    ]
    text = write_results(
        "regions",
        "Region crops: what of a box reaches the model, and what boxes cost",
        f"outfits seed {args.seed}; margins {', '.join(f'{m:.0%}' for m in MARGINS)}",
        [
            "margin",
            "squared",
            "box kept",
            "tall kept",
            "wide kept",
            "all kept",
            "box fills (median)",
            "fills (p10)",
            "padding",
        ],
        geometry_rows(boxes),
        notes,
    )
    print(text)


if __name__ == "__main__":
    main()
