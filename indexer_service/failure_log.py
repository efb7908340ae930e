"""The failures file: one JSON line per record that could not be indexed, appended safely by
any number of runs and shards at once.

Each record is written as one complete line by a single `os.write` on a file opened with
`O_APPEND`: the kernel moves to the end and writes in one step, so concurrent writers (the
`--shard` jobs sharing one file on one machine) never truncate or interleave each other's lines.
A run never truncates the file: a resumed run keeps the records of the runs before it.

What a rerun means: a record that failed in run 1 and fails again in run 2 has two lines. Each
line names its run (`run`, the run's start time in UTC, and `shard`), so a reader can keep the
latest run's lines or count a record once by its `id`; a run's summary counts only its own
failures.

Caveat: `O_APPEND` is atomic on a local file system; NFS emulates it on each client, so jobs on
several machines writing one file on NFS may still clash, and are better given a file each.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any


class FailureLog:
    """Appends failed records to a JSON-lines file.

    Args:
        path: the file; created (with its folder) when missing, never truncated.
        run: what every line carries besides the record, to tell runs and shards apart
            (e.g. `{"run": "2025-01-01T12:00:00Z", "shard": "0/2"}`).
    """

    def __init__(self, path: Path, run: Mapping[str, Any] | None = None) -> None:
        self.path = path
        self.run = dict(run or {})
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fd: int | None = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def append(self, record_id: str, row: int, reason: str) -> None:
        """Write one failed record as one line: id, row, reason, then the run's fields."""
        if self._fd is None:
            raise ValueError(f"failure log {self.path} is closed")
        entry = {"id": record_id, "row": row, "reason": reason, **self.run}
        line = (json.dumps(entry, ensure_ascii=False) + "\n").encode()
        written = os.write(self._fd, line)
        # A local file takes it whole; only a full disk or a signal leaves a part, and then the
        # rest is still better written than lost.
        while written < len(line):
            written += os.write(self._fd, line[written:])

    def close(self) -> None:
        """Close the file (the lines are already written)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> FailureLog:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
