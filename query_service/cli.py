"""`python -m query_service search`: the command-line client of the Query service."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

import grpc

from fashionrag.errors import FashionragError, from_rpc_error
from fashionrag.grpc_server import CHANNEL_OPTIONS
from fashionrag.v1 import query_pb2, query_pb2_grpc
from query_service.contact_sheet import save_contact_sheet
from query_service.json_contract import response_dict


def _env(name: str, default: str) -> str:
    return os.environ.get(f"FASHIONRAG_{name.upper()}", default)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m query_service search",
        description="Search the indexed Fashionpedia photos by text or by image. Every flag can "
        "also come from FASHIONRAG_<FLAG> (e.g. FASHIONRAG_ADDRESS); flags win.",
    )
    parser.add_argument("query", nargs="?", help='the text to look for, e.g. "red tops"')
    parser.add_argument(
        "--no-auto-category",
        action="store_true",
        help="do not restrict the results to a category the text names (e.g. 'tops')",
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
        default=int(_env("k", "5")),
        help="how many results, 1 to 100 (default 5)",
    )
    parser.add_argument(
        "--category",
        action="append",
        default=None,
        help='keep only images with this category (repeatable), e.g. "dress"',
    )
    parser.add_argument(
        "--image", type=Path, default=None, help="search by this image file instead of a text"
    )
    parser.add_argument(
        "--json",
        action="store_true",
        default=_env("json", "") == "1",
        help="print one JSON object instead of a table",
    )
    parser.add_argument(
        "--address",
        default=_env("address", "127.0.0.1:50052"),
        help="the query service, host:port (default 127.0.0.1:50052)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=float(_env("timeout", "30")),
        help="seconds to wait for the answer (default 30)",
    )
    return parser


def format_table(payload: dict[str, Any]) -> str:
    """The results as a table for people."""
    lines = [f"query: {payload['query']}"]
    if payload["auto_category"]:
        lines.append(
            f"category from the text: {payload['auto_category']} (--no-auto-category: "
            "search without it)"
        )
    elif payload["applied_categories"]:
        lines.append(f"categories: {' | '.join(payload['applied_categories'])}")
    if not payload["results"]:
        lines.append("no results")
        return "\n".join(lines)
    lines.append(f"{'rank':>4}  {'distance':>8}  {'path':<50}  categories")
    for r in payload["results"]:
        lines.append(
            f"{r['rank']:>4}  {r['distance']:>8.4f}  {r['path']:<50}  "
            f"{' | '.join(r['categories']) or '-'}"
        )
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    if (args.query is None) == (args.image is None):
        print("search: give a text query or --image FILE (one of the two)", file=sys.stderr)
        return 2
    request = query_pb2.SearchRequest(top_k=args.top_k, categories=args.category or [])
    if args.no_auto_category:
        request.category_mode = query_pb2.CATEGORY_MODE_OFF
    if args.image is not None:
        try:
            request.image = args.image.read_bytes()
        except OSError as exc:
            print(f"search: cannot read {args.image}: {exc}", file=sys.stderr)
            return 2
    else:
        request.text = args.query
    with grpc.insecure_channel(args.address, options=CHANNEL_OPTIONS) as channel:
        try:
            response = query_pb2_grpc.QueryStub(channel).Search(request, timeout=args.timeout)
        except grpc.RpcError as exc:
            error: FashionragError = from_rpc_error(exc, f"query service at {args.address}")
            print(f"search: {error}", file=sys.stderr)
            return 1
    payload = response_dict(response)
    print(json.dumps(payload) if args.json else format_table(payload))
    if args.save_grid is not None:
        path = save_contact_sheet(payload, args.save_grid)
        print(f"contact sheet: {path}", file=sys.stderr)
    return 0
