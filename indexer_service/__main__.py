"""`python -m indexer_service`: index a Fashionpedia split; stdout's last line: a JSON summary."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

from pydantic_settings import CliApp

from embedder_service.client import EmbedderClient
from fashionrag.collection import connect, open_collection
from fashionrag.errors import FashionragError
from fashionrag.logs import setup_logging
from indexer_service.dataset import Shard, iter_rows, load_split
from indexer_service.pipeline import Indexer
from indexer_service.settings import IndexerSettings

log = logging.getLogger("indexer_service")


def run(settings: IndexerSettings) -> dict:
    """Run one indexing job; return its summary."""
    shard = Shard.parse(settings.shard)
    ds = load_split(settings.dataset, settings.split)
    with EmbedderClient(settings.embedder) as embedder:
        embedder.wait_until_ready(settings.embedder_wait)
        model = embedder.model_info()
        log.info(
            "embedder %s: %s/%s, %d-d on %s",
            settings.embedder,
            model.model_name,
            model.pretrained,
            model.dimension,
            model.device,
        )
        collection = open_collection(
            connect(settings.chroma),
            settings.collection,
            model,
            create=True,
            recreate=settings.recreate,
        )
        total = None
        if settings.limit:
            total = len(range(shard.number, settings.limit, shard.count))
        indexer = Indexer(
            embedder, collection, settings.split, Path(settings.images_dir), settings.batch_size
        )
        rows = iter_rows(ds, offset=settings.offset, limit=settings.limit, shard=shard)
        summary = indexer.run(rows, total=total)
    return summary.as_dict()


def main(argv: list[str] | None = None) -> int:
    settings = CliApp.run(IndexerSettings, cli_args=sys.argv[1:] if argv is None else argv)
    setup_logging(settings.log_level)
    try:
        summary = run(settings)
    except FashionragError as exc:
        log.error("%s", exc)
        print(f"indexer_service: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
