"""The colour vocabulary: the palette of names a shopper uses, and the everyday words for them.

The embedder names each garment's colours from this palette (embedder_service computes them from
the pixels); the query service reads colour words in a query into the same names.
"""

from __future__ import annotations

# The palette, in a fixed order (what the gallery and the docs list).
COLOURS: tuple[str, ...] = (
    "black",
    "white",
    "grey",
    "beige",
    "brown",
    "red",
    "pink",
    "orange",
    "yellow",
    "green",
    "blue",
    "navy",
    "purple",
)

# Everyday words for palette colours, beyond the names themselves.
COLOUR_SYNONYMS: dict[str, str] = {
    "gray": "grey",
    "silver": "grey",
    "charcoal": "grey",
    "ivory": "white",
    "cream": "beige",
    "tan": "beige",
    "camel": "beige",
    "khaki": "beige",
    "nude": "beige",
    "chocolate": "brown",
    "burgundy": "red",
    "maroon": "red",
    "wine": "red",
    "crimson": "red",
    "scarlet": "red",
    "fuchsia": "pink",
    "magenta": "pink",
    "rose": "pink",
    "coral": "orange",
    "rust": "orange",
    "mustard": "yellow",
    "gold": "yellow",
    "olive": "green",
    "mint": "green",
    "emerald": "green",
    "teal": "green",
    "turquoise": "blue",
    "denim": "blue",
    "cobalt": "blue",
    "violet": "purple",
    "lilac": "purple",
    "lavender": "purple",
    "plum": "purple",
    "mauve": "purple",
    "cyan": "blue",
    "aqua": "blue",
    "indigo": "navy",
    "dark blue": "navy",
    "navy blue": "navy",
    "midnight blue": "navy",
    "off white": "white",
    "taupe": "beige",
    "sand": "beige",
    "peach": "orange",
    "salmon": "pink",
    "blush": "pink",
    "lime": "green",
}

# Words that shade a colour without leaving its palette name ("light blue" is blue, "pale pink"
# is pink); a named phrase above wins over a shade ("dark blue" is navy).
SHADES: tuple[str, ...] = (
    "light",
    "dark",
    "pale",
    "bright",
    "deep",
    "soft",
    "pastel",
    "dusty",
    "muted",
    "hot",
    "baby",
    "sky",
    "royal",
    "electric",
    "neon",
)
