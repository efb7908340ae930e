"""The indexer survives faults with real servers: an embedder restarted, ChromaDB away for a
while, the indexer itself killed or interrupted; every good record ends up there exactly once."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack import sample_data, servers
from fashionrag.collection import garments_collection_name, record_id
from fashionrag.collection_store import connect
from tests.indexer_service.truth import garment_ids

pytestmark = pytest.mark.integration

ROWS = 240
CORRUPT = (17, 150)
GOOD_IDS = {record_id("train", i + 1) for i in range(ROWS) if i not in CORRUPT}
# Each embed request waits for company this long: runs last seconds, long enough to hit.
SLOW = ("--max-delay-ms", "250")


@pytest.fixture(scope="module")
def big_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("big")
    sample_data.generate(out, "train", ROWS, corrupt=CORRUPT, files=4, seed=5)
    return out


@pytest.fixture(scope="module")
def slow_embedder(logs_dir: Path) -> Iterator[servers.Server]:
    server = servers.start_embedder(logs_dir / "embedder-slow.log", *SLOW)
    yield server
    server.stop()


def start_indexer(
    embedder: str, chroma_url: str, dataset: Path, images: Path, collection: str, *extra: str
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
                "0",
                "--batch-size",
                "8",
                "--concurrency",
                "2",
                "--retry-seconds",
                "120",
                *extra,
            ),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=servers.child_env(),
        cwd=servers.ROOT,
    )


def wait_for_count(chroma_url: str, collection: str, at_least: int, timeout: float = 60) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            count = connect(chroma_url).get_collection(collection).count()
            if count >= at_least:
                return int(count)
        except Exception:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"collection {collection} never reached {at_least} records")


def finish(process: subprocess.Popen[str], timeout: float = 240) -> tuple[int, dict]:
    stdout, stderr = process.communicate(timeout=timeout)
    lines = stdout.strip().splitlines()
    assert lines, stderr
    return process.returncode, json.loads(lines[-1])


def assert_exactly_the_good_records(chroma_url: str, collection: str) -> None:
    records = connect(chroma_url).get_collection(collection).get(include=["metadatas"])
    assert set(records["ids"]) == GOOD_IDS
    assert len(records["ids"]) == len(GOOD_IDS)
    assert all(Path(m["path"]).is_file() for m in records["metadatas"])


def test_embedder_restarted_mid_run(
    big_dataset: Path, chroma_url: str, tmp_path: Path, collection_name: str, logs_dir: Path
) -> None:
    embedder = servers.start_embedder(logs_dir / "embedder-restart-1.log", *SLOW)
    indexer = start_indexer(embedder.address, chroma_url, big_dataset, tmp_path, collection_name)
    wait_for_count(chroma_url, collection_name, 16)
    embedder.stop(signal.SIGKILL)
    time.sleep(1)
    embedder = servers.start_embedder(
        logs_dir / "embedder-restart-2.log", *SLOW, port=embedder.port
    )
    try:
        code, summary = finish(indexer)
    finally:
        embedder.stop()
    assert code == 0, summary
    assert (summary["indexed"], summary["skipped"], summary["failed"]) == (
        len(GOOD_IDS),
        0,
        len(CORRUPT),
    )
    assert_exactly_the_good_records(chroma_url, collection_name)


def test_chroma_away_for_a_while(
    big_dataset: Path, slow_embedder: servers.Server, tmp_path: Path, logs_dir: Path
) -> None:
    data = tmp_path / "chroma"
    chroma = servers.start_chroma(data, logs_dir / "chroma-restart-1.log")
    url = f"http://{chroma.address}"
    indexer = start_indexer(slow_embedder.address, url, big_dataset, tmp_path / "images", "away")
    try:
        wait_for_count(url, "away", 16)
        chroma.stop(signal.SIGKILL)
        time.sleep(3)
        chroma = servers.start_chroma(data, logs_dir / "chroma-restart-2.log", port=chroma.port)
        code, summary = finish(indexer)
        assert code == 0, summary
        assert summary["indexed"] + summary["skipped"] == len(GOOD_IDS)
        assert summary["failed"] == len(CORRUPT)
        assert summary["collection_count"] == len(GOOD_IDS)
        assert_exactly_the_good_records(url, "away")
    finally:
        indexer.kill()
        chroma.stop()


def test_killed_indexer_resumes_without_embedding_again(
    big_dataset: Path,
    slow_embedder: servers.Server,
    chroma_url: str,
    tmp_path: Path,
    collection_name: str,
) -> None:
    first = start_indexer(slow_embedder.address, chroma_url, big_dataset, tmp_path, collection_name)
    wait_for_count(chroma_url, collection_name, 40)
    first.send_signal(signal.SIGKILL)
    first.wait()
    present_ids = set(connect(chroma_url).get_collection(collection_name).get()["ids"])
    present = len(present_ids)
    assert 0 < present < len(GOOD_IDS)
    present_rows = {int(rid.split("-")[1]) - 1 for rid in present_ids}
    good_rows = {i for i in range(ROWS) if i not in CORRUPT}

    code, summary = finish(
        start_indexer(slow_embedder.address, chroma_url, big_dataset, tmp_path, collection_name)
    )
    assert code == 0, summary
    assert summary["skipped"] == present  # what was there was neither embedded nor written again
    assert summary["indexed"] == len(GOOD_IDS) - present
    assert summary["failed"] == len(CORRUPT)
    assert_exactly_the_good_records(chroma_url, collection_name)
    assert not list(tmp_path.rglob("*.tmp"))
    # Every garment of every good photo once: those of the photos already there were there too
    # (written before their photo), the rerun wrote those of the others.
    garments = connect(chroma_url).get_collection(garments_collection_name(collection_name))
    stored = garments.get(include=[])["ids"]
    assert len(stored) == len(set(stored)) == summary["garment_count"]
    assert set(stored) == garment_ids(big_dataset, good_rows)
    assert summary["garments"] == len(garment_ids(big_dataset, good_rows - present_rows))


def test_ctrl_c_flushes_what_is_in_flight(
    big_dataset: Path,
    slow_embedder: servers.Server,
    chroma_url: str,
    tmp_path: Path,
    collection_name: str,
) -> None:
    indexer = start_indexer(
        slow_embedder.address, chroma_url, big_dataset, tmp_path, collection_name
    )
    wait_for_count(chroma_url, collection_name, 16)
    indexer.send_signal(signal.SIGINT)
    code, summary = finish(indexer)
    assert code == 130
    assert summary["interrupted"] is True
    count = connect(chroma_url).get_collection(collection_name).count()
    assert summary["indexed"] == count == summary["collection_count"]
    assert count < len(GOOD_IDS)

    code, summary = finish(
        start_indexer(slow_embedder.address, chroma_url, big_dataset, tmp_path, collection_name)
    )
    assert code == 0
    assert summary["skipped"] == count
    assert_exactly_the_good_records(chroma_url, collection_name)


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
            "--limit",
            "100",
            "--offset",
            "7",
        )
        for i in range(2)
    ]
    summaries = [finish(p)[1] for p in shards]
    code, whole = finish(
        start_indexer(
            embedder.address,
            chroma_url,
            big_dataset,
            tmp_path / "w",
            "whole",
            "--limit",
            "100",
            "--offset",
            "7",
        )
    )
    assert code == 0
    sharded_ids = set(connect(chroma_url).get_collection("sharded").get()["ids"])
    whole_ids = set(connect(chroma_url).get_collection("whole").get()["ids"])
    assert sharded_ids == whole_ids
    assert sum(s["indexed"] for s in summaries) == whole["indexed"] == len(whole_ids)
    assert sum(s["failed"] for s in summaries) == whole["failed"] == 1  # row 17 is in 7..106
