"""How a search's text and filters become what is ranked: the grain (photo or garment vectors),
the garment filter and the photo filter.

The rules (the query service's contract; README "How a text is read"):

- **Garment terms.** With understanding on (`--auto-category on`, or the request's
  `category_mode`) and no explicit categories, each garment the text names is a term: its
  category and the colours that qualify it (fashionrag.query_words). Explicit request categories
  that are garments replace them, one term each, with the request's colours. Explicit colours
  replace the colours of understood terms; explicit colours with no garment category at all make
  one term over every garment category. Terms of one category merge (their colours join; a term
  of any colour wins). A term matches a garment of its category whose primary or secondary colour
  is one of its colours (any colour when it has none); a garment matches when any term does, so
  "red tops and blue jeans" finds red tops OR blue pants and ranks each photo by its best garment
  of either.
- **Parts.** Explicit categories that are garment parts ("sleeve") keep photos that contain any
  of them, at either grain.
- **Grain.** Terms → garment grain: garment vectors under the garment filter, each photo once,
  ranked by its nearest matching garment. No terms → photo grain, as before garment records
  existed: a colour-only text ("something red") stays a photo search (its colours are reported
  as understood, not applied). An index without garment records (`--regions none`) falls back to
  photo grain, the terms' categories filtering photos (their colours cannot be). Image queries
  always rank photo vectors; their categories filter photos; colours are refused.
- Unknown words, colour-like or not, are ignored: a text is never an error for its words.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from fashionrag.collection import category_filter, garment_filter
from fashionrag.fashionpedia import GARMENTS
from fashionrag.query_words import understand
from query_service.search_types import GarmentFilter, Grain, UnderstoodWord

ANY_GARMENT = ""  # the category of a term over every garment category


@dataclass(frozen=True)
class SearchPlan:
    """What one search ranks, and under which filters.

    Attributes:
        grain: which vectors are ranked.
        garment_filters: the garment filter's alternatives (garment grain only).
        photo_categories: photo grain: photos must contain any of these.
        parts: photos must contain any of these (either grain).
        auto_category: the first garment category understood in the text and applied.
        understood: what was understood in the text.
    """

    grain: Grain
    garment_filters: tuple[GarmentFilter, ...] = ()
    photo_categories: tuple[str, ...] = ()
    parts: tuple[str, ...] = ()
    auto_category: str = ""
    understood: tuple[UnderstoodWord, ...] = ()

    @property
    def applied_categories(self) -> list[str]:
        """The categories filtered on: the garments', then the parts."""
        named = [f.category for f in self.garment_filters if f.category != ANY_GARMENT]
        return list(dict.fromkeys([*named, *self.photo_categories, *self.parts]))

    def photo_where(self) -> dict[str, Any] | None:
        """The photo records' filter: any of the photo categories, and any of the parts."""
        clauses = [
            clause
            for clause in (category_filter(self.photo_categories), category_filter(self.parts))
            if clause is not None
        ]
        if not clauses:
            return None
        return clauses[0] if len(clauses) == 1 else {"$and": clauses}

    def garment_terms(self) -> list[list[tuple[str, Sequence[str]]]]:
        """Each garment filter as (category, colours) terms (fashionrag.collection's
        garment_filter), a filter over every garment spelled out per category."""
        return [
            [(c, f.colours) for c in (GARMENTS if f.category == ANY_GARMENT else (f.category,))]
            for f in self.garment_filters
        ]

    def garment_where(self) -> dict[str, Any] | None:
        """The garment records' filter: any of the garment filters."""
        return garment_filter([term for terms in self.garment_terms() for term in terms])


def _merge(terms: Sequence[tuple[str, Sequence[str]]]) -> tuple[GarmentFilter, ...]:
    """One filter per category, in first-named order: colours joined, none meaning any."""
    merged: dict[str, list[str] | None] = {}
    for category, colours in terms:
        known = merged.get(category, [])
        if known is None:
            continue  # already any colour
        if not colours:
            merged[category] = None
            continue
        merged[category] = known + [c for c in colours if c not in known]
    return tuple(GarmentFilter(c, tuple(colours or ())) for c, colours in merged.items())


def plan_search(
    text: str | None,
    categories: Sequence[str],
    colours: Sequence[str],
    understanding_on: bool,
    has_garments: Callable[[], bool],
) -> SearchPlan:
    """The plan of one search, by the rules of this module's docstring.

    Args:
        text: the text query, None for an image query.
        categories: the request's categories (validated).
        colours: the request's palette colours (validated; none for an image query).
        understanding_on: whether the text's words become filters.
        has_garments: whether the index holds garment records (asked only when it matters).
    """
    garments = [c for c in categories if c in GARMENTS]
    parts = tuple(c for c in categories if c not in GARMENTS)
    if text is None:
        return SearchPlan("photo", photo_categories=tuple(garments), parts=parts)
    understanding = understand(text) if understanding_on else None
    understood = tuple(
        UnderstoodWord(r.words, r.kind, r.meaning)
        for r in (understanding.recognised if understanding else ())
    )
    auto = ""
    terms: list[tuple[str, Sequence[str]]]
    if garments:
        terms = [(category, colours) for category in garments]
    elif understanding is not None and not categories and understanding.garments:
        terms = [(t.category, colours or t.colours) for t in understanding.garments]
        auto = terms[0][0]
    elif colours:
        terms = [(ANY_GARMENT, colours)]
    else:
        terms = []
    filters = _merge(terms)
    if not filters:
        return SearchPlan("photo", parts=parts, understood=understood)
    if not has_garments():
        named = tuple(f.category for f in filters if f.category != ANY_GARMENT)
        return SearchPlan(
            "photo", photo_categories=named, parts=parts, auto_category=auto, understood=understood
        )
    return SearchPlan(
        "garment", garment_filters=filters, parts=parts, auto_category=auto, understood=understood
    )
