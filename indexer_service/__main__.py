"""`python -m indexer_service`: index a Fashionpedia split; stdout's last line: a JSON summary."""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Any

from pydantic_settings import CliApp

from embedder_service.client import EmbedderClient
from fashionrag.collection_store import CollectionWriter, connect, open_collections
from fashionrag.errors import FashionragError
from fashionrag.logs import setup_logging
from indexer_service.dataset import Shard, iter_rows, load_split
from indexer_service.pipeline import Indexer
from indexer_service.settings import IndexerSettings

log = logging.getLogger("indexer_service")


def stop_on_signals(stop: threading.Event) -> None:
    """The first SIGINT (Ctrl-C) or SIGTERM (what compose and Kubernetes send) stops reading and
    flushes what is in flight; a second one of either aborts at once, as KeyboardInterrupt."""

    def handler(signum: int, frame: FrameType | None) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        log.warning(
            "%s: finishing the batches in flight (Ctrl-C again to abort)",
            signal.Signals(signum).name,
        )
        stop.set()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)


def run(settings: IndexerSettings, stop: threading.Event | None = None) -> dict[str, Any]:
    """Run one indexing job; return its summary."""
    shard = Shard.parse(settings.shard)
    ds = load_split(settings.dataset, settings.split)
    with EmbedderClient(settings.embedder, security=settings.embedder_security()) as embedder:
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
        chroma = connect(settings.chroma)
        # An old layout or another model is refused here (FailedPrecondition, exit code 2),
        # with the message naming --recreate.
        collections = open_collections(
            chroma, settings.collection, model, create=True, recreate=settings.recreate
        )
        total = None
        if settings.limit:
            total = len(range(shard.number, settings.limit, shard.count))
        indexer = Indexer(
            embedder,
            CollectionWriter(chroma, collections),
            settings.split,
            Path(settings.images_dir),
            regions=settings.regions,
            batch_size=settings.batch_size,
            concurrency=settings.concurrency,
            retry_seconds=settings.retry_seconds,
            failures_file=Path(settings.failures_file) if settings.failures_file else None,
            stop=stop,
            shard=f"{shard.number}/{shard.count}",
        )
        rows = iter_rows(ds, offset=settings.offset, limit=settings.limit, shard=shard)
        summary = indexer.run(rows, total=total)
    if summary.interrupted:
        log.warning("interrupted: %d rows done; run the same command again to finish", summary.done)
    return summary.as_dict()


def main(argv: list[str] | None = None) -> int:
    settings = CliApp.run(IndexerSettings, cli_args=sys.argv[1:] if argv is None else argv)
    setup_logging(settings.log_level, settings.log_format)
    stop = threading.Event()
    stop_on_signals(stop)
    try:
        summary = run(settings, stop)
    except FashionragError as exc:
        log.error("%s", exc)
        print(f"indexer_service: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        # No summary: its counts would leave out the batches dropped. Every record is written
        # whole or not at all, so the next run goes on from what is there. The stages' threads
        # may still sit in calls; leaving without the interpreter's teardown (which waits on
        # gRPC's and the clients' shutdown, a second or more) is what "at once" means.
        log.error("aborted: the batches in flight are dropped; run the same command again to go on")
        logging.shutdown()
        sys.stdout.flush()
        os._exit(130)
    print(json.dumps(summary), flush=True)
    if summary["error"]:
        log.error("stopped early: %s; run the same command again to go on", summary["error"])
        return 1
    return 130 if summary["interrupted"] else 0


if __name__ == "__main__":
    sys.exit(main())
