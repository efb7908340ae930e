"""One indexed collection and one query service (gRPC and HTTP) for the query tests."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack import servers

COLLECTION = "query-tests"


@pytest.fixture(scope="session")
def indexed(
    embedder: servers.Server,
    chroma_url: str,
    dataset_dir: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Path:
    images = tmp_path_factory.mktemp("images")
    result = servers.run_indexer(
        *servers.indexer_args(
            embedder.address, chroma_url, dataset_dir, images, COLLECTION, "--limit", "0"
        )
    )
    assert result.returncode == 0, result.stderr
    return images


@pytest.fixture(scope="session")
def query(
    indexed: Path, embedder: servers.Server, chroma_url: str, logs_dir: Path
) -> Iterator[servers.Server]:
    server = servers.start_query(
        logs_dir / "query.log",
        embedder.address,
        chroma_url,
        COLLECTION,
        "--images-dir",
        str(indexed),
    )
    yield server
    server.stop()


def search_cli(query: servers.Server, *args: str) -> subprocess.CompletedProcess[str]:
    """`python -m query_service search --address <query> ARGS`, as a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", "query_service", "search", "--address", query.address, *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=servers.child_env(),
    )
