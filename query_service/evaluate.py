"""`make eval` / `python -m query_service eval`: retrieval quality per Fashionpedia garment
category, scored against the collection's own annotations.

For each category, the text "a photo of a <category>" is searched (no category filter, so the
model alone is measured) and precision@k is the share of the top k whose photo contains that
category; its base rate — the share of all indexed photos that contain it — is what random
results would score. With pretrained weights this measures the model on real data; with random
weights precision sits near the base rate, which is the check that the arithmetic is honest.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc

from fashionrag.collection import DEFAULT_COLLECTION, KEY_CATEGORIES, connect
from fashionrag.fashionpedia import GARMENTS
from fashionrag.grpc_server import CHANNEL_OPTIONS
from fashionrag.v1 import query_pb2, query_pb2_grpc


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


def precision_at_k(retrieved: Sequence[Iterable[str]], category: str) -> float:
    """The share of retrieved photos (each given by its categories) that contain `category`."""
    if not retrieved:
        return 0.0
    return sum(1 for cats in retrieved if category in set(cats)) / len(retrieved)


def base_rate(collection: Sequence[Iterable[str]], category: str) -> float:
    """The share of all photos (each given by its categories) that contain `category`."""
    return precision_at_k(collection, category)


def evaluate(
    stub: query_pb2_grpc.QueryStub,
    annotations: Sequence[Sequence[str]],
    k: int,
    categories: Sequence[str] = GARMENTS,
) -> list[CategoryScore]:
    """Score each category through the Query service."""
    scores = []
    for category in categories:
        response = stub.Search(
            query_pb2.SearchRequest(
                text=prompt_for(category), top_k=k, category_mode=query_pb2.CATEGORY_MODE_OFF
            ),
            timeout=60,
        )
        retrieved = [list(r.categories) for r in response.results]
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


def main(argv: list[str]) -> int:
    env = os.environ.get
    parser = argparse.ArgumentParser(
        prog="python -m query_service eval",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    parser.add_argument("--address", default=env("FASHIONRAG_ADDRESS", "127.0.0.1:50052"))
    parser.add_argument("--chroma", default=env("FASHIONRAG_CHROMA", "http://127.0.0.1:8000"))
    parser.add_argument("--collection", default=env("FASHIONRAG_COLLECTION", DEFAULT_COLLECTION))
    parser.add_argument("-k", "--top-k", type=int, default=10)
    parser.add_argument("--out", type=Path, default=None, help="also write the table here")
    args = parser.parse_args(argv)
    annotations = collection_annotations(args.chroma, args.collection)
    with grpc.insecure_channel(args.address, options=CHANNEL_OPTIONS) as channel:
        scores = evaluate(query_pb2_grpc.QueryStub(channel), annotations, args.top_k)
    text = markdown(
        scores, args.top_k, f"Retrieval quality: {len(annotations)} photos in {args.collection!r}"
    )
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
