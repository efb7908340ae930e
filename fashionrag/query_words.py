"""Understanding a search text: the garments it names, the colours that qualify them, the parts.

`understand("red tops and blue jeans")` reads the words of a text against the Fashionpedia
vocabulary (`fashionpedia.CATEGORIES` and `SYNONYMS`) and the colour palette (`colours.COLOURS`,
`COLOUR_SYNONYMS`, `SHADES`). The rules:

- **Garment words** are the words of the 27 garment category names ("shirt", "blouse", "top",
  "t-shirt", "sweatshirt", ... "bag", "wallet", "scarf", "umbrella") and their everyday synonyms
  ("tee", "jeans", "sneaker", "blazer", "handbag", ...), each with its plural (+s; +es after s, x,
  z, ch, sh; y → ies) and any spelling that only differs in hyphens or spaces ("t-shirt",
  "t shirt", "tshirt"). Case and accents do not matter.
- **Part words** (the 19 parts: sleeve, neckline, collar, pocket, zipper, ...) are recognised and
  reported as attributes, but never name a garment: "short sleeve dress" is a dress, "the
  sleeve" names no garment.
- **The longest phrase wins**, read left to right: "t-shirt" is a top (not a shirt),
  "sweatshirt" a top, "bow tie" a tie (not the part "bow"), "hot pants" shorts.
- **Colour words** are the palette names and their synonyms ("crimson" → red, "gray" → grey),
  optionally after a shade ("light grey" → grey, "pale pink" → pink); a named phrase wins over a
  shade ("dark blue" and "navy blue" → navy). Words that are not in the vocabulary, colour-like
  or not ("chartreuse"), are ignored: never an error.
- **A colour qualifies the next garment** named after it ("red tops and blue jeans" → top: red,
  pants: blue; "red and white sneakers" → shoe: red, white), except that a colour right after
  "in" qualifies the garment before it ("tops in red and blue jeans" → top: red, pants: blue).
  Colours after the last garment qualify the last garment ("tops in red", "a dress, black").
  Colours before a part word describe that part ("a dress with white collar": the dress has no
  colour), unless the part only modifies the garment that follows in the same phrase ("red long
  sleeve dress" → dress: red).
- **Colours with no garment at all** ("crimson", "something blue") are `Understanding.colours`.

How a search uses it (the query service's contract): each `GarmentTerm` is one alternative, so
"red tops and blue jeans" matches garments that are a red top OR blue pants, and photos are
ranked by their best-matching garment; a term with no colours matches its category in any colour,
and a term with several colours matches a garment of any of them. Categories and colours given
explicitly in the request win over the text; the off switch skips understanding. A text that
names no garment searches photo vectors as it always did: its `colours` are reported as
understood but are not a filter (the text vector already carries them, and a colour word alone
should not turn a photo search into a garment search).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Literal

from fashionrag.colours import COLOUR_SYNONYMS, COLOURS, SHADES
from fashionrag.fashionpedia import CATEGORIES, GARMENTS, SYNONYMS

Kind = Literal["garment", "part", "colour"]


@dataclass(frozen=True)
class GarmentTerm:
    """One garment the text names: its category, the palette colours that qualify it (empty: any
    colour), and the words of the text it was read from ("red tops")."""

    category: str
    colours: tuple[str, ...]
    words: str


@dataclass(frozen=True)
class Recognised:
    """One phrase of the text that was understood, for the response's "understood" chips: the
    words as written, what kind of word they are, and the category or palette name they mean."""

    words: str
    kind: Kind
    meaning: str


@dataclass(frozen=True)
class Understanding:
    """What a search text says, by the rules of this module's docstring."""

    garments: tuple[GarmentTerm, ...] = ()
    colours: tuple[str, ...] = ()
    parts: tuple[str, ...] = ()
    recognised: tuple[Recognised, ...] = ()

    @property
    def categories(self) -> tuple[str, ...]:
        """The garment categories named, each once, in the order of the text."""
        return tuple(dict.fromkeys(term.category for term in self.garments))


_WORD = re.compile(r"\w+")
# Between two words of one phrase ("t-shirt", "light  blue"), nothing but spaces and hyphens.
_JOINER = re.compile(r"[\s-]+")
# What ends a noun phrase between a part word and the garment after it.
_PHRASE_BREAK = re.compile(r"[^\w\s-]|\b(?:and|or|with|without|in|plus|but|also)\b")


def _fold(word: str) -> str:
    """A word as the vocabulary spells it: case-folded, no accents ("Appliqué" → "applique")."""
    word = word.casefold()
    if word.isascii():
        return word
    return "".join(c for c in unicodedata.normalize("NFKD", word) if not unicodedata.combining(c))


def _key(phrase: str) -> str:
    """One key for every hyphen and space spelling of a phrase ("t-shirt", "t shirt" → "tshirt")."""
    return "".join(_fold(word) for word in _WORD.findall(phrase))


def _plural(phrase: str) -> str:
    if phrase.endswith(("ss", "x", "z", "ch", "sh")):
        return phrase + "es"
    if phrase.endswith("s"):  # already plural: "pants", "jeans", "glasses"
        return phrase
    if phrase.endswith("y") and phrase[-2:-1] not in "aeiou":
        return phrase[:-1] + "ies"
    return phrase + "s"


