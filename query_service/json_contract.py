"""The JSON contract of a search, made from the core's outcome: the one converter behind both
`search --json` (through the client) and `GET/POST /api/search`, so the two cannot drift apart."""

from __future__ import annotations

from typing import Any

import numpy as np

from query_service.search_types import Hit, SearchOutcome


def hit_dict(hit: Hit) -> dict[str, Any]:
    """One result as the JSON contract spells it."""
    record = hit.record
    # Distances travel as float32 in gRPC: quantise the same way here, so a result reads the
    # same whether it came through the client or straight from the core.
    distance = float(np.float32(hit.distance))
    return {
        "rank": hit.rank,
        "id": record.id,
        "path": record.path,
        "distance": round(distance, 6),
        "score": round(float(np.float32(1.0 - distance)), 6),
        "categories": list(record.categories),
        "width": record.width,
        "height": record.height,
        "image_id": record.image_id,
        "split": record.split,
    }


def outcome_dict(outcome: SearchOutcome) -> dict[str, Any]:
    """The whole outcome as the JSON contract spells it."""
    return {
        "query": outcome.query,
        "applied_categories": list(outcome.applied_categories),
        "auto_category": outcome.auto_category,
        "results": [hit_dict(hit) for hit in outcome.hits],
    }
