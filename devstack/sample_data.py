"""Generated datasets in Fashionpedia's exact schema and layout, for tests, benchmarks and the
offline demo: `python -m devstack.sample_data OUT_DIR --rows 200`.

The layout is the hub's (`data/<split>-NNNNN-of-NNNNN.parquet`) and the features are the hub's
(`image_id`, `image`, `width`, `height`, and `objects` with `bbox_id`, `category` as a ClassLabel
over the 46 names, `bbox`, `area`), so the indexer reads it through its ordinary code path.
"""

from __future__ import annotations

import argparse
import io
import random
from pathlib import Path

import datasets
from PIL import Image, ImageDraw

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


def _image(rng: random.Random, width: int, height: int, fmt: str) -> bytes:
    image = Image.new("RGB", (width, height), tuple(rng.randrange(256) for _ in range(3)))
    draw = ImageDraw.Draw(image)
    for _ in range(rng.randint(2, 6)):
        x0, y0 = rng.randrange(width), rng.randrange(height)
        x1, y1 = rng.randint(x0, width), rng.randint(y0, height)
        draw.rectangle((x0, y0, x1, y1), fill=tuple(rng.randrange(256) for _ in range(3)))
    out = io.BytesIO()
    image.save(out, format=fmt)
    return out.getvalue()


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
) -> Path:
    """Write a generated split under `out_dir/data/`; return `out_dir`.

    Args:
        out_dir: the dataset directory (created).
        split: the split's name, as in the file names.
        rows: how many images.
        corrupt: row indices whose image bytes are not a decodable image.
        files: how many parquet files the split is cut into.
        seed: the random seed; the same seed gives the same files.
        first_image_id: the image_id of the first row (later rows count up).
        photos: photo-like JPEGs of Fashionpedia's usual size (about 1024 px on the long side)
            instead of small flat pictures: slower to make, realistic to decode.
    """
    rng = random.Random(f"{seed}-{split}")
    records = []
    for i in range(rows):
        if photos:
            width, height = rng.choice([(1024, 683), (683, 1024), (800, 1066), (1024, 768)])
        else:
            width, height = rng.randint(48, 160), rng.randint(48, 160)
        if i in corrupt:
            data = CORRUPT_BYTES
        elif photos:
            data = photo_jpeg(width, height, seed=rng.randrange(2**31))
        else:
            data = _image(rng, width, height, "PNG" if i % 7 == 3 else "JPEG")
        n_objects = rng.randint(0, 4)
        objects: dict[str, list] = {"bbox_id": [], "category": [], "bbox": [], "area": []}
        for j in range(n_objects):
            w, h = rng.randint(4, width), rng.randint(4, height)
            x, y = rng.randint(0, width - w), rng.randint(0, height - h)
            objects["bbox_id"].append((first_image_id + i) * 10 + j)
            objects["category"].append(rng.randrange(len(CATEGORIES)))
            objects["bbox"].append([float(x), float(y), float(x + w), float(y + h)])
            objects["area"].append(w * h)
        records.append(
            {
                "image_id": first_image_id + i,
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
    return out_dir


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m devstack.sample_data",
        description="Write a generated dataset in Fashionpedia's schema (random pictures).",
    )
    parser.add_argument("out_dir", type=Path, help="dataset directory to write")
    parser.add_argument("--rows", type=int, default=200, help="images per split (default 200)")
    parser.add_argument("--splits", nargs="+", default=["train", "val"], help="splits to write")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    args = parser.parse_args()
    for k, split in enumerate(args.splits):
        generate(args.out_dir, split, args.rows, seed=args.seed, first_image_id=1 + k * 1_000_000)
    print(f"wrote {args.rows} images per split {args.splits} under {args.out_dir}/data")


if __name__ == "__main__":
    main()
