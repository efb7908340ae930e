"""The indexer survives faults with real servers: an embedder restarted, ChromaDB away for a
while, the indexer itself killed or interrupted; every good record ends up there exactly once.
A backend gone for good ends the run soon after --retry-seconds, with what was written kept. What
was embedded is counted by the embedder itself (its metrics), never taken from the indexer's
summary."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from devstack import sample_data, servers
from devstack.metrics import EmbedderCounts, settled_embedder_counts
from devstack.ports import free_port
from fashionrag.collection import garments_collection_name, record_id
from fashionrag.collection_store import connect
from tests.indexer_service.truth import garment_ids

pytestmark = pytest.mark.integration

ROWS = 240
CORRUPT = (17, 150)
GOOD_ROWS = {i for i in range(ROWS) if i not in CORRUPT}
GOOD_IDS = {record_id("train", i + 1) for i in GOOD_ROWS}
# Each embed request waits for company this long: runs last seconds, long enough to hit.
SLOW = ("--fixed-delay", "--max-delay-ms", "250")
# The runs that lose a backend for good retry this long, and the tests that stop a run mid-way
# index this many rows (enough to last seconds, few enough to finish the rerun quickly).
RETRY_SECONDS = 5.0
SHORT = 120
SHORT_GOOD_ROWS = {i for i in GOOD_ROWS if i < SHORT}
SHORT_GOOD_IDS = {record_id("train", i + 1) for i in SHORT_GOOD_ROWS}


@pytest.fixture(scope="module")
def big_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("big")
    sample_data.generate(out, "train", ROWS, corrupt=CORRUPT, files=4, seed=5)
    return out


class CountedEmbedder:
    """A slow embedder whose metrics count what it embedded."""

    def __init__(self, log_path: Path, *extra: str) -> None:
        metrics_port = free_port()
        self.metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
        self.server = servers.start_embedder(
            log_path, *SLOW, "--metrics-port", str(metrics_port), *extra
        )
        self.address = self.server.address

    def settled(self) -> EmbedderCounts:
        return settled_embedder_counts(self.metrics_url)


@pytest.fixture(scope="module")
def slow_embedder(logs_dir: Path) -> Iterator[CountedEmbedder]:
    embedder = CountedEmbedder(logs_dir / "embedder-slow.log")
    yield embedder
    embedder.server.stop()


def start_indexer(
    embedder: str,
    chroma_url: str,
    dataset: Path,
    images: Path,
    collection: str,
    *extra: str,
    limit: int = 0,
    batch_size: int = 8,
    retry_seconds: float = 120,
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "indexer_service",
            *servers.indexer_args(
                embedder,
                chroma_url,
                dataset,
                images,
                collection,
                "--limit",
                str(limit),
                "--batch-size",
                str(batch_size),
                "--concurrency",
                "2",
                "--retry-seconds",
                str(retry_seconds),
                *extra,
            ),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=servers.child_env(),
        cwd=servers.ROOT,
    )


def count(chroma_url: str, collection: str) -> int:
    return int(connect(chroma_url).get_collection(collection).count())


def wait_for_count(chroma_url: str, collection: str, at_least: int, timeout: float = 60) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            written = count(chroma_url, collection)
            if written >= at_least:
                return written
        except Exception:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"collection {collection} never reached {at_least} records")


@dataclass(frozen=True)
class Finished:
    """An indexer run that ended: its exit code, JSON summary and log."""

    code: int
    summary: dict
    log: str


def finish(process: subprocess.Popen[str], timeout: float = 240) -> Finished:
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        raise
    lines = stdout.strip().splitlines()
    assert lines, stderr
    return Finished(process.returncode, json.loads(lines[-1]), stderr)


def assert_exactly_the_good_records(
    chroma_url: str, collection: str, good: set[str] = GOOD_IDS
) -> None:
    records = connect(chroma_url).get_collection(collection).get(include=["metadatas"])
    assert set(records["ids"]) == good
    assert len(records["ids"]) == len(good)
    assert all(Path(m["path"]).is_file() for m in records["metadatas"])


def present_rows(chroma_url: str, collection: str) -> set[int]:
    ids = connect(chroma_url).get_collection(collection).get(include=[])["ids"]
    return {int(rid.split("-")[1]) - 1 for rid in ids}


def test_embedder_restarted_mid_run(
    big_dataset: Path, chroma_url: str, tmp_path: Path, collection_name: str, logs_dir: Path
) -> None:
    embedder = servers.start_embedder(logs_dir / "embedder-restart-1.log", *SLOW)
    indexer = start_indexer(embedder.address, chroma_url, big_dataset, tmp_path, collection_name)
    wait_for_count(chroma_url, collection_name, 16)
    embedder.stop(signal.SIGKILL)
    time.sleep(1)
    # With no embedder, the batches in flight are written and nothing more: killed mid-run.
    written_while_down = count(chroma_url, collection_name)
    assert 0 < written_while_down < len(GOOD_IDS), "not killed mid-run"
    embedder = servers.start_embedder(
        logs_dir / "embedder-restart-2.log", *SLOW, port=embedder.port
    )
    try:
        run = finish(indexer)
    finally:
        indexer.kill()
        embedder.stop()
    assert run.code == 0, run.summary
    assert (run.summary["indexed"], run.summary["skipped"], run.summary["failed"]) == (
        len(GOOD_IDS),
        0,
        len(CORRUPT),
    )
    assert_exactly_the_good_records(chroma_url, collection_name)


def test_chroma_away_for_a_while(
    big_dataset: Path, slow_embedder: CountedEmbedder, tmp_path: Path, logs_dir: Path
) -> None:
    data = tmp_path / "chroma"
    chroma = servers.start_chroma(data, logs_dir / "chroma-restart-1.log")
    url = chroma.http
    indexer = start_indexer(slow_embedder.address, url, big_dataset, tmp_path / "images", "away")
    try:
        wait_for_count(url, "away", 16)
        written_before_kill = count(url, "away")
        assert indexer.poll() is None and written_before_kill < len(GOOD_IDS), "not mid-run"
        chroma.stop(signal.SIGKILL)
        time.sleep(3)
        chroma = servers.start_chroma(data, logs_dir / "chroma-restart-2.log", port=chroma.port)
        run = finish(indexer)
        assert run.code == 0, run.summary
        # The outage was met, and waited out, by the run.
        assert "ChromaDB" in run.log and "; retry 1 in" in run.log
        assert run.summary["indexed"] + run.summary["skipped"] == len(GOOD_IDS)
        assert run.summary["failed"] == len(CORRUPT)
        assert run.summary["collection_count"] == len(GOOD_IDS)
        assert_exactly_the_good_records(url, "away")
    finally:
        indexer.kill()
        chroma.stop()


def test_embedder_gone_for_good_ends_the_run_soon_after_retry_seconds(
    big_dataset: Path, chroma_url: str, tmp_path: Path, collection_name: str, logs_dir: Path
) -> None:
    embedder = servers.start_embedder(logs_dir / "embedder-gone.log", *SLOW)
    indexer = start_indexer(
        embedder.address,
        chroma_url,
        big_dataset,
        tmp_path,
        collection_name,
        limit=SHORT,
        batch_size=4,
        retry_seconds=RETRY_SECONDS,
    )
    try:
        wait_for_count(chroma_url, collection_name, 8)
        assert indexer.poll() is None, "the run ended before the embedder could be killed"
        embedder.stop(signal.SIGKILL)
        killed = time.monotonic()
        written_at_kill = count(chroma_url, collection_name)
        # Bounded well below the old behaviour: each attempt waited out the client's deadline,
        # 60 s scaled by the batch's photos and boxes (about 4 x 60 s here).
        run = finish(indexer, timeout=RETRY_SECONDS + 30)
        ended = time.monotonic() - killed
    finally:
        indexer.kill()
        embedder.stop()
    assert run.code == 1, run.log
    assert "embedder at" in run.summary["error"], run.summary
    assert RETRY_SECONDS - 1 < ended < RETRY_SECONDS + 10, ended
    # What was written stays: every photo the run counts as indexed is there, and it stopped
    # short of the end.
    written = count(chroma_url, collection_name)
    assert written_at_kill <= written == run.summary["indexed"]
    assert 0 < written < len(SHORT_GOOD_IDS)


def test_chroma_gone_for_good_ends_the_run_soon_after_retry_seconds(
    big_dataset: Path, slow_embedder: CountedEmbedder, tmp_path: Path, logs_dir: Path
) -> None:
    data = tmp_path / "chroma"
    chroma = servers.start_chroma(data, logs_dir / "chroma-gone-1.log")
    indexer = start_indexer(
        slow_embedder.address,
        chroma.http,
        big_dataset,
        tmp_path / "images",
        "gone",
        limit=SHORT,
        batch_size=4,
        retry_seconds=RETRY_SECONDS,
    )
    try:
        written_before_kill = wait_for_count(chroma.http, "gone", 8)
        assert indexer.poll() is None, "the run ended before ChromaDB could be killed"
        chroma.stop(signal.SIGKILL)
        killed = time.monotonic()
        run = finish(indexer, timeout=RETRY_SECONDS + 30)
        ended = time.monotonic() - killed
        chroma = servers.start_chroma(data, logs_dir / "chroma-gone-2.log", port=chroma.port)
        written = count(chroma.http, "gone")
    finally:
        indexer.kill()
        chroma.stop()
    assert run.code == 1, run.log
    assert "ChromaDB" in run.summary["error"], run.summary
    # Before, a backoff pause of up to 10 s could start just before the budget ran out.
    assert RETRY_SECONDS - 1 < ended < RETRY_SECONDS + 5, ended
    # What was written stays (ChromaDB killed after storing an upsert, before answering it,
    # keeps a batch the summary does not count).
    assert written_before_kill <= written
    assert run.summary["indexed"] <= written < len(SHORT_GOOD_IDS)


def test_killed_indexer_resumes_without_embedding_again(
    big_dataset: Path,
    slow_embedder: CountedEmbedder,
    chroma_url: str,
    tmp_path: Path,
    collection_name: str,
) -> None:
    first = start_indexer(slow_embedder.address, chroma_url, big_dataset, tmp_path, collection_name)
    wait_for_count(chroma_url, collection_name, 40)
    first.send_signal(signal.SIGKILL)
    first.wait()
    present = present_rows(chroma_url, collection_name)
    assert 0 < len(present) < len(GOOD_IDS), "not killed mid-run"

    before = slow_embedder.settled()
    run = finish(
        start_indexer(slow_embedder.address, chroma_url, big_dataset, tmp_path, collection_name)
    )
    embedded = slow_embedder.settled() - before
    assert run.code == 0, run.summary
    # The embedder embedded only the rows that were missing, each once, and their garments.
    missing = GOOD_ROWS - present
    assert embedded == EmbedderCounts(
        photos=len(missing),
        regions=len(garment_ids(big_dataset, missing)),
        refused=len(CORRUPT),
    )
    assert_exactly_the_good_records(chroma_url, collection_name)
    assert not list(tmp_path.rglob("*.tmp"))
    # Every garment of every good photo once: those of the photos already there were there too
    # (written before their photo), the rerun wrote those of the others.
    garments = connect(chroma_url).get_collection(garments_collection_name(collection_name))
    stored = garments.get(include=[])["ids"]
    assert len(stored) == len(set(stored)) == run.summary["garment_count"]
    assert set(stored) == garment_ids(big_dataset, GOOD_ROWS)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_first_signal_flushes_what_is_in_flight(
    sig: signal.Signals,
    big_dataset: Path,
    slow_embedder: CountedEmbedder,
    chroma_url: str,
    tmp_path: Path,
    collection_name: str,
) -> None:
    def start() -> subprocess.Popen[str]:
        return start_indexer(
            slow_embedder.address,
            chroma_url,
            big_dataset,
            tmp_path,
            collection_name,
            limit=SHORT,
            batch_size=4,
        )

    before = slow_embedder.settled()
    indexer = start()
    wait_for_count(chroma_url, collection_name, 8)
    indexer.send_signal(sig)
    run = finish(indexer)
    embedded = slow_embedder.settled() - before
    assert run.code == 130, run.log
    assert run.summary["interrupted"] is True
    # Flushed, not dropped: every photo and garment the embedder embedded for this run was
    # written, and the run stopped short of the end.
    photos = count(chroma_url, collection_name)
    garments = count(chroma_url, garments_collection_name(collection_name))
    assert embedded.photos == photos == run.summary["indexed"] == run.summary["collection_count"]
    assert embedded.regions == garments == run.summary["garments"]
    assert embedded.refused == run.summary["failed"]
    assert 0 < photos < len(SHORT_GOOD_IDS)

    present = present_rows(chroma_url, collection_name)
    before = slow_embedder.settled()
    rerun = finish(start())
    embedded = slow_embedder.settled() - before
    assert rerun.code == 0, rerun.log
    missing = SHORT_GOOD_ROWS - present
    assert (embedded.photos, embedded.regions) == (
        len(missing),
        len(garment_ids(big_dataset, missing)),
    )
    assert_exactly_the_good_records(chroma_url, collection_name, SHORT_GOOD_IDS)


def test_a_second_ctrl_c_aborts_at_once(
    big_dataset: Path, chroma_url: str, tmp_path: Path, collection_name: str, logs_dir: Path
) -> None:
    # Each request waits 2 s for company and one is in flight at a time: a flush of the
    # batches in flight and queued would take several seconds.
    embedder = servers.start_embedder(
        logs_dir / "embedder-crawl.log", "--fixed-delay", "--max-delay-ms", "2000"
    )
    indexer = start_indexer(
        embedder.address,
        chroma_url,
        big_dataset,
        tmp_path,
        collection_name,
        "--concurrency",
        "1",
        limit=SHORT,
        batch_size=4,
    )
    try:
        wait_for_count(chroma_url, collection_name, 4)
        indexer.send_signal(signal.SIGINT)
        time.sleep(0.5)
        assert indexer.poll() is None, "the flush ended before the second Ctrl-C"
        indexer.send_signal(signal.SIGINT)
        second = time.monotonic()
        stdout, stderr = indexer.communicate(timeout=30)
        ended = time.monotonic() - second
    finally:
        indexer.kill()
        embedder.stop()
    assert indexer.returncode == 130, stderr
    assert ended < 2.5, ended
    assert "aborted" in stderr
    assert stdout.strip() == ""  # no summary: a run that flushed would have printed one
    assert 0 < count(chroma_url, collection_name) < len(SHORT_GOOD_IDS)


def test_two_shards_together_equal_one_full_run(
    big_dataset: Path,
    embedder: servers.Server,
    chroma_url: str,
    tmp_path: Path,
) -> None:
    shards = [
        start_indexer(
            embedder.address,
            chroma_url,
            big_dataset,
            tmp_path / "s",
            "sharded",
            "--shard",
            f"{i}/2",
            "--offset",
            "7",
            limit=100,
        )
        for i in range(2)
    ]
    summaries = [finish(p).summary for p in shards]
    run = finish(
        start_indexer(
            embedder.address,
            chroma_url,
            big_dataset,
            tmp_path / "w",
            "whole",
            "--offset",
            "7",
            limit=100,
        )
    )
    whole = run.summary
    assert run.code == 0
    sharded_ids = set(connect(chroma_url).get_collection("sharded").get()["ids"])
    whole_ids = set(connect(chroma_url).get_collection("whole").get()["ids"])
    assert sharded_ids == whole_ids
    assert sum(s["indexed"] for s in summaries) == whole["indexed"] == len(whole_ids)
    assert sum(s["failed"] for s in summaries) == whole["failed"] == 1  # row 17 is in 7..106
