"""The query service's HTTP side under hostile input, against a real service on real sockets: it
serves only image files inside its images directory, answers every error with JSON and the right
4xx, bounds uploads in time, and logs a dropped client in one line."""

from __future__ import annotations

import base64
import http.client
import os
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from devstack import servers
from fashionrag.collection import KEY_PATH
from fashionrag.collection_store import connect
from tests.query_service.conftest import COLLECTION

pytestmark = pytest.mark.integration

BODY_TIMEOUT = 2.0
MAX_UPLOAD_BYTES = 20 * 1024 * 1024
SECURITY_HEADERS = ("Content-Security-Policy", "X-Content-Type-Options", "X-Frame-Options")


@pytest.fixture(scope="module")
def query(
    indexed: Path, embedder: servers.Server, chroma_url: str, logs_dir: Path
) -> Iterator[servers.Server]:
    """A query service of its own (its own log, a short body timeout) over the shared index."""
    server = servers.start_query(
        logs_dir / "query-safety.log",
        embedder.address,
        chroma_url,
        COLLECTION,
        "--images-dir",
        str(indexed),
        "--http-body-timeout",
        str(BODY_TIMEOUT),
    )
    yield server
    server.stop()


@pytest.fixture()
def plant(chroma_url: str) -> Iterator[Callable[[str, str], str]]:
    """Write photo records by hand, as anyone who can reach ChromaDB can: plant(id, path) copies
    an indexed record under `id` with `path` as its file. Removed after the test."""
    photos = connect(chroma_url).get_collection(COLLECTION, embedding_function=None)
    model = photos.get(limit=1, include=["embeddings", "metadatas"])
    planted: list[str] = []

    def write(record_id: str, path: str) -> str:
        photos.upsert(
            ids=[record_id],
            embeddings=[list(model["embeddings"][0])],
            metadatas=[{**model["metadatas"][0], KEY_PATH: path}],
        )
        planted.append(record_id)
        return record_id

    yield write
    if planted:
        photos.delete(ids=planted)


@dataclass
class Answer:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def json(self) -> Any:
        assert self.headers["Content-Type"].startswith("application/json"), self.body[:200]
        return httpx.Response(200, content=self.body).json()


def send(query: servers.Server, data: bytes, *, timeout: float = 15.0) -> Answer:
    """Send raw bytes on a new connection and read one response."""
    address = urlsplit(query.http)
    with socket.create_connection((address.hostname, address.port), timeout=timeout) as sock:
        sock.sendall(data)
        response = http.client.HTTPResponse(sock)
        response.begin()
        return Answer(response.status, response.headers, response.read())


