"""The garments, colours and parts a search text names, by the rules of fashionrag.query_words."""

from __future__ import annotations

import pytest

from fashionrag.colours import COLOUR_SYNONYMS, COLOURS, SHADES
from fashionrag.fashionpedia import GARMENTS, PARTS, SYNONYMS
from fashionrag.query_words import GarmentTerm, Recognised, understand

TOP = "top, t-shirt, sweatshirt"
BAG = "bag, wallet"


def _words(names: tuple[str, ...]) -> list[tuple[str, str]]:
    return [(word.strip(), name) for name in names for word in name.split(",")]


@pytest.mark.parametrize(
    ("text", "garments", "colours"),
    [
        # the README's examples
        ("red tops", [(TOP, ("red",))], ()),
        ("a long dress", [("dress", ())], ()),
        ("black boots", [("shoe", ("black",))], ()),
        # a part in front of its garment does not win over it (issue 14)
        ("short sleeve dress", [("dress", ())], ()),
        ("long-sleeve t-shirt", [(TOP, ())], ()),
        ("red long sleeve dress", [("dress", ("red",))], ()),
        ("v-neck sweater", [("sweater", ())], ()),
        # several garments: each with the colours in front of it
        ("red tops and blue jeans", [(TOP, ("red",)), ("pants", ("blue",))], ()),
        ("shoes and a bag", [("shoe", ()), (BAG, ())], ()),
        ("red and white sneakers", [("shoe", ("red", "white"))], ()),
        # colours after the garment, or after "in"
        ("tops in red", [(TOP, ("red",))], ()),
        ("tops in red and blue jeans", [(TOP, ("red",)), ("pants", ("blue",))], ()),
        ("a dress, black or navy", [("dress", ("black", "navy"))], ()),
        # synonyms, shades, spellings
        ("navy blazer", [("jacket", ("navy",))], ()),
        ("light grey hoodie", [(TOP, ("grey",))], ()),
        ("dark blue jeans", [("pants", ("navy",))], ()),
        ("Crimson Trench Coats", [("coat", ("red",))], ()),
        ("white sneakers", [("shoe", ("white",))], ()),
        ("sweatshirt", [(TOP, ())], ()),
        ("t shirt", [(TOP, ())], ()),
        ("tshirts", [(TOP, ())], ()),
        ("T-Shirt", [(TOP, ())], ()),
        ("polo shirt", [(TOP, ())], ()),
        ("bow tie", [("tie", ())], ()),
        ("hot pants", [("shorts", ())], ()),
        ("hot pink heels", [("shoe", ("pink",))], ()),
        ("scarves and sunglasses", [("scarf", ()), ("glasses", ())], ()),
        ("hair accessories", [("headband, head covering, hair accessory", ())], ()),
        ("mini skirts", [("skirt", ())], ()),
        # parts are attributes, never garments
        ("floral dress with pockets", [("dress", ())], ()),
        ("a dress with white collar", [("dress", ())], ()),
        ("the sleeve", [], ()),
        ("zippers and ruffles", [], ()),
        # colours with no garment
        ("crimson", [], ("red",)),
        ("something light blue or grey", [], ("blue", "grey")),
        ("white collar", [], ()),
        # nothing understood, never an error
        ("chartreuse blorp", [], ()),
        ("shorter hatless topography", [], ()),
        ("", [], ()),
        ("   ,;- ", [], ()),
    ],
)
def test_text_names_these_garments_and_colours(
    text: str, garments: list[tuple[str, tuple[str, ...]]], colours: tuple[str, ...]
) -> None:
    understood = understand(text)
    assert [(term.category, term.colours) for term in understood.garments] == garments
    assert understood.colours == colours


def test_garment_terms_carry_the_words_they_were_read_from() -> None:
    understood = understand("Red tops and blue jeans, please")
    assert understood.garments == (
        GarmentTerm(TOP, ("red",), "Red tops"),
        GarmentTerm("pants", ("blue",), "blue jeans"),
    )
    assert understood.categories == (TOP, "pants")


def test_recognised_lists_every_phrase_understood_in_order() -> None:
    understood = understand("light grey hoodie with a Zipper, gray")
    assert understood.recognised == (
        Recognised("light grey", "colour", "grey"),
        Recognised("hoodie", "garment", TOP),
        Recognised("Zipper", "part", "zipper"),
        Recognised("gray", "colour", "grey"),
    )
    assert understood.parts == ("zipper",)
    assert understood.garments[0].colours == ("grey",)


def test_categories_name_each_garment_once() -> None:
    assert understand("tops, tees and more tops").categories == (TOP,)


def test_part_words_are_reported_as_parts() -> None:
    understood = understand("short sleeve dress with pockets")
    assert understood.parts == ("sleeve", "pocket")
    assert understood.categories == ("dress",)


@pytest.mark.parametrize(("word", "name"), _words(GARMENTS) + sorted(SYNONYMS.items()))
def test_every_garment_and_part_word_round_trips(word: str, name: str) -> None:
    for form in {word, word.upper(), word.replace("-", " "), word.replace(" ", "-")}:
        understood = understand(f"the {form}, please")
        if name in GARMENTS:
            assert understood.categories == (name,), form
        else:
            assert understood.categories == () and understood.parts == (name,), form


@pytest.mark.parametrize(("word", "name"), _words(GARMENTS) + _words(PARTS))
def test_every_category_word_is_understood_in_the_plural(word: str, name: str) -> None:
    plural = {"scarf": "scarves", "dress": "dresses", "watch": "watches"}.get(word)
    if plural is None:
        plural = (
            word if word.endswith("s") else word[:-1] + "ies" if word[-1] == "y" else word + "s"
        )
    understood = understand(plural)
    assert (understood.categories or understood.parts) == (name,)


@pytest.mark.parametrize(
    ("word", "colour"), [(c, c) for c in COLOURS] + sorted(COLOUR_SYNONYMS.items())
)
def test_every_colour_word_round_trips_alone_and_on_a_garment(word: str, colour: str) -> None:
    assert understand(word).colours == (colour,)
    assert understand(f"{word} dress").garments == (
        GarmentTerm("dress", (colour,), f"{word} dress"),
    )


@pytest.mark.parametrize("shade", SHADES)
def test_a_shade_keeps_the_palette_colour(shade: str) -> None:
    assert understand(f"{shade} green").colours == ("green",)
    assert understand(f"{shade} green").recognised == (
        Recognised(f"{shade} green", "colour", "green"),
    )


def test_a_shade_alone_is_no_colour() -> None:
    assert understand("dark light").recognised == ()
