"""A small index of generated outfits with garments of known colours, written through the
collection contract as the indexer writes it (files, then garment records from the real
embedder's region vectors, then photo records), for tests that need known garment records: their
colours are the drawn ones, so what a search must find is known exactly."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from devstack.garments import Outfit, draw_outfit
from embedder_service.client import EmbedderClient, ImageRequest
from fashionrag.collection import GarmentRecord, ImageRecord, garment_record_id, record_id
from fashionrag.collection_store import CollectionWriter, connect, open_collections

TOPS = "top, t-shirt, sweatshirt"


def outfits_with_red_tops(
    photos: int, red_tops: int, width: int, height: int
) -> list[tuple[int, Outfit]]:
    """The first `photos` seeds' outfits, with later seeds added until `red_tops` of them wear a
    red top (the draw is random; the seeds make it the same every run): (seed, outfit) pairs."""
    chosen: list[tuple[int, Outfit]] = []
    red = 0
    for seed in range(2000):
        outfit = draw_outfit(np.random.default_rng(seed), width, height)
        has_red_top = any(
            g.category == TOPS and "red" in (g.colour, g.secondary) for g in outfit.garments
        )
        if len(chosen) < photos or (has_red_top and red < red_tops):
            chosen.append((seed, outfit))
            red += has_red_top
        if len(chosen) >= photos and red >= red_tops:
            return chosen
    raise RuntimeError(f"fewer than {red_tops} red tops in 2000 drawn outfits")


def write_outfit_index(
    outfits: list[Outfit], embedder: str, chroma_url: str, collection: str, images_dir: Path
) -> dict[str, list[GarmentRecord]]:
    """Write `outfits` as collection `collection` (re-created) with their files under
    `images_dir/train`; return photo record id → its garment records."""
    images = images_dir / "train"
    images.mkdir(parents=True, exist_ok=True)
    with EmbedderClient(embedder, timeout=60) as client:
        embedded = client.embed_images(
            [
                ImageRequest(str(i), o.jpeg, [g.box for g in o.garments])
                for i, o in enumerate(outfits)
            ]
        )
        model = client.model_info()
    chroma = connect(chroma_url)
    writer = CollectionWriter(
        chroma, open_collections(chroma, collection, model, create=True, recreate=True)
    )
    by_photo: dict[str, list[GarmentRecord]] = {}
    photos: list[ImageRecord] = []
    photo_vectors: list[list[float]] = []
    garments: list[GarmentRecord] = []
    garment_vectors: list[list[float]] = []
    for image_id, (outfit, result) in enumerate(zip(outfits, embedded, strict=True), 1):
        if result.vector is None:
            raise RuntimeError(f"outfit {image_id} was not embedded: {result.error}")
        path = images / f"{image_id}.jpg"
        path.write_bytes(outfit.jpeg)
        photo = ImageRecord(
            record_id("train", image_id),
            image_id,
            "train",
            str(path),
            outfit.width,
            outfit.height,
            tuple(dict.fromkeys(g.category for g in outfit.garments)),
        )
        photos.append(photo)
        photo_vectors.append(result.vector.tolist())
        for box_id, (g, region) in enumerate(zip(outfit.garments, result.regions, strict=True)):
            if region.vector is None:
                raise RuntimeError(f"garment {box_id} of outfit {image_id}: {region.error}")
            x0, y0, x1, y1 = g.box
            record = GarmentRecord(
                garment_record_id("train", image_id, box_id),
                photo.id,
                image_id,
                "train",
                g.category,
                g.box,
                (x1 - x0) * (y1 - y0) / (outfit.width * outfit.height),
                g.colour,
                g.secondary,
            )
            garments.append(record)
            garment_vectors.append(region.vector.tolist())
            by_photo.setdefault(photo.id, []).append(record)
    writer.upsert_garments(garments, garment_vectors)
    writer.upsert_photos(photos, photo_vectors)
    return by_photo
