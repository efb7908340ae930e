"""Shards that add up: three `--shard I/3` indexers at once, sharing one collection, one images
directory and one failures file, leave every good row exactly once and every bad row listed once;
one shard killed and run again loses nothing and embeds nothing twice."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack import sample_data, servers
from devstack.metrics import counter_total
from devstack.ports import free_port
from fashionrag.collection import garments_collection_name, record_id
from fashionrag.collection_store import connect
from tests.indexer_service.truth import garment_ids

pytestmark = pytest.mark.integration

SHARDS = 3
ROWS = 150
CORRUPT = (4, 9, 17, 50, 121)  # rows of every shard: 4 % 3 == 1, 9 % 3 == 0, 17 % 3 == 2...


def rid(row: int) -> str:
    return record_id("train", row + 1)  # generated image ids count from 1


GOOD = {rid(row): row % SHARDS for row in range(ROWS) if row not in CORRUPT}
BAD = {rid(row): row % SHARDS for row in CORRUPT}
BAD_ROWS = {rid(row): row for row in CORRUPT}


def good_of(shard: int) -> set[str]:
    return {i for i, s in GOOD.items() if s == shard}


def bad_of(shard: int) -> set[str]:
    return {i for i, s in BAD.items() if s == shard}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("shards")
    return sample_data.generate(out, "train", ROWS, corrupt=CORRUPT, files=3, seed=7)


class Embedder:
    """An embedder slow enough for a run to be killed mid-way (each request waits 250 ms for
    company), with metrics that count what it embedded."""

    def __init__(self, logs_dir: Path) -> None:
        metrics_port = free_port()
        self.metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
        self.server = servers.start_embedder(
            logs_dir / "embedder-shards.log",
            "--fixed-delay",
            "--max-delay-ms",
            "250",
            "--metrics-port",
            str(metrics_port),
        )

    def images(self) -> tuple[int, int]:
        """Images embedded so far, and images refused (undecodable)."""
        # The "images" series counts garment crops too; "regions" counts them alone.
        embedded = counter_total(self.metrics_url, "fashionrag_embedder_items", kind="images")
        refused = counter_total(self.metrics_url, "fashionrag_embedder_item_errors", kind="images")
        return int(embedded) - self.regions(), int(refused)

    def regions(self) -> int:
        """Garment boxes embedded so far."""
        return int(counter_total(self.metrics_url, "fashionrag_embedder_items", kind="regions"))


@pytest.fixture(scope="module")
def embedder(logs_dir: Path) -> Iterator[Embedder]:
    server = Embedder(logs_dir)
    yield server
    server.server.stop()


class Shards:
    """Indexer runs of one collection sharing one images directory and one failures file."""

    def __init__(self, embedder: str, chroma_url: str, dataset: Path, tmp: Path, name: str):
        self.chroma_url = chroma_url
        self.collection = name
        self.failures = tmp / "failures.jsonl"
        self.images = tmp / "images"
        self._args = servers.indexer_args(
            embedder,
            chroma_url,
            dataset,
            self.images,
            name,
            "--limit",
            "0",
            "--failures-file",
            str(self.failures),
            "--retry-seconds",
            "60",
        )
        self.runs: list[subprocess.Popen[str]] = []

    def start(self, shard: int, *extra: str) -> subprocess.Popen[str]:
        run = servers.start_indexer(*self._args, "--shard", f"{shard}/{SHARDS}", *extra)
        self.runs.append(run)
        return run

    def kill_leftovers(self) -> None:
        """Kill the runs still going (a test that failed half-way leaves none behind)."""
        for run in self.runs:
            if run.poll() is None:
                run.kill()
                run.communicate()

    def garment_ids(self) -> list[str]:
        """The garment record ids in the index."""
        name = garments_collection_name(self.collection)
        return list(connect(self.chroma_url).get_collection(name).get(include=[])["ids"])

    def ids(self, among: set[str] | None = None) -> list[str]:
        """The record ids in the collection (only those of `among`, when given)."""
        collection = connect(self.chroma_url).get_collection(self.collection)
        if among is None:
            return list(collection.get(include=[])["ids"])
        return list(collection.get(ids=sorted(among), include=[])["ids"])

    def failure_lines(self) -> list[dict]:
        """Every line of the failures file, each required to be one JSON object."""
        return [json.loads(line) for line in self.failures.read_text().splitlines()]


@pytest.fixture()
def shards(
    embedder: Embedder, chroma_url: str, dataset: Path, tmp_path: Path, collection_name: str
) -> Iterator[Shards]:
    runs = Shards(embedder.server.address, chroma_url, dataset, tmp_path, collection_name)
    yield runs
    runs.kill_leftovers()


def finish(process: subprocess.Popen[str], timeout: float = 180) -> dict:
    stdout, stderr = process.communicate(timeout=timeout)
    assert process.returncode == 0, stderr
    return json.loads(stdout.strip().splitlines()[-1])


def assert_exactly_the_good_rows(shards: Shards) -> None:
    # Chroma keeps one record per id: that no row was written twice shows in the embedder's
    # counts and the runs' summaries, checked by the tests.
    assert sorted(shards.ids()) == sorted(GOOD)
    saved = {p.stem for p in (shards.images / "train").iterdir() if p.suffix != ".tmp"}
    assert saved == {str(row + 1) for row in range(ROWS) if row not in CORRUPT}


def test_three_shards_at_once_add_up_to_the_split(
    embedder: Embedder, shards: Shards, dataset: Path
) -> None:
    embedded_before, refused_before = embedder.images()
    regions_before = embedder.regions()
    runs = [shards.start(shard) for shard in range(SHARDS)]
    summaries = [finish(run) for run in runs]

    for shard, summary in enumerate(summaries):
        assert (summary["indexed"], summary["skipped"], summary["failed"]) == (
            len(good_of(shard)),
            0,
            len(bad_of(shard)),
        )
    assert_exactly_the_good_rows(shards)
    embedded, refused = embedder.images()
    assert (embedded - embedded_before, refused - refused_before) == (len(GOOD), len(BAD))
    # Every garment of every good row once, each box embedded once.
    garments = garment_ids(dataset, {row for row in range(ROWS) if row not in CORRUPT})
    assert sorted(shards.garment_ids()) == sorted(garments)
    assert embedder.regions() - regions_before == len(garments)
    assert sum(s["garments"] for s in summaries) == len(garments)

    # One run per shard: every bad row is listed exactly once, by the shard that owns it.
    lines = shards.failure_lines()
    assert sorted(line["id"] for line in lines) == sorted(BAD)
    for line in lines:
        assert (line["shard"], line["row"]) == (f"{BAD[line['id']]}/{SHARDS}", BAD_ROWS[line["id"]])
    assert sorted((shards.images / "train").glob("*.tmp")) == []


def test_a_shard_killed_mid_run_and_rerun_loses_nothing(shards: Shards) -> None:
    victim = 1
    # Small sequential batches: the victim's run lasts seconds, long enough to kill mid-way.
    slow = ("--batch-size", "4", "--concurrency", "1")
    runs = {shard: shards.start(shard, *(slow if shard == victim else ())) for shard in (0, 1, 2)}

    written_when_seen = wait_until_written(shards, good_of(victim), 4, runs[victim])
    runs[victim].send_signal(signal.SIGKILL)
    runs[victim].communicate(timeout=30)
    written_before_kill = len(shards.ids(good_of(victim)))
    assert written_when_seen <= written_before_kill < len(good_of(victim)), "not killed mid-run"

    others = {shard: finish(runs[shard]) for shard in (0, 2)}
    before_rerun = shards.failure_lines()
    rerun = finish(shards.start(victim))

    for shard, summary in others.items():
        assert (summary["indexed"], summary["skipped"]) == (len(good_of(shard)), 0)
    # The rerun embeds only what the killed run had not written: nothing twice.
    assert (rerun["indexed"], rerun["skipped"], rerun["failed"]) == (
        len(good_of(victim)) - written_before_kill,
        written_before_kill,
        len(bad_of(victim)),
    )
    assert_exactly_the_good_rows(shards)

    # "Listed once" is per run: a finished run lists each bad row of its shard exactly once; the
    # killed run, each bad row it reached at most once; a reader keeps a shard's latest run.
    lines = shards.failure_lines()
    assert lines[: len(before_rerun)] == before_rerun  # appended to, never rewritten
    rerun_lines = lines[len(before_rerun) :]
    assert sorted(line["id"] for line in rerun_lines) == sorted(bad_of(victim))
    assert {line["shard"] for line in rerun_lines} == {f"{victim}/{SHARDS}"}
    assert len({line["run"] for line in rerun_lines}) == 1
    for shard in (0, 2):
        listed = [line["id"] for line in before_rerun if line["shard"] == f"{shard}/{SHARDS}"]
        assert sorted(listed) == sorted(bad_of(shard))
    killed = [line["id"] for line in before_rerun if line["shard"] == f"{victim}/{SHARDS}"]
    assert len(killed) == len(set(killed)) and set(killed) <= bad_of(victim)
    assert {line["id"] for line in lines} == set(BAD)


def wait_until_written(
    shards: Shards, ids: set[str], at_least: int, run: subprocess.Popen[str]
) -> int:
    """Wait until `at_least` of `ids` are in the collection while `run` still runs; return how
    many there were."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert run.poll() is None, "the run finished before it could be killed"
        try:
            written = len(shards.ids(ids))
        except Exception:  # the collection is not created yet
            written = 0
        if written >= at_least:
            return written
        time.sleep(0.05)
    raise TimeoutError(f"fewer than {at_least} records written in 120 s")
