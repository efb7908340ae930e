"""Fashionpedia's fixed vocabulary: the 46 category names, in the dataset's ClassLabel order."""

from __future__ import annotations

HUB_DATASET = "detection-datasets/fashionpedia"

# Index i is the ClassLabel value i of `objects.category` in detection-datasets/fashionpedia.
CATEGORIES: tuple[str, ...] = (
    "shirt, blouse",
    "top, t-shirt, sweatshirt",
    "sweater",
    "cardigan",
    "jacket",
    "vest",
    "pants",
    "shorts",
    "skirt",
    "coat",
    "dress",
    "jumpsuit",
    "cape",
    "glasses",
    "hat",
    "headband, head covering, hair accessory",
    "tie",
    "glove",
    "watch",
    "belt",
    "leg warmer",
    "tights, stockings",
    "sock",
    "shoe",
    "bag, wallet",
    "scarf",
    "umbrella",
    "hood",
    "collar",
    "lapel",
    "epaulette",
    "sleeve",
    "pocket",
    "neckline",
    "buckle",
    "zipper",
    "applique",
    "bead",
    "bow",
    "flower",
    "fringe",
    "ribbon",
    "rivet",
    "ruffle",
    "sequin",
    "tassel",
)

# Fashionpedia's first 27 categories are whole garments and accessories (records of their own at
# the garment grain); the other 19 are garment parts (sleeve, neckline, zipper...), which stay
# attributes of the photo.
GARMENTS: tuple[str, ...] = CATEGORIES[:27]
PARTS: tuple[str, ...] = CATEGORIES[27:]

SPLITS: tuple[str, ...] = ("train", "val")

# Everyday words for categories, beyond the words of their names.
SYNONYMS: dict[str, str] = {
    "tee": "top, t-shirt, sweatshirt",
    "tshirt": "top, t-shirt, sweatshirt",
    "hoodie": "top, t-shirt, sweatshirt",
    "jumper": "sweater",
    "pullover": "sweater",
    "blazer": "jacket",
    "trousers": "pants",
    "jeans": "pants",
    "leggings": "tights, stockings",
    "gown": "dress",
    "overalls": "jumpsuit",
    "romper": "jumpsuit",
    "sunglasses": "glasses",
    "cap": "hat",
    "beanie": "hat",
    "gloves": "glove",
    "socks": "sock",
    "shoes": "shoe",
    "sneakers": "shoe",
    "boots": "shoe",
    "heels": "shoe",
    "sandals": "shoe",
    "handbag": "bag, wallet",
    "purse": "bag, wallet",
    "backpack": "bag, wallet",
    "necktie": "tie",
}


def _terms() -> list[tuple[str, str]]:
    terms = {part.strip(): name for name in CATEGORIES for part in name.split(",")}
    terms.update(SYNONYMS)
    # Longest first, so "t-shirt" wins over "shirt" and "head covering" over shorter words.
    return sorted(terms.items(), key=lambda kv: -len(kv[0]))


_TERMS = _terms()


def category_named_in(text: str) -> str | None:
    """The Fashionpedia category a query's words name first ("red tops" → "top, t-shirt,
    sweatshirt"), plurals included; None when it names none."""
    import re

    lowered = text.lower()
    best: tuple[int, str] | None = None
    for term, name in _TERMS:
        match = re.search(rf"(?<![\w-]){re.escape(term)}(?:s|es)?(?![\w-])", lowered)
        if match and (best is None or match.start() < best[0]):
            best = (match.start(), name)
    return best[1] if best else None
