"""docker-compose.yml's lock-down: what every container may do, and what may reach ChromaDB
(`docker compose config` needs a docker binary; this reads the file as compose does, merge keys
included)."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from devstack.servers import ROOT

COMPOSE = ROOT / "deploy" / "docker-compose.yml"
# The NVIDIA runtime's start hook writes into the image; see the file.
WRITABLE_ROOT = {"embedder"}


def services() -> dict[str, dict[str, Any]]:
    return yaml.safe_load(COMPOSE.read_text())["services"]


def test_chromadb_is_reachable_only_inside_the_network() -> None:
    assert "ports" not in services()["chroma"]


@pytest.mark.parametrize("name", sorted(services()))
def test_every_container_is_locked_down(name: str) -> None:
    service = services()[name]
    assert service["cap_drop"] == ["ALL"]
    assert "no-new-privileges:true" in service["security_opt"]
    assert service["mem_limit"]
    if name not in WRITABLE_ROOT:
        assert service["read_only"] is True
        assert any(t.split(":")[0] == "/tmp" for t in service["tmpfs"])


def test_the_query_service_serves_images_from_where_the_indexer_writes_them() -> None:
    query, indexer = services()["query"], services()["indexer"]
    images = indexer["environment"]["FASHIONRAG_IMAGES_DIR"]
    assert query["environment"]["FASHIONRAG_IMAGES_DIR"] == images
    written = {v.split(":")[0]: v.split(":")[1] for v in indexer["volumes"]}
    read = {v.split(":")[0]: v.split(":")[1] for v in query["volumes"]}
    assert written["images"] == read["images"] == images


@pytest.mark.parametrize(
    "dockerfile", ["Dockerfile.app", "Dockerfile.embedder", "Dockerfile.chroma"]
)
def test_images_write_no_bytecode_on_a_read_only_root(dockerfile: str) -> None:
    assert "PYTHONDONTWRITEBYTECODE=1" in (ROOT / "deploy" / dockerfile).read_text()
