"""The JSON contract of a search, made from the SearchResponse message: the one converter behind
both `search --json` and `GET/POST /api/search`, so the two can never drift apart."""

from __future__ import annotations

from typing import Any

from fashionrag.v1 import query_pb2


def result_dict(r: query_pb2.SearchResult) -> dict[str, Any]:
    """One result as the JSON contract spells it."""
    return {
        "rank": r.rank,
        "id": r.id,
        "path": r.path,
        "distance": round(r.distance, 6),
        "score": round(r.score, 6),
        "categories": list(r.categories),
        "width": r.width,
        "height": r.height,
        "image_id": r.image_id,
        "split": r.split,
    }


def response_dict(response: query_pb2.SearchResponse) -> dict[str, Any]:
    """The whole response as the JSON contract spells it."""
    return {
        "query": response.query,
        "applied_categories": list(response.applied_categories),
        "auto_category": response.auto_category,
        "results": [result_dict(r) for r in response.results],
    }
