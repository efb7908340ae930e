"""Both services called from Node.js (@grpc/grpc-js, protos/ loaded by @grpc/proto-loader), as
another team's service would call them: the contract works outside Python, by its names."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from google.rpc import status_pb2

from devstack import servers

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
CLIENT = Path(__file__).with_name("client.mjs")
COLLECTION = "interop-tests"
# googleapis-common-protos ships the .proto files beside its modules: google/rpc/status.proto.
GOOGLEAPIS = Path(status_pb2.__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def query(
    embedder: servers.Server,
    chroma_url: str,
    dataset_dir: Path,
    logs_dir: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[servers.Server]:
    images = tmp_path_factory.mktemp("interop-images")
    args = servers.indexer_args(embedder.address, chroma_url, dataset_dir, images, COLLECTION)
    indexed = servers.run_indexer(*args, "--limit", "12")
    assert indexed.returncode == 0, indexed.stderr
    server = servers.start_query(
        logs_dir / "query-interop.log", embedder.address, chroma_url, COLLECTION, http_port=0
    )
    yield server
    server.stop()


@pytest.fixture(scope="module")
def node_output(embedder: servers.Server, query: servers.Server) -> dict[str, Any]:
    node = shutil.which("node")
    if node is None or not (ROOT / "node_modules" / "@grpc" / "grpc-js").is_dir():
        pytest.fail("the Node client needs node and the npm packages: run `make node_modules`")
    result = subprocess.run(
        [node, str(CLIENT), embedder.address, query.address, str(GOOGLEAPIS)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    output: dict[str, Any] = json.loads(result.stdout)
    return output


def test_node_embeds_texts_into_vectors_of_the_models_dimension(
    node_output: dict[str, Any],
) -> None:
    embed, model = node_output["embed"], node_output["model"]
    assert (model["model_name"], model["pretrained"]) == ("tiny-clip", "none")
    assert embed["count"] == 2
    assert embed["lengths"] == [model["dimension"]] * 2
    assert embed["norms"] == pytest.approx([1.0, 1.0], abs=1e-4)


def test_node_search_returns_indexed_photos_in_ascending_distance(
    node_output: dict[str, Any],
) -> None:
    search = node_output["search"]
    assert (search["query"], search["grain"]) == ("a person in the street", "SEARCH_GRAIN_PHOTO")
    results = search["results"]
    assert [r["rank"] for r in results] == list(range(1, len(results) + 1))
    assert results, "the search found nothing in the indexed collection"
    distances = [r["distance"] for r in results]
    assert distances == sorted(distances)
    assert all(Path(r["path"]).is_file() for r in results)


def test_node_reads_the_refusal_and_its_rich_status_details(node_output: dict[str, Any]) -> None:
    refused = node_output["refused"]
    assert refused is not None, "a search for an unknown category was not refused"
    assert refused["code_name"] == "INVALID_ARGUMENT"
    status = refused["status"]
    assert status["code"] == refused["code"] == 3
    by_type = {d["type"]: d for d in status["details"]}
    assert by_type["google.rpc.ErrorInfo"]["reason"] == "UNKNOWN_CATEGORY"
    violations = by_type["google.rpc.BadRequest"]["field_violations"]
    assert [v["field"] for v in violations] == ["categories[0]"]
