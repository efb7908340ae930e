"""The indexing job wired together: read → (skip what exists) → embed → save files → upsert.

`Indexer` joins the parts, each in a module of its own: `stages` (threads joined by bounded
queues: reading, embedding and writing overlap and memory stays flat), `retry` (which layer
retries what), `records` (saving the originals, building photo and garment records and
upserting them through the collection writer),
`failure_log` (the failures file, shared safely by shards and runs) and `progress` (bar or log
lines, and the counts). `concurrency` embed requests are in flight at once to keep a GPU
embedder, or several replicas, busy.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from embedder_service.client import EmbedderClient, ImageRequest
from fashionrag.collection import record_id
from fashionrag.collection_store import CollectionWriter
from fashionrag.errors import Unavailable
from indexer_service.dataset import DatasetRow
from indexer_service.failure_log import FailureLog
from indexer_service.progress import Progress
from indexer_service.records import EmbeddedBatch, RecordWriter
from indexer_service.retry import RetryPolicy
from indexer_service.stages import Stage, StageRunner

log = logging.getLogger(__name__)


@dataclass
class Summary:
    """What a run did; printed as the job's last line."""

    indexed: int = 0
    skipped: int = 0
    failed: int = 0
    seconds: float = 0.0
    images_per_second: float = 0.0
    collection: str = ""
    split: str = ""
    collection_count: int = 0
    regions: str = "garments"  # what besides photos was indexed: garments or none
    garments: int = 0  # garment records written
    garments_failed: int = 0  # garment boxes that could not be embedded (their photos were)
    garment_count: int = 0  # garment records in the collection after the run
    failures_file: str = ""
    interrupted: bool = False
    error: str = ""  # why the run stopped early, when a fault outlasted the retries
    # Seconds each stage worked (read, embed, write), summed over its threads: next to
    # `seconds`, which stage holds the others back.
    stage_seconds: dict[str, float] = field(default_factory=dict)

    @property
    def done(self) -> int:
        return self.indexed + self.skipped + self.failed

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def batched(rows: Iterable[DatasetRow], size: int) -> Iterator[list[DatasetRow]]:
    """The rows in lists of `size` (the last one shorter)."""
    batch: list[DatasetRow] = []
    for row in rows:
        batch.append(row)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


