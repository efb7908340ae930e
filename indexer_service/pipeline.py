"""The indexing job as a pipeline: read → (skip what exists) → embed → save files → upsert.

Stages run in threads joined by bounded queues, so reading, embedding and writing overlap and
memory stays flat however large the split; `concurrency` embed requests are in flight at once to
keep a GPU embedder, or several replicas, busy. Transient faults (the embedder restarting,
ChromaDB away for a while) cost retries with jittered exponential backoff, not the run.

A record is upserted only after its file is saved, and ids are deterministic: a run killed at any
moment and started again skips what the collection has (embedding nothing twice) and finishes the
split with every record present exactly once.
"""

from __future__ import annotations

import functools
import io
import json
import logging
import os
import queue
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar

import tenacity
from PIL import Image
from tqdm import tqdm

from embedder_service.client import EmbedderClient, ImageEmbedding
from fashionrag.collection import ImageRecord, is_unreachable, record_id
from fashionrag.errors import DeadlineExceeded, ResourceExhausted, Unavailable
from indexer_service.dataset import DatasetRow

log = logging.getLogger(__name__)

T = TypeVar("T")

_EXTENSIONS = {
    "JPEG": ".jpg",
    "PNG": ".png",
    "WEBP": ".webp",
    "GIF": ".gif",
    "BMP": ".bmp",
    "TIFF": ".tif",
}
_DONE = object()  # end of a queue


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
    failures_file: str = ""
    interrupted: bool = False
    error: str = ""  # why the run stopped early, when a fault outlasted the retries

    @property
    def done(self) -> int:
        return self.indexed + self.skipped + self.failed

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def image_extension(data: bytes) -> str:
    """The file extension for encoded image bytes, from the format in their header only."""
    try:
        with Image.open(io.BytesIO(data)) as image:  # reads the header, decodes nothing
            return _EXTENSIONS.get(image.format or "", ".img")
    except Exception:
        return ".img"


def save_original(images_dir: Path, split: str, row: DatasetRow) -> Path:
    """Write the row's original bytes, unchanged, atomically; return the absolute path."""
    target = (images_dir / split / f"{row.image_id}{image_extension(row.image)}").absolute()
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists() and target.stat().st_size == len(row.image):
        return target
    tmp = target.with_suffix(f"{target.suffix}.{os.getpid()}.tmp")
    tmp.write_bytes(row.image)
    os.replace(tmp, target)
    return target


def _transient(exc: BaseException) -> bool:
    """Faults worth waiting out: a backend restarting, overloaded or unreachable for a while."""
    return isinstance(exc, Unavailable | ResourceExhausted | DeadlineExceeded) or is_unreachable(
        exc
    )


@dataclass
class _Embedded:
    batch: list[DatasetRow]
    ids: list[str]
    existing: set[str]
    outcomes: dict[str, ImageEmbedding]


