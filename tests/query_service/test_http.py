"""The query service's HTTP side and gallery page, against real servers."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx
import pytest

from devstack import servers
from devstack.browser import dump_dom
from devstack.ports import free_port
from indexer_service.dataset import load_split

pytestmark = pytest.mark.integration


def get(query: servers.Server, path: str, **params: object) -> httpx.Response:
    return httpx.get(f"{query.http}{path}", params=params, timeout=30)  # type: ignore[arg-type]


def test_text_search_returns_the_json_contract(query: servers.Server) -> None:
    response = get(query, "/api/search", q="something red", k=6)
    assert response.status_code == 200
    payload = response.json()
    assert payload["query"] == "something red"
    results = payload["results"]
    assert [r["rank"] for r in results] == list(range(1, 7))
    assert [r["distance"] for r in results] == sorted(r["distance"] for r in results)
    assert {"rank", "id", "path", "distance", "categories"} <= set(results[0])
    assert all(Path(r["path"]).is_file() for r in results)


def test_http_and_the_cli_give_the_same_json(query: servers.Server) -> None:
    http = get(query, "/api/search", q="a dark one", k=5, auto_category="off").json()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "query_service",
            "search",
            "a dark one",
            "-k",
            "5",
            "--json",
            "--no-auto-category",
            "--address",
            query.address,
        ],
        capture_output=True,
        text=True,
        env=servers.child_env(),
        timeout=60,
    )
    assert json.loads(result.stdout) == http


def test_category_parameter_filters(query: servers.Server) -> None:
    payload = get(query, "/api/search", q="x", k=100, category="shoe").json()
    assert payload["applied_categories"] == ["shoe"]
    assert all("shoe" in r["categories"] for r in payload["results"])


@pytest.mark.parametrize(
    ("params", "message", "field", "reason"),
    [
        ({"q": "x", "k": 0}, "between 1 and 100", "top_k", "INVALID_ARGUMENT"),
        ({"q": "x", "k": 101}, "between 1 and 100", "top_k", "INVALID_ARGUMENT"),
        ({"q": "x", "k": "ten"}, "whole number", "top_k", "INVALID_ARGUMENT"),
        ({"k": 3}, "q parameter is missing", "text", "INVALID_ARGUMENT"),
        ({"q": " "}, "empty", "text", "INVALID_ARGUMENT"),
        ({"q": "x", "category": "spaceship"}, "'spaceship'", "categories[0]", "UNKNOWN_CATEGORY"),
        ({"q": "x", "auto_category": "maybe"}, "on or off", "category_mode", "INVALID_ARGUMENT"),
    ],
)
def test_bad_parameters_are_400_with_the_field_and_reason(
    query: servers.Server, params: dict, message: str, field: str, reason: str
) -> None:
    response = get(query, "/api/search", **params)
    assert response.status_code == 400
    body = response.json()
    assert message in body["error"]
    assert body["code"] == "INVALID_ARGUMENT"
    assert body["reason"] == reason
    assert [v["field"] for v in body["field_violations"]] == [field]


def test_unknown_categories_list_the_valid_ones_as_data(query: servers.Server) -> None:
    names = [f"no-such-{i}" for i in range(300)]
    response = httpx.get(
        f"{query.http}/api/search", params={"q": "x", "category": names}, timeout=30
    )
    assert response.status_code == 400
    body = response.json()
    assert len(body["error"]) < 200
    assert len(body["field_violations"]) == 10
    assert body["metadata"]["field_violations"] == "300"
    allowed = body["metadata"]["allowed"].split("|")
    assert allowed == get(query, "/api/categories").json()["categories"]


def test_uploaded_image_finds_itself_first(query: servers.Server, dataset_dir: Path) -> None:
    row = next(iter(load_split(str(dataset_dir), "train").skip(3)))
    files = {"image": ("photo.jpg", io.BytesIO(row["image"]["bytes"]), "image/jpeg")}
    response = httpx.post(f"{query.http}/api/search", files=files, data={"k": "3"}, timeout=30)
    assert response.status_code == 200, response.text
    first = response.json()["results"][0]
    assert first["id"] == f"train-{row['image_id']}"
    assert first["distance"] == pytest.approx(0.0, abs=1e-4)
    raw = httpx.post(
        f"{query.http}/api/search?k=1",
        content=row["image"]["bytes"],
        headers={"Content-Type": "image/jpeg"},
        timeout=30,
    )
    assert raw.json()["results"][0]["id"] == first["id"]


def test_bad_upload_is_400(query: servers.Server) -> None:
    files = {"image": ("x.jpg", io.BytesIO(b"not an image"), "image/jpeg")}
    response = httpx.post(f"{query.http}/api/search", files=files, timeout=30)
    assert response.status_code == 400
    assert "cannot identify" in response.json()["error"]
    assert response.json()["reason"] == "INVALID_IMAGE"
    assert response.json()["field_violations"][0]["field"] == "image"
    missing = httpx.post(f"{query.http}/api/search", files={"other": ("x", b"x")}, timeout=30)
    assert missing.status_code == 400 and "named 'image'" in missing.json()["error"]


def test_indexed_image_is_served_by_id(query: servers.Server) -> None:
    result = get(query, "/api/search", q="x", k=1).json()["results"][0]
    response = get(query, f"/images/{result['id']}")
    assert response.status_code == 200
    assert response.content == Path(result["path"]).read_bytes()


@pytest.mark.parametrize("image_id", ["train-999999", "..%2F..%2Fetc%2Fpasswd", "%2Fetc%2Fpasswd"])
def test_only_indexed_ids_are_served(query: servers.Server, image_id: str) -> None:
    response = httpx.get(f"{query.http}/images/{image_id}", timeout=30)
    assert response.status_code == 404
    assert response.json()["reason"] == "IMAGE_NOT_FOUND"
    assert b"root:" not in response.content


def test_healthz(query: servers.Server) -> None:
    assert get(query, "/healthz").json() == {"status": "ok"}


def test_healthz_names_the_backend_that_is_down(embedder: servers.Server, logs_dir: Path) -> None:
    dead_chroma = f"http://127.0.0.1:{free_port()}"
    query = servers.start_query(
        logs_dir / "query-nochroma.log", embedder.address, dead_chroma, "any"
    )
    try:
        response = get(query, "/healthz")
        assert response.status_code == 503
        assert "ChromaDB" in response.json()["error"]
    finally:
        query.stop()


def test_gallery_shows_results_as_images_in_a_browser(query: servers.Server) -> None:
    with tempfile.TemporaryDirectory() as profile:
        dom = dump_dom(f"{query.http}/?q=something+green&k=10", Path(profile))
    images = re.findall(r"<img[^>]*>", dom)
    results = [tag for tag in images if 'class="result"' in tag]
    assert len(results) == 10, dom[-2000:]
    # every image was fetched from /images/<id> and decoded by the browser
    assert all('data-loaded="1"' in tag and 'src="/images/train-' in tag for tag in results)
    assert "10 results for something green" in dom
    assert dom.count('class="chip') == 46


SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/", 200),
        ("/static/gallery.js", 200),
        ("/api/search?q=red&k=2", 200),
        ("/api/search?k=2", 400),  # a domain error, through errors_to_json
        ("/images/no-such-id", 404),
        ("/no/such/route", 404),  # aiohttp's own error page
    ],
)
def test_every_response_carries_the_security_headers(
    query: servers.Server, path: str, status: int
) -> None:
    response = httpx.get(f"{query.http}{path}", timeout=30)
    assert response.status_code == status
    for name, value in SECURITY_HEADERS.items():
        assert response.headers[name] == value, name
    policy = response.headers["Content-Security-Policy"]
    assert "default-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert "unsafe-inline" not in policy


def test_an_indexed_image_carries_the_security_headers(query: servers.Server) -> None:
    first = get(query, "/api/search", q="anything", k=1).json()["results"][0]
    response = get(query, f"/images/{first['id']}")
    assert response.status_code == 200
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert "Content-Security-Policy" in response.headers


def test_gallery_runs_no_inline_code_and_serves_its_own(query: servers.Server) -> None:
    page = get(query, "/").text
    assert "<script>" not in page and "<style>" not in page
    for name, kind in [("gallery.js", "text/javascript"), ("auth.js", "text/javascript")]:
        assert get(query, f"/static/{name}").headers["Content-Type"].startswith(kind)
    assert get(query, "/static/gallery.css").headers["Content-Type"].startswith("text/css")
    assert get(query, "/static/index.html").status_code == 404  # only the files named
