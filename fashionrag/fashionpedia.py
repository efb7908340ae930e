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

# Everyday words for categories, beyond the words of their names: singular forms (plurals and
# "t-shirt"/"t shirt"/"tshirt" spellings are derived by fashionrag.query_words), each mapped to
# one category name. Words for the 27 garments become garment filters; words for the 19 parts
# are only ever reported as attributes.
SYNONYMS: dict[str, str] = {
    # shirt, blouse
    "button-down": "shirt, blouse",
    "button-up": "shirt, blouse",
    # top, t-shirt, sweatshirt
    "tee": "top, t-shirt, sweatshirt",
    "sweat shirt": "top, t-shirt, sweatshirt",
    "hoodie": "top, t-shirt, sweatshirt",
    "polo": "top, t-shirt, sweatshirt",
    "polo shirt": "top, t-shirt, sweatshirt",
    "tank": "top, t-shirt, sweatshirt",
    "camisole": "top, t-shirt, sweatshirt",
    "cami": "top, t-shirt, sweatshirt",
    "tunic": "top, t-shirt, sweatshirt",
    "jersey": "top, t-shirt, sweatshirt",
    "henley": "top, t-shirt, sweatshirt",
    "bodysuit": "top, t-shirt, sweatshirt",
    # sweater
    "jumper": "sweater",
    "pullover": "sweater",
    "turtleneck": "sweater",
    "knitwear": "sweater",
    # jacket
    "blazer": "jacket",
    "bomber": "jacket",
    "windbreaker": "jacket",
    "anorak": "jacket",
    "puffer": "jacket",
    # vest
    "waistcoat": "vest",
    "gilet": "vest",
    # pants
    "pant": "pants",
    "trousers": "pants",
    "jeans": "pants",
    "slacks": "pants",
    "chinos": "pants",
    "joggers": "pants",
    "sweatpants": "pants",
    "culottes": "pants",
    # shorts
    "hot pants": "shorts",
    # skirt
    "miniskirt": "skirt",
    # coat
    "trench": "coat",
    "trench coat": "coat",
    "parka": "coat",
    "overcoat": "coat",
    "raincoat": "coat",
    "peacoat": "coat",
    # dress
    "gown": "dress",
    "sundress": "dress",
    "frock": "dress",
    # jumpsuit
    "overalls": "jumpsuit",
    "dungarees": "jumpsuit",
    "romper": "jumpsuit",
    "playsuit": "jumpsuit",
    "onesie": "jumpsuit",
    # cape
    "poncho": "cape",
    "cloak": "cape",
    # glasses
    "sunglasses": "glasses",
    "eyeglasses": "glasses",
    "spectacles": "glasses",
    # hat
    "cap": "hat",
    "beanie": "hat",
    "beret": "hat",
    "fedora": "hat",
    # headband, head covering, hair accessory
    "hairband": "headband, head covering, hair accessory",
    "bandana": "headband, head covering, hair accessory",
    "headscarf": "headband, head covering, hair accessory",
    "turban": "headband, head covering, hair accessory",
    "hijab": "headband, head covering, hair accessory",
    "scrunchie": "headband, head covering, hair accessory",
    "hair clip": "headband, head covering, hair accessory",
    "hair tie": "headband, head covering, hair accessory",
    # tie
    "necktie": "tie",
    "bow tie": "tie",
    "cravat": "tie",
    # glove
    "mitten": "glove",
    # watch
    "wristwatch": "watch",
    "smartwatch": "watch",
    # tights, stockings
    "leggings": "tights, stockings",
    "pantyhose": "tights, stockings",
    # shoe
    "sneaker": "shoe",
    "trainer": "shoe",
    "boot": "shoe",
    "heel": "shoe",
    "sandal": "shoe",
    "loafer": "shoe",
    "stiletto": "shoe",
    "slipper": "shoe",
    "espadrille": "shoe",
    "brogue": "shoe",
    "flip-flop": "shoe",
    "footwear": "shoe",
    # bag, wallet
    "handbag": "bag, wallet",
    "purse": "bag, wallet",
    "backpack": "bag, wallet",
    "rucksack": "bag, wallet",
    "tote": "bag, wallet",
    "clutch": "bag, wallet",
    "satchel": "bag, wallet",
    # scarf
    "scarves": "scarf",
    "shawl": "scarf",
    "pashmina": "scarf",
    # umbrella
    "parasol": "umbrella",
    # parts
    "epaulet": "epaulette",
    "neck": "neckline",
    "zip": "zipper",
    "frill": "ruffle",
}
