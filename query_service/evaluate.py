"""`make eval` / `python -m query_service eval`: retrieval quality, scored against the
collection's own records, in two tables.

Per garment category: the text "a photo of a <category>" is searched (no category filter, so the
model alone is measured) and precision@k is the share of the top k whose photo contains that
category; its base rate — the share of all indexed photos that contain it — is what random
results would score. With pretrained weights this measures the model on real data; with random
weights precision sits near the base rate, which is the check that the arithmetic is honest.

Per colour-and-garment query ("red tops", "black shoes", "blue jeans", ...: the classic ones the
collection holds, then its most common garment-and-colour pairs): a hit is a photo with a garment
record of that category in that colour (primary or secondary), per the collection's garment
records. Photo vectors (understanding off) and garment vectors (on: the text's garment and colour
become the garment filter) side by side, with the base rate. With pretrained weights the photo
column measures the model; with random ones it sits near the base rate, and the garment column
measures the filters (1.00 wherever the collection holds k such photos).
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic_settings import CliApp

from fashionrag.collection import (
    KEY_CATEGORIES,
    KEY_CATEGORY,
    KEY_COLOUR,
    KEY_COLOUR2,
    KEY_PHOTO,
    garments_collection_name,
)
from fashionrag.collection_store import connect
from fashionrag.fashionpedia import GARMENTS
from fashionrag.query_words import understand
from query_service.client import QueryClient
from query_service.settings import EvalSettings


@dataclass(frozen=True)
class CategoryScore:
    """One category's row of the table."""

    category: str
    prompt: str
    precision: float
    base_rate: float
    retrieved: int


def prompt_for(category: str) -> str:
    """The query text for a category: its first name ("top, t-shirt, ..." → "a photo of a top")."""
    return f"a photo of a {category.split(',')[0].strip()}"


def precision_at_k(retrieved: Sequence[Iterable[Any]], wanted: Any) -> float:
    """The share of retrieved photos (each given by what it holds: its categories, or its
    garment-and-colour pairs) that hold `wanted`."""
    if not retrieved:
        return 0.0
    return sum(1 for held in retrieved if wanted in set(held)) / len(retrieved)


def base_rate(collection: Sequence[Iterable[str]], category: str) -> float:
    """The share of all photos (each given by its categories) that contain `category`."""
    return precision_at_k(collection, category)


def evaluate(
    client: QueryClient,
    annotations: Sequence[Sequence[str]],
    k: int,
    categories: Sequence[str] = GARMENTS,
) -> list[CategoryScore]:
    """Score each category through the Query service."""
    scores = []
    for category in categories:
        outcome = client.text(prompt_for(category), top_k=k, auto_category=False)
        retrieved = [list(hit.record.categories) for hit in outcome.hits]
        scores.append(
            CategoryScore(
                category,
                prompt_for(category),
                precision_at_k(retrieved, category),
                base_rate(annotations, category),
                len(retrieved),
            )
        )
    return scores


def markdown(scores: Sequence[CategoryScore], k: int, heading: str) -> str:
    """The table, one row per category, and the means."""
    lines = [
        f"### {heading}",
        "",
        f"| category | query | precision@{k} | base rate | lift |",
        "|---|---|---|---|---|",
    ]
    for s in scores:
        lift = f"{s.precision / s.base_rate:.2f}" if s.base_rate else "-"
        lines.append(
            f"| {s.category} | {s.prompt} | {s.precision:.2f} | {s.base_rate:.3f} | {lift} |"
        )
    mean_p = sum(s.precision for s in scores) / max(len(scores), 1)
    mean_b = sum(s.base_rate for s in scores) / max(len(scores), 1)
    lines += [f"| **mean** | | **{mean_p:.3f}** | **{mean_b:.3f}** | |", ""]
    return "\n".join(lines)


def collection_annotations(chroma_url: str, collection: str) -> list[list[str]]:
    """The categories of every record of the collection."""
    records = connect(chroma_url).get_collection(collection).get(include=["metadatas"])
    return [list((m or {}).get(KEY_CATEGORIES) or []) for m in records["metadatas"]]


Pair = tuple[str, str]  # (garment category, palette colour)

# The queries people type most, scored first wherever the collection holds such garments.
CLASSIC_QUERIES: tuple[tuple[str, Pair], ...] = (
    ("red tops", ("top, t-shirt, sweatshirt", "red")),
    ("black shoes", ("shoe", "black")),
    ("blue jeans", ("pants", "blue")),
    ("white sneakers", ("shoe", "white")),
    ("black dress", ("dress", "black")),
    ("white shirts", ("shirt, blouse", "white")),
    ("black bags", ("bag, wallet", "black")),
)


@dataclass(frozen=True)
class GarmentQueryScore:
    """One colour-and-garment query's row: precision@k at both grains, and the base rate."""

    query: str
    category: str
    colour: str
    photo_precision: float
    garment_precision: float
    base_rate: float
    photo_retrieved: int
    garment_retrieved: int


def collection_garments(chroma_url: str, collection: str) -> dict[str, set[Pair]]:
    """Each photo's (category, colour) pairs, primary and secondary colour, from the garment
    records of the collection (photos without garment records are absent)."""
    records = (
        connect(chroma_url)
        .get_collection(garments_collection_name(collection))
        .get(include=["metadatas"])
    )
    pairs: dict[str, set[Pair]] = {}
    for meta in records["metadatas"]:
        meta = meta or {}
        held = pairs.setdefault(str(meta.get(KEY_PHOTO, "")), set())
        for key in (KEY_COLOUR, KEY_COLOUR2):
            if meta.get(key):
                held.add((str(meta.get(KEY_CATEGORY, "")), str(meta[key])))
    return pairs


