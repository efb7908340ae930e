"""`make eval` / `python -m query_service eval`: retrieval quality per Fashionpedia garment
category, scored against the collection's own annotations.

For each category, the text "a photo of a <category>" is searched (no category filter, so the
model alone is measured) and precision@k is the share of the top k whose photo contains that
category; its base rate — the share of all indexed photos that contain it — is what random
results would score. With pretrained weights this measures the model on real data; with random
weights precision sits near the base rate, which is the check that the arithmetic is honest.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from pydantic_settings import CliApp

from fashionrag.collection import KEY_CATEGORIES
from fashionrag.collection_store import connect
from fashionrag.fashionpedia import GARMENTS
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


def precision_at_k(retrieved: Sequence[Iterable[str]], category: str) -> float:
    """The share of retrieved photos (each given by its categories) that contain `category`."""
    if not retrieved:
        return 0.0
    return sum(1 for cats in retrieved if category in set(cats)) / len(retrieved)


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


def main(argv: list[str]) -> int:
    settings = CliApp.run(EvalSettings, cli_args=argv)
    annotations = collection_annotations(settings.chroma, settings.collection)
    security = settings.client_security()
    with QueryClient(settings.address, timeout=settings.timeout, security=security) as client:
        scores = evaluate(client, annotations, settings.top_k)
    text = markdown(
        scores,
        settings.top_k,
        f"Retrieval quality: {len(annotations)} photos in {settings.collection!r}",
    )
    print(text)
    if settings.out:
        out = Path(settings.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
