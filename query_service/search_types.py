"""The transport-neutral shapes of a search: the query a caller asks and the outcome it gets.

The core (search.py) takes a SearchQuery and returns a SearchOutcome; gRPC (conversions.py),
JSON (json_contract.py) and the Python client (client.py) each convert from these, so no
transport builds its answer by way of another's.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from fashionrag.collection import ImageRecord


@dataclass(frozen=True)
class SearchQuery:
    """One search: exactly one of `text` and `image`.

    `auto_category` None means the service's default.
    """

    text: str | None = None
    image: bytes | None = None
    top_k: int | None = None  # None: the default, 10
    categories: list[str] = field(default_factory=list)
    auto_category: bool | None = None


@dataclass(frozen=True)
class Hit:
    """One image found."""

    rank: int
    record: ImageRecord
    distance: float

    @property
    def score(self) -> float:
        """Cosine similarity, 1 - distance."""
        return 1.0 - self.distance


@dataclass(frozen=True)
class SearchOutcome:
    """The results of a search, nearest first."""

    query: str
    hits: list[Hit]
    applied_categories: list[str]
    auto_category: str = ""
