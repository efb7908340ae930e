"""`python -m query_service search`: the command-line client of the Query service."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from pydantic_settings import CliApp

from fashionrag.colours import COLOURS
from fashionrag.errors import FashionragError
from fashionrag.grpc_security import add_client_flags, client_security_from_args
from query_service.client import QueryClient
from query_service.contact_sheet import save_contact_sheet
from query_service.json_contract import outcome_dict
from query_service.search_types import SearchQuery
from query_service.settings import SearchSettings


def build_parser(defaults: SearchSettings) -> argparse.ArgumentParser:
    """The command's flags; their defaults come from FASHIONRAG_* through `defaults`."""
    parser = argparse.ArgumentParser(
        prog="python -m query_service search",
        description="Search the indexed Fashionpedia photos by text or by image. Every flag can "
        "also come from FASHIONRAG_<FLAG> (e.g. FASHIONRAG_ADDRESS); flags win.",
    )
    parser.add_argument("query", nargs="?", help='the text to look for, e.g. "red tops"')
    parser.add_argument(
        "--no-auto-category",
        action="store_true",
        help="do not turn the garments and colours the text names ('red tops') into filters",
    )
    parser.add_argument(
        "--save-grid",
        type=Path,
        default=None,
        metavar="FILE.png",
        help="also write a contact sheet of the results (thumbnails, distances) to this PNG",
    )
    parser.add_argument(
        "-k",
        "--top-k",
        type=int,
        default=defaults.top_k,
        help=f"how many results, 1 to 100 (default {defaults.top_k})",
    )
    parser.add_argument(
        "--category",
        action="append",
        default=None,
        help='filter on this category instead of those the text names (repeatable), e.g. "dress"',
    )
    parser.add_argument(
        "--colour",
        action="append",
        default=None,
        metavar="NAME",
        help="garments in this palette colour (repeatable), instead of those the text names: "
        + ", ".join(COLOURS),
    )
    parser.add_argument(
        "--image", type=Path, default=None, help="search by this image file instead of a text"
    )
    parser.add_argument(
        "--json",
        action="store_true",
        default=defaults.json_output,
        help="print one JSON object instead of a table",
    )
    parser.add_argument(
        "--address",
        default=defaults.address,
        help=f"the query service, host:port (default {defaults.address})",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=defaults.timeout,
        help=f"seconds to wait for the answer (default {defaults.timeout:g})",
    )
    add_client_flags(parser, defaults.client_security())
    return parser


def _box(box: list[float]) -> str:
    return "[" + ",".join(f"{v:.0f}" for v in box) + "]"


def _garments(garments: list[dict[str, Any]]) -> str:
    """A result's matched garments: category, colour(s), box in pixels, distance."""
    return "; ".join(
        f"{g['category']} {g['colour']}{'/' + g['colour2'] if g['colour2'] else ''} "
        f"{_box(g['box'])} {g['distance']:.4f}"
        for g in garments
    )


def _filters(payload: dict[str, Any]) -> str:
    return " or ".join(
        f"{f['category'] or 'any garment'}"
        + (f" in {'/'.join(f['colours'])}" if f["colours"] else "")
        for f in payload["garment_filters"]
    )


def format_table(payload: dict[str, Any]) -> str:
    """The results as a table for people: the query, what was understood and searched, then a
    row per photo (with the garments that matched, at garment grain)."""
    lines = [f"query: {payload['query']}"]
    if payload["understood"]:
        lines.append(
            "understood: "
            + "; ".join(f"{w['words']} = {w['kind']} {w['meaning']}" for w in payload["understood"])
            + (" (--no-auto-category: search without it)" if payload["auto_category"] else "")
        )
    if payload["grain"] == "garment":
        lines.append(f"grain: garment, photos ranked by their best garment of: {_filters(payload)}")
    else:
        lines.append("grain: photo, photos ranked by their whole-photo vector")
    if payload["applied_categories"]:
        lines.append(f"categories: {' | '.join(payload['applied_categories'])}")
    if not payload["results"]:
        lines.append("no results")
        return "\n".join(lines)
    garments = payload["grain"] == "garment"
    lines.append(
        f"{'rank':>4}  {'distance':>8}  {'path':<50}  categories"
        + ("  |  matched garments" if garments else "")
    )
    for r in payload["results"]:
        lines.append(
            f"{r['rank']:>4}  {r['distance']:>8.4f}  {r['path']:<50}  "
            f"{' | '.join(r['categories']) or '-'}"
            + (f"  |  {_garments(r['garments'])}" if garments else "")
        )
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    defaults = CliApp.run(SearchSettings, cli_args=[])  # FASHIONRAG_* only
    args = build_parser(defaults).parse_args(argv)
    if (args.query is None) == (args.image is None):
        print("search: give a text query or --image FILE (one of the two)", file=sys.stderr)
        return 2
    image = None
    if args.image is not None:
        try:
            image = args.image.read_bytes()
        except OSError as exc:
            print(f"search: cannot read {args.image}: {exc}", file=sys.stderr)
            return 2
    query = SearchQuery(
        text=args.query,
        image=image,
        top_k=args.top_k,
        categories=args.category or [],
        auto_category=False if args.no_auto_category else None,
        colours=args.colour or [],
    )
    try:
        security = client_security_from_args(args)
    except FashionragError as error:
        print(f"search: {error}", file=sys.stderr)
        return 2
    with QueryClient(args.address, timeout=args.timeout, security=security) as client:
        try:
            outcome = client.search(query)
        except FashionragError as error:
            print(f"search: {error}", file=sys.stderr)
            return 1
    payload = outcome_dict(outcome)
    print(json.dumps(payload) if args.json else format_table(payload))
    if args.save_grid is not None:
        path = save_contact_sheet(payload, args.save_grid)
        print(f"contact sheet: {path}", file=sys.stderr)
    return 0
