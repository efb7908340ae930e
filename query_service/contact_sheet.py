"""A contact sheet of search results: thumbnails in a grid, each with its rank, distance and
categories, and the box of each garment that matched, since people would rather look than read."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont

CELL = 220  # thumbnail box, pixels
LABEL = 44  # text under each thumbnail
PAD = 10
TITLE = 36
BOX_COLOUR = "#ff00aa"  # stands out on most garments


def _draw_garments(
    draw: ImageDraw.ImageDraw,
    garments: Sequence[dict[str, Any]],
    scale: float,
    origin: tuple[int, int],
    font: ImageFont.FreeTypeFont | ImageFont.ImageFont,
) -> None:
    """Outline each matched garment's box (the photo's pixels, scaled to the thumbnail) and
    label it with its category and colour."""
    ox, oy = origin
    for garment in garments:
        x0, y0, x1, y1 = (v * scale for v in garment["box"])
        box = (ox + x0, oy + y0, ox + max(x0, x1), oy + max(y0, y1))
        draw.rectangle(box, outline=BOX_COLOUR, width=2)
        label = f"{garment['category'].split(',')[0]} {garment['colour']}".strip()
        left, top, right, bottom = draw.textbbox((box[0] + 2, box[1] + 1), label, font=font)
        draw.rectangle((left - 1, top - 1, right + 1, bottom + 1), fill=BOX_COLOUR)
        draw.text((box[0] + 2, box[1] + 1), label, fill="white", font=font)


def contact_sheet(results: Sequence[dict[str, Any]], title: str, columns: int = 5) -> Image.Image:
    """Lay out results (dicts of the JSON contract: rank, path, distance, categories, and the
    matched garments, whose boxes are drawn on the thumbnail).

    A result whose file cannot be read gets a grey box saying so, not an error.
    """
    columns = max(1, min(columns, len(results) or 1))
    rows = max(1, math.ceil(len(results) / columns))
    width = PAD + columns * (CELL + PAD)
    height = TITLE + rows * (CELL + LABEL + PAD) + PAD
    sheet = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default(size=14)
    small = ImageFont.load_default(size=12)
    draw.text((PAD, 10), title, fill="black", font=ImageFont.load_default(size=18))
    for i, result in enumerate(results):
        x = PAD + (i % columns) * (CELL + PAD)
        y = TITLE + (i // columns) * (CELL + LABEL + PAD)
        try:
            with Image.open(result["path"]) as opened:
                thumb = opened.convert("RGB")
            full_width = thumb.width
            thumb.thumbnail((CELL, CELL))
            origin = (x + (CELL - thumb.width) // 2, y + (CELL - thumb.height) // 2)
            sheet.paste(thumb, origin)
            garments = result.get("garments") or []
            _draw_garments(draw, garments, thumb.width / full_width, origin, small)
        except (OSError, KeyError):
            draw.rectangle((x, y, x + CELL, y + CELL), fill="#ddd")
            draw.text((x + 8, y + CELL // 2), "image not readable", fill="black", font=small)
        draw.text(
            (x, y + CELL + 4),
            f"#{result['rank']}  distance {result['distance']:.4f}",
            fill="black",
            font=font,
        )
        categories = " | ".join(result.get("categories") or []) or "-"
        if len(categories) > 34:
            categories = categories[:33] + "…"
        draw.text((x, y + CELL + 22), categories, fill="#555", font=small)
    return sheet


def save_contact_sheet(payload: dict[str, Any], out: Path) -> Path:
    """Write the contact sheet of a search's JSON payload to `out` (PNG); return the path."""
    sheet = contact_sheet(payload["results"], f"fashionrag: {payload['query']}")
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out, format="PNG")
    return out
