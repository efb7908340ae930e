"""Shared fixtures: one real ChromaDB server and one embedder for the session, generated data."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack import sample_data, servers
from embedder_service.client import EmbedderClient

CORRUPT_ROWS = (5,)
DATASET_ROWS = 40

_names = itertools.count()


@pytest.fixture(scope="session")
def logs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("logs")


@pytest.fixture(scope="session")
def chroma(tmp_path_factory: pytest.TempPathFactory, logs_dir: Path) -> Iterator[servers.Server]:
    server = servers.start_chroma(tmp_path_factory.mktemp("chroma"), logs_dir / "chroma.log")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def chroma_url(chroma: servers.Server) -> str:
    return f"http://{chroma.address}"


@pytest.fixture(scope="session")
def embedder(logs_dir: Path) -> Iterator[servers.Server]:
    server = servers.start_embedder(logs_dir / "embedder.log")
    yield server
    server.stop()


@pytest.fixture()
def embedder_client(embedder: servers.Server) -> Iterator[EmbedderClient]:
    with EmbedderClient(embedder.address, timeout=30) as client:
        yield client


@pytest.fixture(scope="session")
def dataset_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A generated train split in Fashionpedia's schema, with one corrupt image."""
    out = tmp_path_factory.mktemp("fashionpedia")
    sample_data.generate(out, "train", DATASET_ROWS, corrupt=CORRUPT_ROWS, files=3)
    sample_data.generate(out, "val", 10, first_image_id=900_000)
    return out


@pytest.fixture()
def collection_name() -> str:
    """A fresh collection name per test, so tests never see each other's records."""
    return f"test-{next(_names)}-collection"
