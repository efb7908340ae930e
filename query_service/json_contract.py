"""The JSON contract of a search, made from the core's outcome: the one converter behind both
`search --json` (through the client) and `GET/POST /api/search`, so the two cannot drift apart.

    {"query", "grain": "garment"|"photo", "applied_categories", "auto_category",
     "applied_colours", "understood": [{"words", "kind", "meaning"}],
     "garment_filters": [{"category", "colours"}],
     "results": [{"rank", "id", "path", "distance", "score", "categories", "width", "height",
                  "image_id", "split",
                  "garments": [{"id", "category", "colour", "colour2", "box": [x0, y0, x1, y1],
                                "distance", "area"}]}]}
"""

from __future__ import annotations

from typing import Any

import numpy as np

from query_service.search_types import GarmentMatch, Hit, SearchOutcome


def _f32(value: float) -> float:
    """A float as gRPC carries it (float32), so a result reads the same whether it came through
    the client or straight from the core."""
    return round(float(np.float32(value)), 6)


def garment_dict(match: GarmentMatch) -> dict[str, Any]:
    """One matched garment as the JSON contract spells it."""
    return {
        "id": match.id,
        "category": match.category,
        "colour": match.colour,
        "colour2": match.colour2,
        "box": [_f32(v) for v in match.box],
        "distance": _f32(match.distance),
        "area": _f32(match.area),
    }


def hit_dict(hit: Hit) -> dict[str, Any]:
    """One result as the JSON contract spells it."""
    record = hit.record
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
        "garments": [garment_dict(g) for g in hit.garments],
    }


def outcome_dict(outcome: SearchOutcome) -> dict[str, Any]:
    """The whole outcome as the JSON contract spells it."""
    return {
        "query": outcome.query,
        "grain": outcome.grain,
        "applied_categories": list(outcome.applied_categories),
        "auto_category": outcome.auto_category,
        "applied_colours": outcome.applied_colours,
        "understood": [
            {"words": w.words, "kind": w.kind, "meaning": w.meaning} for w in outcome.understood
        ],
        "garment_filters": [
            {"category": f.category, "colours": list(f.colours)} for f in outcome.garment_filters
        ],
        "results": [hit_dict(hit) for hit in outcome.hits],
    }
