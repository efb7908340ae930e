"""The container health check command against a real server, and the Dockerfiles' dependency
lists."""

from __future__ import annotations

import subprocess
import sys

import pytest

from devstack import servers
from devstack.ports import free_port


@pytest.mark.integration
def test_healthcheck_passes_on_a_serving_server(embedder: servers.Server) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "fashionrag.healthcheck",
            embedder.address,
            "fashionrag.v1.EmbedderService",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0
    assert "SERVING" in result.stdout


def test_healthcheck_fails_where_nothing_serves() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "fashionrag.healthcheck", f"127.0.0.1:{free_port()}"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 1
    assert "UNAVAILABLE" in result.stderr


def test_image_requirements_keep_torch_in_the_embedder_image_only() -> None:
    def requirements(*extras: str) -> list[str]:
        out = subprocess.run(
            [sys.executable, "deploy/requirements.py", *extras],
            capture_output=True,
            text=True,
            cwd=servers.ROOT,
            check=True,
        ).stdout
        return out.split()

    embedder = requirements("embedder")
    light = requirements("indexer", "query", "chroma-client")
    assert "torch==2.14.1" in embedder and "grpcio==1.85.1" in embedder
    assert not any(r.startswith(("torch", "open-clip")) for r in light)
    assert "chromadb-client==1.5.9" in light and "chromadb==1.5.9" not in light
