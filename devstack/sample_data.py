"""Generated datasets in Fashionpedia's exact schema and layout, for tests, benchmarks and the
offline demo: `python -m devstack.sample_data OUT_DIR --rows 200`.

The layout is the hub's (`data/<split>-NNNNN-of-NNNNN.parquet`) and the features are the hub's
(`image_id`, `image`, `width`, `height`, and `objects` with `bbox_id`, `category` as a ClassLabel
over the 46 names, `bbox`, `area`), so the indexer reads it through its ordinary code path.

Each photo is a figure in an outfit (devstack.garments): its garments are objects with their
boxes, a top's neckline and sometimes a sleeve are part objects inside it, and each garment's
true colour is written beside the parquet files in `data/<split>-colours.json` (bbox_id ->
palette name), which the schema has no room for, for tests and evaluations to grade against.
"""

from __future__ import annotations

import argparse
import io
import json
import random
from pathlib import Path
from typing import Any

import datasets
import numpy as np
from PIL import Image, ImageDraw

from devstack.garments import TOPS, Outfit, draw_outfit
from fashionrag.fashionpedia import CATEGORIES

FEATURES = datasets.Features(
    {
        "image_id": datasets.Value("int64"),
        "image": datasets.Image(),
        "width": datasets.Value("int64"),
        "height": datasets.Value("int64"),
        "objects": datasets.Sequence(
            {
                "bbox_id": datasets.Value("int64"),
                "category": datasets.ClassLabel(names=list(CATEGORIES)),
                "bbox": datasets.Sequence(datasets.Value("float64"), length=4),
                "area": datasets.Value("int64"),
            }
        ),
    }
)

CORRUPT_BYTES = b"\xff\xd8\xff\xe0 this is not really a JPEG"


