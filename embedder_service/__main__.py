"""`python -m embedder_service`: run the embedder gRPC server."""

from __future__ import annotations

import asyncio
import sys

from pydantic_settings import CliApp

from embedder_service.server import serve
from embedder_service.settings import EmbedderSettings
from fashionrag.errors import ConfigurationError
from fashionrag.logs import setup_logging


def main(argv: list[str] | None = None) -> int:
    settings = CliApp.run(EmbedderSettings, cli_args=sys.argv[1:] if argv is None else argv)
    setup_logging(settings.log_level, settings.log_format)
    try:
        asyncio.run(serve(settings))
    except ConfigurationError as exc:
        print(f"embedder_service: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
