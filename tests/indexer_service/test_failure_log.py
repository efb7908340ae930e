"""The failures file: one valid JSON line per record, from any number of processes at once,
never truncated by a later run."""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path
from typing import Any

from indexer_service.failure_log import FailureLog

PROCESSES = 4
RECORDS = 200
# Long enough that a buffered or unlocked writer would split lines across writes.
REASON = "cannot decode image: " + "x" * 5000


def read_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def append_records(path: Path, shard: int, start: Any) -> None:
    """One shard's job: wait for the others, then append its records one by one."""
    with FailureLog(path, {"run": "2025-01-01T00:00:00+00:00", "shard": f"{shard}/4"}) as log:
        start.wait()
        for row in range(RECORDS):
            log.append(f"train-{shard}-{row}", row, REASON)


def test_each_record_is_one_line_with_the_run_and_shard(tmp_path: Path) -> None:
    path = tmp_path / "deeper" / "failures.jsonl"
    with FailureLog(path, {"run": "2025-01-01T12:00:00+00:00", "shard": "1/2"}) as log:
        log.append("train-7", 6, "cannot decode image:\nbad header")
        log.append("train-9", 8, "no vector")
    assert read_lines(path) == [
        {
            "id": "train-7",
            "row": 6,
            "reason": "cannot decode image:\nbad header",
            "run": "2025-01-01T12:00:00+00:00",
            "shard": "1/2",
        },
        {
            "id": "train-9",
            "row": 8,
            "reason": "no vector",
            "run": "2025-01-01T12:00:00+00:00",
            "shard": "1/2",
        },
    ]


def test_a_second_run_keeps_the_lines_of_the_first(tmp_path: Path) -> None:
    path = tmp_path / "failures.jsonl"
    with FailureLog(path, {"run": "first"}) as log:
        log.append("train-1", 0, "bad")
    with FailureLog(path, {"run": "second"}) as log:
        log.append("train-1", 0, "bad again")
    assert [(r["run"], r["reason"]) for r in read_lines(path)] == [
        ("first", "bad"),
        ("second", "bad again"),
    ]


def test_an_empty_run_still_leaves_the_file(tmp_path: Path) -> None:
    path = tmp_path / "failures.jsonl"
    FailureLog(path).close()
    assert path.read_text() == ""


def test_concurrent_processes_lose_and_mix_no_record(tmp_path: Path) -> None:
    path = tmp_path / "failures.jsonl"
    path.write_text('{"id": "train-0", "row": 0, "reason": "an earlier run"}\n')
    context = multiprocessing.get_context("spawn")
    start = context.Event()
    processes = [
        context.Process(target=append_records, args=(path, shard, start))
        for shard in range(PROCESSES)
    ]
    for process in processes:
        process.start()
    start.set()
    for process in processes:
        process.join(60)
    assert [p.exitcode for p in processes] == [0] * PROCESSES

    lines = read_lines(path)  # every line parses: none was cut or mixed with another
    assert len(lines) == 1 + PROCESSES * RECORDS
    assert lines[0]["reason"] == "an earlier run"
    ids = {r["id"] for r in lines[1:]}
    assert ids == {f"train-{s}-{r}" for s in range(PROCESSES) for r in range(RECORDS)}
    assert all(r["reason"] == REASON for r in lines[1:])