def photo_jpeg(width: int = 1024, height: int = 768, seed: int = 0, quality: int = 90) -> bytes:
    """A photo-like JPEG (smooth shading, shapes, blur and sensor noise), for benchmarks and
    decoding tests where flat synthetic pictures would decode unrealistically fast."""
    import numpy as np
    from PIL import ImageFilter

    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x / width * 200, y / height * 180, (x + y) / (width + height) * 255], -1)
    image = Image.fromarray(base.astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for _ in range(25):
        x0, y0 = int(rng.integers(0, width)), int(rng.integers(0, height))
        r = int(rng.integers(20, 200))
        draw.ellipse((x0 - r, y0 - r, x0 + r, y0 + r), fill=tuple(rng.integers(0, 256, 3)))
    image = image.filter(ImageFilter.GaussianBlur(1.5))
    pixels = np.asarray(image, dtype=np.float32) + rng.normal(0, 6, (height, width, 3))
    out = io.BytesIO()
    Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(out, "JPEG", quality=quality)
    return out.getvalue()


# Photo sizes: Fashionpedia's usual (about 1024 px on the long side) with `photos`, else small
# enough for tests to make and index dozens in seconds, large enough for garments' colours.
PHOTO_SIZES = ((1024, 683), (683, 1024), (800, 1066), (1024, 768))
SMALL_WIDTHS, SMALL_HEIGHTS = (96, 176), (128, 224)
# Objects per image at most: a row's box ids are image_id * BOX_IDS + n.
BOX_IDS = 100
# The category of the extra object a `bad_boxes` row carries: a garment, so the indexer sends it.
BAD_BOX_CATEGORY = "belt"


def colours_file(out_dir: Path, split: str) -> Path:
    """The sidecar of a generated split: each garment's true colour, by bbox_id."""
    return out_dir / "data" / f"{split}-colours.json"


def read_colours(out_dir: Path, split: str) -> dict[int, str]:
    """The true colour of each generated garment box, by bbox_id."""
    return {int(k): v for k, v in json.loads(colours_file(out_dir, split).read_text()).items()}


def _parts(outfit: Outfit, rng: random.Random) -> list[tuple[str, tuple[float, ...]]]:
    """Part objects (neckline, sometimes a sleeve) inside the outfit's top or dress: parts are
    annotations of the photo, never records of their own."""
    tops = [g for g in outfit.garments if g.category in (*TOPS, "dress")]
    if not tops:
        return []
    x0, y0, x1, y1 = tops[0].box
    w, h = x1 - x0, y1 - y0
    parts: list[tuple[str, tuple[float, ...]]] = [
        ("neckline", (x0 + 0.35 * w, y0, x0 + 0.65 * w, y0 + 0.15 * h))
    ]
    if rng.random() < 0.5:
        parts.append(("sleeve", (x0, y0, x0 + 0.3 * w, y0 + 0.5 * h)))
    return parts


def _bad_box(width: int, height: int, n: int) -> tuple[float, ...]:
    """A box the embedder refuses: of zero area, or wholly outside the image (by turns)."""
    if n % 2 == 0:
        return (width / 4, height / 4, width / 4, height / 2)
    return (width + 10.0, height + 10.0, width + 50.0, height + 50.0)


def _objects(image_id: int, annotated: list[tuple[str, tuple[float, ...]]]) -> dict[str, list[Any]]:
    """The `objects` column of one row: box ids image_id * BOX_IDS + n, in order."""
    return {
        "bbox_id": [image_id * BOX_IDS + n for n in range(len(annotated))],
        "category": [CATEGORIES.index(category) for category, _ in annotated],
        "bbox": [[float(v) for v in box] for _, box in annotated],
        "area": [round(max(0.0, b[2] - b[0]) * max(0.0, b[3] - b[1])) for _, b in annotated],
    }


def _encode(outfit: Outfit, fmt: str) -> bytes:
    if fmt == "JPEG":
        return outfit.jpeg
    out = io.BytesIO()
    with Image.open(io.BytesIO(outfit.jpeg)) as image:
        image.save(out, format=fmt)
    return out.getvalue()


def large_png(side: int = 4000, seed: int = 0) -> bytes:
    """A `side` x `side` RGB PNG of smooth gradients: as costly to decode as any picture of its
    size (PNG has no reduced decoding) yet small to send (about 15 kB per Mpx), for tests and
    benchmarks of the embedder under large-image load."""
    import numpy as np

    y, x = np.mgrid[0:side, 0:side]
    pixels = np.stack([x * 255 // side, y * 255 // side, (x + y + seed) % 256], -1)
    out = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint8)).save(out, "PNG", compress_level=1)
    return out.getvalue()


def generate(
    out_dir: Path,
    split: str = "train",
    rows: int = 50,
    corrupt: tuple[int, ...] = (),
    files: int = 2,
    seed: int = 0,
    first_image_id: int = 1,
    photos: bool = False,
    bad_boxes: tuple[int, ...] = (),
) -> Path:
    """Write a generated split under `out_dir/data/`, and its garments' true colours beside it
    (`colours_file`); return `out_dir`.

    Args:
        out_dir: the dataset directory (created).
        split: the split's name, as in the file names.
        rows: how many images.
        corrupt: row indices whose image bytes are not a decodable image.
        files: how many parquet files the split is cut into.
        seed: the random seed; the same seed gives the same files.
        first_image_id: the image_id of the first row (later rows count up).
        photos: photos of Fashionpedia's usual size (about 1024 px on the long side) instead of
            small ones: slower to make, realistic to decode.
        bad_boxes: row indices that carry one more garment object (a "belt") whose box is of
            zero area or outside the image; its box id is the row's last.
    """
    rng = random.Random(f"{seed}-{split}")
    records = []
    colours: dict[str, str] = {}
    for i in range(rows):
        if photos:
            width, height = rng.choice(PHOTO_SIZES)
        else:
            width, height = rng.randint(*SMALL_WIDTHS), rng.randint(*SMALL_HEIGHTS)
        image_id = first_image_id + i
        outfit = draw_outfit(np.random.default_rng(rng.randrange(2**32)), width, height)
        if i in corrupt:
            data = CORRUPT_BYTES
        else:
            data = _encode(outfit, "PNG" if not photos and i % 7 == 3 else "JPEG")
        annotated: list[tuple[str, tuple[float, ...]]] = [
            (g.category, g.box) for g in outfit.garments
        ]
        annotated += _parts(outfit, rng)
        if i in bad_boxes:
            annotated.append((BAD_BOX_CATEGORY, _bad_box(width, height, i)))
        objects = _objects(image_id, annotated)
        for bbox_id, garment in zip(objects["bbox_id"], outfit.garments, strict=False):
            colours[str(bbox_id)] = garment.colour
        records.append(
            {
                "image_id": image_id,
                "image": {"bytes": data, "path": None},
                "width": width,
                "height": height,
                "objects": objects,
            }
        )
    data_dir = out_dir / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    for old in data_dir.glob(f"{split}-*.parquet"):
        old.unlink()
    per_file = max(1, -(-rows // files))
    chunks = [records[i : i + per_file] for i in range(0, rows, per_file)] or [[]]
    for n, chunk in enumerate(chunks):
        table = datasets.Dataset.from_list(chunk, features=FEATURES)
        table.to_parquet(str(data_dir / f"{split}-{n:05d}-of-{len(chunks):05d}.parquet"))
    colours_file(out_dir, split).write_text(json.dumps(colours, indent=0) + "\n")
    return out_dir


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m devstack.sample_data",
        description="Write a generated dataset in Fashionpedia's schema (figures in outfits).",
    )
    parser.add_argument("out_dir", type=Path, help="dataset directory to write")
    parser.add_argument("--rows", type=int, default=200, help="images per split (default 200)")
    parser.add_argument("--splits", nargs="+", default=["train", "val"], help="splits to write")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument(
        "--photos", action="store_true", help="photos of about 1024 px (slower) instead of small"
    )
    args = parser.parse_args()
    for k, split in enumerate(args.splits):
        generate(
            args.out_dir,
            split,
            args.rows,
            seed=args.seed,
            first_image_id=1 + k * 1_000_000,
            photos=args.photos,
        )
    print(f"wrote {args.rows} images per split {args.splits} under {args.out_dir}/data")


if __name__ == "__main__":
    main()
