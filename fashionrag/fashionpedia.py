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

SPLITS: tuple[str, ...] = ("train", "val")
