"""How often the embedder names a garment's colour right, and what it costs a box: generated photos
of garments in known colours (texture, stripes, shading, JPEG, background and skin at the boxes'
edges), each box named by `garment_colours` as the embedder does after decoding.

    python -m benchmarks.bench_colour [--garments 500] [--seed 0]

Goal: the primary colour right for at least 95 % of the garments.
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from dataclasses import dataclass

import numpy as np

from benchmarks.common import write_results
from devstack.garments import Garment, draw_outfit
from embedder_service.garment_colour import SAMPLE_BUDGET, garment_colours
from embedder_service.images import decode_image
from fashionrag.colours import COLOURS

GOAL = 0.95


@dataclass(frozen=True)
class Named:
    """One garment, what it truly is and what was named, and what the naming took: wall-clock
    seconds, and CPU seconds of the thread (what it costs when other work shares the cores)."""

    garment: Garment
    primary: str
    secondary: str
    seconds: float
    cpu_seconds: float


def run(garments: int, seed: int, width: int, height: int, draft: int) -> list[Named]:
    """Name the colours of `garments` generated garments, photo by photo."""
    rng = np.random.default_rng(seed)
    named: list[Named] = []
    while len(named) < garments:
        outfit = draw_outfit(rng, width, height)
        image, original_w, original_h = decode_image(outfit.jpeg, 10**8, draft)
        original = (original_w, original_h) if image.size != (original_w, original_h) else None
        for garment in outfit.garments[: garments - len(named)]:
            started, started_cpu = time.perf_counter(), time.thread_time()
            primary, secondary = garment_colours(image, garment.box, original)
            wall, cpu = time.perf_counter() - started, time.thread_time() - started_cpu
            named.append(Named(garment, primary, secondary, wall, cpu))
    return named


def summarise(named: list[Named]) -> dict[str, float]:
    """Accuracy figures and the cost per box."""
    total = len(named)
    striped = [n for n in named if n.garment.secondary]
    seconds = sorted(n.seconds for n in named)
    cpu = sorted(n.cpu_seconds for n in named)
    return {
        "primary": sum(n.primary == n.garment.colour for n in named) / total,
        "either": sum(n.garment.colour in (n.primary, n.secondary) for n in named) / total,
        "stripes_both": (
            sum(
                {n.garment.colour, n.garment.secondary} == {n.primary, n.secondary} for n in striped
            )
            / max(1, len(striped))
        ),
        "plain_no_secondary": (
            sum(n.secondary == "" for n in named if not n.garment.secondary)
            / max(1, total - len(striped))
        ),
        "striped": len(striped),
        "ms_median": 1000 * seconds[len(seconds) // 2],
        "ms_p95": 1000 * seconds[int(len(seconds) * 0.95)],
        "cpu_ms_median": 1000 * cpu[len(cpu) // 2],
        "cpu_ms_p95": 1000 * cpu[int(len(cpu) * 0.95)],
    }


def per_colour(named: list[Named]) -> list[list[str]]:
    """One row per true colour: how many, how many right, and what the misses were named."""
    rows = []
    for colour in COLOURS:
        mine = [n for n in named if n.garment.colour == colour]
        if not mine:
            continue
        right = sum(n.primary == colour for n in mine)
        misses = Counter(n.primary for n in mine if n.primary != colour)
        rows.append(
            [
                colour,
                str(len(mine)),
                f"{right / len(mine):.0%}",
                ", ".join(f"{name} {count}" for name, count in misses.most_common()) or "-",
            ]
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--garments", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--width", type=int, default=480)
    parser.add_argument("--height", type=int, default=640)
    parser.add_argument(
        "--draft",
        type=int,
        default=0,
        help="decode JPEGs at a reduced scale as the embedder may (its --draft-size); 0: full",
    )
    args = parser.parse_args()

    named = run(args.garments, args.seed, args.width, args.height, args.draft)
    figures = summarise(named)
    by_category = Counter(n.garment.category for n in named)
    wrong_by_category = Counter(n.garment.category for n in named if n.primary != n.garment.colour)
    notes = [
        f"Primary colour right: **{figures['primary']:.1%}** (goal ≥ {GOAL:.0%}"
        f"{', met' if figures['primary'] >= GOAL else ', NOT met'}); the true colour named as "
        f"primary or secondary: {figures['either']:.1%}.",
        f"Striped garments ({figures['striped']:.0f}): both colours named "
        f"{figures['stripes_both']:.1%}. Plain garments named with no secondary colour: "
        f"{figures['plain_no_secondary']:.1%}.",
        f"Cost per box (at most {SAMPLE_BUDGET} pixels sampled): CPU time median "
        f"{figures['cpu_ms_median']:.2f} ms, p95 {figures['cpu_ms_p95']:.2f} ms; wall-clock "
        f"median {figures['ms_median']:.2f} ms, p95 {figures['ms_p95']:.2f} ms (higher when "
        "other processes share the cores).",
        "Misses by category: "
        + ", ".join(
            f"{category} {wrong_by_category[category]}/{count}"
            for category, count in by_category.most_common()
        )
        + ".",
    ]
    text = write_results(
        "colour",
        "Garment colour names on generated photos",
        f"{len(named)} garments from seed {args.seed}, photos {args.width}x{args.height}, "
        f"decoded {'with draft size ' + str(args.draft) if args.draft else 'in full'}",
        ["true colour", "garments", "primary right", "misses named"],
        per_colour(named),
        notes,
    )
    print(text)


if __name__ == "__main__":
    main()
