"""`python -m query_service serve|search`: run the query service, or search with it."""

from __future__ import annotations

import asyncio
import sys

USAGE = """usage: python -m query_service {serve,search,eval} ...

  serve   run the Query service: gRPC and HTTP  (python -m query_service serve --help)
  search  search by text or by image            (python -m query_service search --help)
  eval    precision@10 per garment category     (python -m query_service eval --help)
"""


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in ("serve", "search", "eval"):
        print(USAGE, file=sys.stderr if argv and argv[0] not in ("-h", "--help") else sys.stdout)
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    if argv[0] == "search":
        from query_service.cli import main as search_main

        return search_main(argv[1:])
    if argv[0] == "eval":
        from query_service.evaluate import main as eval_main

        return eval_main(argv[1:])
    from pydantic_settings import CliApp

    from fashionrag.errors import ConfigurationError
    from fashionrag.logs import setup_logging
    from query_service.server import serve
    from query_service.settings import QuerySettings

    settings = CliApp.run(QuerySettings, cli_args=argv[1:])
    setup_logging(settings.log_level, settings.log_format)
    try:
        asyncio.run(serve(settings))
    except ConfigurationError as exc:
        print(f"query_service: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