class Indexer:
    """Indexes rows of one split into one collection.

    Args:
        embedder: the embedder client.
        collection: the ChromaDB collection (opened for this embedder's model).
        split: the split's name, part of each record id.
        images_dir: where the original files are saved.
        batch_size: images per embed request and per upsert.
        concurrency: embed requests in flight at once.
        retry_seconds: how long one operation is retried through transient faults.
        failures_file: where the failed records go, one JSON object (id, reason) per line.
        max_upsert: the most records ChromaDB takes in one call.
        stop: set it (e.g. on Ctrl-C) to stop reading and finish what is in flight.
    """

    def __init__(
        self,
        embedder: EmbedderClient,
        collection: Any,
        split: str,
        images_dir: Path,
        *,
        batch_size: int = 32,
        concurrency: int = 2,
        retry_seconds: float = 600.0,
        failures_file: Path | None = None,
        max_upsert: int = 5000,
        stop: threading.Event | None = None,
    ) -> None:
        self.embedder = embedder
        self.collection = collection
        self.split = split
        self.images_dir = images_dir
        self.batch_size = batch_size
        self.concurrency = concurrency
        self.retry_seconds = retry_seconds
        self.failures_file = failures_file or images_dir / f"failures-{split}.jsonl"
        self.max_upsert = max_upsert
        self.stop = stop or threading.Event()
        self._error: BaseException | None = None

    def _retry(self, what: str, fn: Callable[[], T]) -> T:
        def before_sleep(state: tenacity.RetryCallState) -> None:
            wait = state.next_action.sleep if state.next_action else 0
            exc = state.outcome.exception() if state.outcome else None
            log.warning("%s failed (%s); retry %d in %.1fs", what, exc, state.attempt_number, wait)

        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception(_transient),
            wait=tenacity.wait_random_exponential(multiplier=0.5, max=10),
            stop=tenacity.stop_after_delay(self.retry_seconds),
            before_sleep=before_sleep,
            reraise=True,
        )
        return retrying(fn)

    def _fail(self, exc: BaseException) -> None:
        if self._error is None:
            self._error = exc
        self.stop.set()

    def run(self, rows: Iterable[DatasetRow], total: int | None = None) -> Summary:
        """Index every row (until `stop` is set); return the summary.

        A fault that outlasts the retries stops the run: the summary's `error` says which, and
        what was written stays written (the next run goes on from there).
        """
        summary = Summary(
            collection=self.collection.name,
            split=self.split,
            failures_file=str(self.failures_file.absolute()),
        )
        self.failures_file.parent.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        # Bounded queues: the reader waits for the embedders, the embedders for the writer.
        to_embed: queue.Queue[Any] = queue.Queue(maxsize=2 * self.concurrency)
        to_write: queue.Queue[Any] = queue.Queue(maxsize=2 * self.concurrency)
        embedders = [
            threading.Thread(
                target=self._embed_stage, args=(to_embed, to_write), name=f"embed-{i}", daemon=True
            )
            for i in range(self.concurrency)
        ]
        bar = tqdm(
            total=total,
            unit="img",
            desc=f"indexing {self.split}",
            file=sys.stderr,
            disable=None,
            dynamic_ncols=True,
        )
        with bar, self.failures_file.open("w") as failures:
            writer = threading.Thread(
                target=self._write_stage,
                args=(to_write, summary, bar, failures, started),
                name="write",
                daemon=True,
            )
            for thread in [*embedders, writer]:
                thread.start()
            try:
                self._read_stage(rows, to_embed)
            finally:
                for _ in embedders:
                    to_embed.put(_DONE)
                for thread in embedders:
                    thread.join()
                to_write.put(_DONE)
                writer.join()
        summary.seconds = round(time.monotonic() - started, 3)
        summary.images_per_second = round(summary.indexed / max(summary.seconds, 1e-9), 2)
        if self._error is not None:
            summary.error = f"{type(self._error).__name__}: {self._error}"
            return summary
        summary.interrupted = self.stop.is_set()
        summary.collection_count = self._retry("count", self.collection.count)
        return summary

    def _read_stage(self, rows: Iterable[DatasetRow], to_embed: queue.Queue[Any]) -> None:
        batch: list[DatasetRow] = []
        for row in rows:
            if self.stop.is_set():
                log.warning("stopping: no more rows are read; finishing the batches in flight")
                return
            batch.append(row)
            if len(batch) == self.batch_size:
                self._put(to_embed, batch)
                batch = []
        if batch and not self.stop.is_set():
            self._put(to_embed, batch)

    def _put(self, q: queue.Queue[Any], item: Any) -> None:
        while True:  # wake now and then to notice a stop while the queue is full
            try:
                q.put(item, timeout=0.5)
                return
            except queue.Full:
                if self._error is not None:
                    return

    def _embed_stage(self, to_embed: queue.Queue[Any], to_write: queue.Queue[Any]) -> None:
        while (batch := to_embed.get()) is not _DONE:
            if self._error is not None:
                continue  # drain: a fatal fault stops the run
            try:
                to_write.put(self._embed(batch))
            except BaseException as exc:
                log.error("batch starting at row %d failed: %s", batch[0].index, exc)
                self._fail(exc)

    def _embed(self, batch: list[DatasetRow]) -> _Embedded:
        ids = [record_id(self.split, row.image_id) for row in batch]
        found = self._retry("ChromaDB get", lambda: self.collection.get(ids=ids, include=[])["ids"])
        existing = set(found)
        todo = [
            (rid, row.image) for rid, row in zip(ids, batch, strict=True) if rid not in existing
        ]
        outcomes = (
            self._retry("embedding", lambda: self.embedder.embed_images(todo)) if todo else []
        )
        return _Embedded(batch, ids, existing, {o.id: o for o in outcomes})

    def _write_stage(
        self,
        to_write: queue.Queue[Any],
        summary: Summary,
        bar: tqdm,
        failures: io.TextIOBase,
        started: float,
    ) -> None:
        last_log = started
        while (item := to_write.get()) is not _DONE:
            if self._error is not None:
                continue
            try:
                self._write(item, summary, failures)
            except BaseException as exc:
                log.error("writing failed: %s", exc)
                self._fail(exc)
                continue
            bar.update(len(item.batch))
            bar.set_postfix(
                indexed=summary.indexed,
                skipped=summary.skipped,
                failed=summary.failed,
                refresh=False,
            )
            now = time.monotonic()
            if bar.disable and now - last_log >= 10:  # no terminal: log lines instead
                log.info(
                    "progress: %d rows (%d indexed, %d skipped, %d failed), %.1f img/s",
                    summary.done,
                    summary.indexed,
                    summary.skipped,
                    summary.failed,
                    summary.indexed / max(now - started, 1e-9),
                )
                last_log = now

    def _write(self, item: _Embedded, summary: Summary, failures: io.TextIOBase) -> None:
        records: list[ImageRecord] = []
        vectors: list[list[float]] = []
        for rid, row in zip(item.ids, item.batch, strict=True):
            if rid in item.existing:
                continue
            outcome = item.outcomes[rid]
            if outcome.vector is None:
                log.warning("image %s (row %d) failed: %s", rid, row.index, outcome.error)
                failures.write(
                    json.dumps({"id": rid, "row": row.index, "reason": outcome.error}) + "\n"
                )
                failures.flush()
                summary.failed += 1
                continue
            path = save_original(self.images_dir, self.split, row)
            records.append(
                ImageRecord(
                    id=rid,
                    image_id=row.image_id,
                    split=self.split,
                    path=str(path),
                    width=row.width or outcome.width,
                    height=row.height or outcome.height,
                    categories=row.categories,
                )
            )
            vectors.append(outcome.vector.tolist())
        for start in range(0, len(records), self.max_upsert):
            part = records[start : start + self.max_upsert]
            upsert = functools.partial(
                self.collection.upsert,
                ids=[r.id for r in part],
                embeddings=vectors[start : start + len(part)],
                metadatas=[r.metadata() for r in part],
            )
            self._retry("ChromaDB upsert", upsert)
        summary.indexed += len(records)
        summary.skipped += len(item.existing)