def _noun_kind(category: str) -> Kind:
    return "garment" if category in GARMENTS else "part"


class _Vocabulary:
    """Every phrase the understanding knows, keyed by `_key`, with its kind and meaning."""

    def __init__(self) -> None:
        self.phrases: dict[str, tuple[Kind, str]] = {}
        self.longest = 1  # the most words any phrase spans
        for name in CATEGORIES:
            for word in name.split(","):
                self._add_noun(word.strip(), _noun_kind(name), name)
        for word, name in SYNONYMS.items():
            if name not in CATEGORIES:
                raise ValueError(f"synonym {word!r} names no category: {name!r}")
            self._add_noun(word, _noun_kind(name), name)
        colour_words = {colour: colour for colour in COLOURS} | COLOUR_SYNONYMS
        for word, colour in colour_words.items():
            if colour not in COLOURS:
                raise ValueError(f"colour word {word!r} names no palette colour: {colour!r}")
            self._add(word, "colour", colour)
        # Shaded spellings come last and give way: "dark blue" stays navy.
        for shade in SHADES:
            for word, colour in colour_words.items():
                self._add(f"{shade} {word}", "colour", colour, strict=False)

    def _add_noun(self, phrase: str, kind: Kind, meaning: str) -> None:
        self._add(phrase, kind, meaning)
        self._add(_plural(phrase), kind, meaning)

    def _add(self, phrase: str, kind: Kind, meaning: str, strict: bool = True) -> None:
        key = _key(phrase)
        known = self.phrases.setdefault(key, (kind, meaning))
        if strict and known != (kind, meaning):
            # A vocabulary edit made one spelling mean two things; fail at import, not at search.
            raise ValueError(f"{phrase!r} means both {known} and {(kind, meaning)}")
        self.longest = max(self.longest, len(_WORD.findall(phrase)))


_VOCABULARY = _Vocabulary()


@dataclass(frozen=True)
class _Token:
    kind: Kind
    meaning: str
    start: int
    end: int
    after_in: bool  # the word before it is "in" ("tops in red")


def _tokens(text: str) -> Iterator[_Token]:
    """The vocabulary phrases of a text, left to right, the longest phrase at each word."""
    words = list(_WORD.finditer(text))
    phrases, longest = _VOCABULARY.phrases, _VOCABULARY.longest
    i = 0
    while i < len(words):
        key = ""
        found: tuple[int, tuple[Kind, str]] | None = None
        for j in range(i, min(i + longest, len(words))):
            if j > i and not _JOINER.fullmatch(text, words[j - 1].end(), words[j].start()):
                break
            key += _fold(words[j].group())
            if key in phrases:
                found = (j, phrases[key])
        if found is None:
            i += 1
            continue
        j, (kind, meaning) = found
        after_in = i > 0 and _fold(words[i - 1].group()) == "in"
        yield _Token(kind, meaning, words[i].start(), words[j].end(), after_in)
        i = j + 1


@dataclass
class _Open:
    """A garment term while its colours are still being gathered."""

    category: str
    start: int
    end: int
    colours: list[str]

    def take(self, colours: Iterable[_Token]) -> None:
        for colour in colours:
            self.start, self.end = min(self.start, colour.start), max(self.end, colour.end)
            if colour.meaning not in self.colours:
                self.colours.append(colour.meaning)


def understand(text: str) -> Understanding:
    """What a search text names, by the rules of this module's docstring; never raises.

    >>> [(t.category, t.colours) for t in understand("red tops and blue jeans").garments]
    [('top, t-shirt, sweatshirt', ('red',)), ('pants', ('blue',))]
    """
    tokens = list(_tokens(text))
    garments: list[_Open] = []
    parts: dict[str, None] = {}
    pending: list[_Token] = []  # colours waiting for the garment they qualify
    for index, token in enumerate(tokens):
        if token.kind == "colour":
            if token.after_in and garments and not pending:
                garments[-1].take([token])
            else:
                pending.append(token)
        elif token.kind == "garment":
            term = _Open(token.meaning, token.start, token.end, [])
            term.take(pending)
            garments.append(term)
            pending = []
        else:
            parts.setdefault(token.meaning)
            following = tokens[index + 1] if index + 1 < len(tokens) else None
            modifies_next = (
                following is not None
                and following.kind == "garment"
                and not _PHRASE_BREAK.search(text, token.end, following.start)
            )
            if not modifies_next:
                pending = []  # they described this part, not a garment
    colours: tuple[str, ...] = ()
    if pending and garments:
        garments[-1].take(pending)
    elif pending:
        colours = tuple(dict.fromkeys(token.meaning for token in pending))
    return Understanding(
        garments=tuple(
            GarmentTerm(term.category, tuple(term.colours), text[term.start : term.end])
            for term in garments
        ),
        colours=colours,
        parts=tuple(parts),
        recognised=tuple(
            Recognised(text[token.start : token.end], token.kind, token.meaning) for token in tokens
        ),
    )