def _plural(word: str) -> str:
    if word.endswith("s"):
        return word
    return word + ("es" if word.endswith(("sh", "ch", "x", "z")) else "s")


def query_for(pair: Pair) -> str:
    """The text a shopper types for a garment in a colour: "red tops", "black shoes"."""
    category, colour = pair
    return f"{colour} {_plural(category.split(',')[0].strip())}"


def _reads_as(text: str, pair: Pair) -> bool:
    """Whether the query service reads `text` as exactly this garment in this colour."""
    terms = understand(text).garments
    return [(t.category, t.colours) for t in terms] == [(pair[0], (pair[1],))]


def garment_queries(garments: dict[str, set[Pair]], count: int) -> list[tuple[str, Pair]]:
    """The queries to score: the classic ones the collection holds, then its most common
    garment-and-colour pairs, `count` in all."""
    holders: dict[Pair, int] = {}
    for pairs in garments.values():
        for pair in pairs:
            holders[pair] = holders.get(pair, 0) + 1
    chosen = [(text, pair) for text, pair in CLASSIC_QUERIES if holders.get(pair)]
    taken = {pair for _, pair in chosen}
    for pair in sorted(holders, key=lambda p: (-holders[p], p)):
        text = query_for(pair)
        if pair not in taken and _reads_as(text, pair):
            chosen.append((text, pair))
            taken.add(pair)
    return chosen[:count]


def evaluate_garments(
    client: QueryClient,
    photo_ids: Sequence[str],
    garments: dict[str, set[Pair]],
    k: int,
    queries: Sequence[tuple[str, Pair]],
) -> list[GarmentQueryScore]:
    """Score each query at photo grain (understanding off) and garment grain (on)."""
    scores = []
    for text, pair in queries:
        outcomes = [client.text(text, top_k=k, auto_category=on) for on in (False, True)]
        precisions = [
            precision_at_k([garments.get(hit.record.id, set()) for hit in o.hits], pair)
            for o in outcomes
        ]
        base = sum(1 for pid in photo_ids if pair in garments.get(pid, set()))
        scores.append(
            GarmentQueryScore(
                text,
                pair[0],
                pair[1],
                precisions[0],
                precisions[1],
                base / len(photo_ids) if photo_ids else 0.0,
                len(outcomes[0].hits),
                len(outcomes[1].hits),
            )
        )
    return scores


def garments_markdown(scores: Sequence[GarmentQueryScore], k: int, heading: str) -> str:
    """The colour-and-garment table, one row per query, and the means."""
    lines = [
        f"### {heading}",
        "",
        f"| query | garment | colour | photo vectors p@{k} | garment vectors p@{k} | returned "
        "(garment) | base rate |",
        "|---|---|---|---|---|---|---|",
    ]
    for s in scores:
        lines.append(
            f"| {s.query} | {s.category} | {s.colour} | {s.photo_precision:.2f} | "
            f"{s.garment_precision:.2f} | {s.garment_retrieved}/{k} | {s.base_rate:.3f} |"
        )
    n = max(len(scores), 1)
    lines += [
        f"| **mean** | | | **{sum(s.photo_precision for s in scores) / n:.3f}** | "
        f"**{sum(s.garment_precision for s in scores) / n:.3f}** | | "
        f"**{sum(s.base_rate for s in scores) / n:.3f}** |",
        "",
        "A hit is a photo with a garment record of that category in that colour (primary or "
        "secondary). Photo vectors: the text alone, understanding off. Garment vectors: the "
        "garment and colour the text names filter the garment records, each photo ranked by its "
        "best garment. Returned: how many photos the garment search found (fewer than k when "
        "the collection holds fewer such photos; precision is over those returned).",
        "",
    ]
    return "\n".join(lines)


def photo_ids(chroma_url: str, collection: str) -> list[str]:
    """The ids of every photo record of the collection."""
    return list(connect(chroma_url).get_collection(collection).get(include=[])["ids"])


def main(argv: list[str]) -> int:
    settings = CliApp.run(EvalSettings, cli_args=argv)
    annotations = collection_annotations(settings.chroma, settings.collection)
    garments = collection_garments(settings.chroma, settings.collection)
    photos = photo_ids(settings.chroma, settings.collection)
    queries = garment_queries(garments, settings.garment_queries)
    security = settings.client_security()
    with QueryClient(settings.address, timeout=settings.timeout, security=security) as client:
        scores = evaluate(client, annotations, settings.top_k)
        garment_scores = evaluate_garments(client, photos, garments, settings.top_k, queries)
    text = markdown(
        scores,
        settings.top_k,
        f"Retrieval quality: {len(annotations)} photos in {settings.collection!r}",
    )
    heading = (
        f"Colour and garment queries: photo vectors vs garment vectors "
        f"({sum(len(p) > 0 for p in garments.values())} photos with garment records)"
    )
    if garment_scores:
        text += "\n" + garments_markdown(garment_scores, settings.top_k, heading)
    else:
        text += f"\n### {heading}\n\nNo garment records: index with --regions garments.\n"
    print(text)
    if settings.out:
        out = Path(settings.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