class Indexer:
    """Indexes rows of one split into one collection.

    Args:
        embedder: the embedder client.
        writer: the index's collection writer (opened for this embedder's model).
        split: the split's name, part of each record id.
        images_dir: where the original files are saved.
        regions: "garments" to index each garment box of a photo as a record of its own too,
            "none" for photo records only.
        batch_size: images per embed request and per upsert.
        concurrency: embed requests in flight at once.
        retry_seconds: how long one operation is retried through transient faults.
        failures_file: where the failed records are appended, one JSON object per line.
        stop: set it (e.g. on Ctrl-C) to stop reading and finish what is in flight.
        shard: this job's shard (`I/N`), named in each line of the failures file.
    """

    def __init__(
        self,
        embedder: EmbedderClient,
        writer: CollectionWriter,
        split: str,
        images_dir: Path,
        *,
        regions: str = "garments",
        batch_size: int = 32,
        concurrency: int = 2,
        retry_seconds: float = 600.0,
        failures_file: Path | None = None,
        stop: threading.Event | None = None,
        shard: str = "0/1",
    ) -> None:
        self.embedder = embedder
        self.store = writer
        self.split = split
        self.regions = regions
        self.batch_size = batch_size
        self.concurrency = concurrency
        # Set when a stage fails: the retries elsewhere give up rather than wait out their own
        # budgets, so the run ends when its first operation does.
        self.failing = threading.Event()
        self.retry = RetryPolicy(retry_seconds, cancel=self.failing)
        self.failures_file = failures_file or images_dir / f"failures-{split}.jsonl"
        self.stop = stop or threading.Event()
        self.shard = shard
        self.writer = RecordWriter(writer, split, images_dir, self.retry)

    def run(self, rows: Iterable[DatasetRow], total: int | None = None) -> Summary:
        """Index every row (until `stop` is set); return the summary.

        A fault that outlasts the retries stops the run: the summary's `error` says which, and
        what was written stays written (the next run goes on from there).
        """
        summary = Summary(
            collection=self.store.name,
            split=self.split,
            regions=self.regions,
            failures_file=str(self.failures_file.absolute()),
        )
        started = datetime.now(UTC).isoformat(timespec="seconds")
        failures = FailureLog(self.failures_file, {"run": started, "shard": self.shard})
        progress = Progress(total, f"indexing {self.split}")
        runner = StageRunner(
            [
                Stage("embed", self._embed, threads=self.concurrency),
                Stage("write", lambda batch: self._write(batch, failures, progress)),
            ],
            # The reader waits for the embedders, the embedders for the writer.
            queue_size=2 * self.concurrency,
            stop=self.stop,
            failed=self.failing,
        )
        self.failing.clear()
        with progress, failures:
            try:
                runner.run(batched(rows, self.batch_size))
            except Exception as exc:
                summary.error = f"{type(exc).__name__}: {exc}"
        summary.stage_seconds = {k: round(v, 3) for k, v in runner.busy_seconds.items()}
        counts = progress.counts
        summary.indexed, summary.skipped, summary.failed = (
            counts.indexed,
            counts.skipped,
            counts.failed,
        )
        summary.garments, summary.garments_failed = counts.garments, counts.garments_failed
        summary.seconds = round(progress.seconds, 3)
        summary.images_per_second = round(summary.indexed / max(summary.seconds, 1e-9), 2)
        if summary.error:
            return summary
        summary.interrupted = self.stop.is_set()
        try:
            summary.collection_count = self.retry.call("ChromaDB count", self.store.count)
            summary.garment_count = self.retry.call("ChromaDB count", self.store.garment_count)
        except Unavailable as exc:
            summary.error = f"{type(exc).__name__}: {exc}"
        return summary

    def _embed(self, batch: list[DatasetRow]) -> EmbeddedBatch:
        """Ask the collection which rows it has, and embed the others (with their garment
        boxes, unless `regions` is "none")."""
        ids = [record_id(self.split, row.image_id) for row in batch]
        existing = self.retry.call("ChromaDB get", lambda: self.store.existing(ids))
        garments = {
            rid: row.garments() if self.regions == "garments" else ()
            for rid, row in zip(ids, batch, strict=True)
            if rid not in existing
        }
        todo = [
            ImageRequest(rid, row.image, [o.bbox for o in garments[rid]])
            for rid, row in zip(ids, batch, strict=True)
            if rid in garments
        ]
        # Garment boxes make a request several times the work of its photos alone: the
        # deadline is the client's for every `batch_size` items (photos and boxes), so a busy
        # embedder is not cut off, and retried, in the middle of work it would finish. The
        # retry policy cuts it to what is left of --retry-seconds: an embedder that is gone
        # makes a call wait for its whole deadline.
        items = len(todo) + sum(len(request.boxes) for request in todo)
        deadline = self.embedder.timeout * max(1.0, items / self.batch_size)
        outcomes = (
            self.retry.call_with_deadline(
                "embedding", lambda seconds: self.embedder.embed_images(todo, seconds), deadline
            )
            if todo
            else []
        )
        return EmbeddedBatch(batch, ids, existing, {o.id: o for o in outcomes}, garments)

    def _write(self, batch: EmbeddedBatch, failures: FailureLog, progress: Progress) -> None:
        written = self.writer.write(batch)
        for failure in written.failures:
            log.warning("image %s (row %d) failed: %s", failure.id, failure.row, failure.reason)
            failures.append(failure.id, failure.row, failure.reason)
        for failure in written.garment_failures:
            log.warning("garment %s (row %d) failed: %s", failure.id, failure.row, failure.reason)
            failures.append(failure.id, failure.row, failure.reason)
        progress.update(
            indexed=written.indexed,
            skipped=written.skipped,
            failed=len(written.failures),
            garments=written.garments,
            garments_failed=len(written.garment_failures),
        )
