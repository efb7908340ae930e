"""The transport-neutral shapes of a search: the query a caller asks and the outcome it gets.

The core (search.py) takes a SearchQuery and returns a SearchOutcome; gRPC (conversions.py),
JSON (json_contract.py) and the Python client (client.py) each convert from these, so no
transport builds its answer by way of another's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from fashionrag.collection import Box, GarmentRecord, ImageRecord

Grain = Literal["photo", "garment"]


@dataclass(frozen=True)
class SearchQuery:
    """One search: exactly one of `text` and `image`.

    `auto_category` (understanding the text's words) None means the service's default;
    `colours` are palette names that filter garments (text queries only).
    """

    text: str | None = None
    image: bytes | None = None
    top_k: int | None = None  # None: the default, 10
    categories: list[str] = field(default_factory=list)
    auto_category: bool | None = None
    colours: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class GarmentMatch:
    """One garment of a found photo that matched the query, and its distance."""

    id: str
    category: str
    colour: str
    colour2: str
    box: Box
    area: float
    distance: float

    @classmethod
    def of(cls, record: GarmentRecord, distance: float) -> GarmentMatch:
        """The match of a garment record at this distance."""
        return cls(
            record.id,
            record.category,
            record.colour,
            record.colour2,
            record.box,
            record.area,
            distance,
        )


@dataclass(frozen=True)
class UnderstoodWord:
    """A phrase of the text that was understood: its words, kind ("garment", "colour",
    "part") and meaning (a category or palette name)."""

    words: str
    kind: str
    meaning: str


@dataclass(frozen=True)
class GarmentFilter:
    """One alternative of a garment filter: a category ("" for any garment) in any of
    `colours` (empty: any colour), primary or secondary."""

    category: str
    colours: tuple[str, ...] = ()


@dataclass(frozen=True)
class Hit:
    """One image found."""

    rank: int
    record: ImageRecord
    distance: float
    garments: tuple[GarmentMatch, ...] = ()  # nearest first; empty at photo grain

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
    grain: Grain = "photo"
    understood: list[UnderstoodWord] = field(default_factory=list)
    garment_filters: list[GarmentFilter] = field(default_factory=list)

    @property
    def applied_colours(self) -> list[str]:
        """The colours the garment filters name, each once, in their order."""
        return list(dict.fromkeys(c for f in self.garment_filters for c in f.colours))