def post(body: bytes, content_type: str, *extra: str, length: int | None = None) -> bytes:
    """A raw POST /api/search."""
    head = [
        "POST /api/search HTTP/1.1",
        "Host: query",
        f"Content-Type: {content_type}",
        f"Content-Length: {len(body) if length is None else length}",
        "Connection: close",
        *extra,
    ]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def part(body: bytes, *headers: str) -> bytes:
    """A multipart body (boundary XX) of one file field `image`."""
    lines = [
        "--XX",
        'Content-Disposition: form-data; name="image"; filename="photo.jpg"',
        "Content-Type: image/jpeg",
        *headers,
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body + b"\r\n--XX--\r\n"


def assert_json_error(answer: Answer, status: int, reason: str) -> dict[str, Any]:
    assert answer.status == status, answer.body[:300]
    body = answer.json()
    assert body["reason"] == reason, body
    assert body["error"] and body["code"]
    for name in SECURITY_HEADERS:
        assert name in answer.headers, name
    return body


# -- /images: only regular files inside the images directory ------------------------------------


def _symlink_out(images: Path) -> str:
    link = images / "escape.jpg"
    link.symlink_to("/etc/passwd")
    return str(link)


def _fifo(images: Path) -> str:
    fifo = images / "pipe.jpg"
    os.mkfifo(fifo)
    return str(fifo)


@pytest.mark.parametrize(
    "make_path",
    [
        pytest.param(lambda images: "/etc/passwd", id="absolute-outside"),
        pytest.param(lambda images: "../../../../../../../../etc/passwd", id="relative-outside"),
        pytest.param(_symlink_out, id="symlink-inside-to-outside"),
        pytest.param(_fifo, id="fifo-inside"),
        pytest.param(lambda images: str(images / "train"), id="directory-inside"),
        pytest.param(lambda images: str(images / "train" / "gone.jpg"), id="missing-inside"),
    ],
)
def test_a_record_whose_file_is_not_a_regular_file_inside_the_images_dir_is_not_served(
    query: servers.Server,
    plant: Callable[[str, str], str],
    indexed: Path,
    make_path: Callable[[Path], str],
    request: pytest.FixtureRequest,
) -> None:
    path = make_path(indexed)
    try:
        record_id = plant(f"planted-{request.node.callspec.id}", path)
        response = httpx.get(f"{query.http}/images/{record_id}", timeout=10)
        assert response.status_code == 404
        assert response.headers["Content-Type"].startswith("application/json")
        body = response.json()
        assert body["reason"] == "IMAGE_FILE_NOT_FOUND"
        assert record_id in body["error"]
        assert b"root:" not in response.content
        assert path.encode() not in response.content and b"passwd" not in response.content
        assert f"not serving image {record_id}" in query.log()
    finally:
        for name in ("escape.jpg", "pipe.jpg"):
            (indexed / name).unlink(missing_ok=True)


def test_an_indexed_image_inside_the_images_dir_is_served(
    query: servers.Server, plant: Callable[[str, str], str], indexed: Path
) -> None:
    found = httpx.get(f"{query.http}/api/search", params={"q": "x", "k": 1}, timeout=30)
    first = found.json()["results"][0]
    response = httpx.get(f"{query.http}/images/{first['id']}", timeout=10)
    assert response.status_code == 200
    assert response.content == Path(first["path"]).read_bytes()
    # A symlink that stays inside is fine: what counts is where the file really is.
    link = indexed / "alias.jpg"
    link.symlink_to(first["path"])
    try:
        aliased = httpx.get(f"{query.http}/images/{plant('planted-alias', str(link))}", timeout=10)
        assert aliased.status_code == 200 and aliased.content == response.content
    finally:
        link.unlink()


# -- every error is JSON with the right 4xx -----------------------------------------------------


def test_a_malformed_multipart_body_is_400_json(query: servers.Server) -> None:
    answer = send(query, post(b"no boundary anywhere", "multipart/form-data; boundary=XX"))
    body = assert_json_error(answer, 400, "MALFORMED_MULTIPART")
    assert "boundary" in body["error"]
    no_boundary = send(query, post(part(b"x"), "multipart/form-data"))
    assert_json_error(no_boundary, 400, "MALFORMED_MULTIPART")


def test_a_multipart_part_with_invalid_base64_is_400_json(query: servers.Server) -> None:
    bad = part(b"!!not*base64", "Content-Transfer-Encoding: base64")
    answer = send(query, post(bad, "multipart/form-data; boundary=XX"))
    body = assert_json_error(answer, 400, "INVALID_BASE64")
    assert "base64" in body["error"]


def test_a_valid_base64_part_still_reaches_the_image_decoder(query: servers.Server) -> None:
    good = part(base64.b64encode(b"not an image"), "Content-Transfer-Encoding: base64")
    answer = send(query, post(good, "multipart/form-data; boundary=XX"))
    assert_json_error(answer, 400, "INVALID_IMAGE")


def test_an_unsupported_content_encoding_is_415_json(query: servers.Server) -> None:
    answer = send(query, post(b"hello", "image/jpeg", "Content-Encoding: bogus"))
    body = assert_json_error(answer, 415, "UNSUPPORTED_MEDIA_TYPE")
    assert "bogus" in body["error"]
    assert answer.headers["Accept-Encoding"] == "identity, gzip, deflate"
    # br is one aiohttp's parser knows but cannot decode here: refused before the app.
    brotli = send(query, post(b"hello", "image/jpeg", "Content-Encoding: br"))
    assert_json_error(brotli, 415, "UNSUPPORTED_CONTENT_ENCODING")


def test_a_corrupt_gzip_body_is_400_json(query: servers.Server) -> None:
    answer = send(query, post(b"not gzip at all", "image/jpeg", "Content-Encoding: gzip"))
    body = assert_json_error(answer, 400, "INVALID_CONTENT_ENCODING")
    assert "gzip" in body["error"]


def test_an_unknown_route_is_404_json(query: servers.Server) -> None:
    response = httpx.get(f"{query.http}/no/such/route", timeout=10)
    assert response.status_code == 404
    assert response.json()["reason"] == "NOT_FOUND"
    assert response.json()["code"] == "NOT_FOUND"
    assert response.headers["X-Frame-Options"] == "DENY"


def test_a_wrong_method_is_405_json_with_allow(query: servers.Server) -> None:
    response = httpx.delete(f"{query.http}/api/search", timeout=10)
    assert response.status_code == 405
    body = response.json()
    assert body["reason"] == "METHOD_NOT_ALLOWED"
    assert "POST" in body["error"]
    assert {"GET", "POST"} <= {m.strip() for m in response.headers["Allow"].split(",")}


def test_an_oversize_upload_is_413_json_before_its_body_is_read(query: servers.Server) -> None:
    # Only the first 64 KiB are sent: the answer comes from the Content-Length alone.
    head = post(b"x" * 65536, "image/jpeg", length=MAX_UPLOAD_BYTES + 1)
    body = assert_json_error(send(query, head), 413, "REQUEST_ENTITY_TOO_LARGE")
    assert str(MAX_UPLOAD_BYTES) in body["error"]


def test_an_oversize_chunked_upload_is_413_json(query: servers.Server) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(MAX_UPLOAD_BYTES // (1 << 20) + 2):
            yield b"x" * (1 << 20)

    response = httpx.post(
        f"{query.http}/api/search",
        content=chunks(),
        headers={"Content-Type": "image/jpeg"},
        timeout=30,
    )
    assert response.status_code == 413
    assert response.json()["code"] == "RESOURCE_EXHAUSTED"


def test_an_over_long_request_line_is_400_json(query: servers.Server) -> None:
    # aiohttp's parser answers this before any middleware: http_errors.JsonErrorRunner.
    answer = send(query, b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: query\r\n\r\n")
    body = assert_json_error(answer, 400, "LINE_TOO_LONG")
    assert "8190" in body["error"]


def test_a_malformed_header_is_400_json(query: servers.Server) -> None:
    answer = send(query, b"GET / HTTP/1.1\r\nHost: query\r\nNot A Header\r\n\r\n")
    assert_json_error(answer, 400, "MALFORMED_REQUEST")


# -- slow and vanishing clients -----------------------------------------------------------------


def test_a_slow_body_is_408_json_after_the_body_timeout(query: servers.Server) -> None:
    # Headers and 3 of 1000 bytes, then nothing: the answer comes, not a hang.
    started = time.monotonic()
    answer = send(query, post(b"abc", "image/jpeg", length=1000), timeout=BODY_TIMEOUT + 8)
    assert time.monotonic() - started >= BODY_TIMEOUT
    body = assert_json_error(answer, 408, "REQUEST_TIMEOUT")
    assert body["code"] == "DEADLINE_EXCEEDED"


def test_a_client_that_drops_mid_upload_costs_one_log_line(query: servers.Server) -> None:
    marker = "closed the connection before its body arrived"
    before = query.log().count(marker)
    address = urlsplit(query.http)
    for body, kind in [
        (b"abc", "image/jpeg"),
        (part(b"x" * 100)[:60], "multipart/form-data; boundary=XX"),
    ]:
        with socket.create_connection((address.hostname, address.port), timeout=10) as sock:
            sock.sendall(post(body, kind, length=100_000))
            time.sleep(0.2)  # the handler is reading the body when the connection goes
    deadline = time.monotonic() + 10
    while query.log().count(marker) < before + 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    log = query.log()
    assert log.count(marker) == before + 2
    assert "Traceback" not in log  # nor from any other test's hostile request
    assert httpx.get(f"{query.http}/healthz", timeout=10).status_code == 200
