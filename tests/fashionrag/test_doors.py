"""The doors against real servers: TLS, mutual TLS and bearer tokens on the embedder, the query
service calling such an embedder (and the indexer writing through one), and the query service's
own token on gRPC and HTTP; plus the token check and the settings' consistency in-process."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from devstack import servers
from devstack.browser import dump_dom
from devstack.certs import CertificateAuthority, Pair
from embedder_service.client import EmbedderClient
from fashionrag.bearer import check_bearer
from fashionrag.errors import ConfigurationError, Unauthenticated
from fashionrag.grpc_security import ClientSecurity, ServerSecurity
from query_service.client import QueryClient

EMBEDDER_TOKEN = "embedder-secret-token"
QUERY_TOKEN = "query-secret-token"
COLLECTION = "doors"


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> CertificateAuthority:
    return CertificateAuthority(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def server_pair(ca: CertificateAuthority) -> Pair:
    return ca.issue("server", client=False)


@pytest.fixture(scope="module")
def client_pair(ca: CertificateAuthority) -> Pair:
    return ca.issue("client", client=True)


@pytest.fixture(scope="module")
def mtls(ca: CertificateAuthority, client_pair: Pair) -> ClientSecurity:
    """A client of the locked embedder: trusts the CA, presents its certificate, sends the
    token."""
    return ClientSecurity(
        str(ca.pair.cert), str(client_pair.cert), str(client_pair.key), EMBEDDER_TOKEN
    )


def _wait(server: servers.Server, security: ClientSecurity) -> servers.Server:
    try:
        servers.wait_grpc_serving(server, timeout=120, security=security)
    except BaseException:
        server.stop()
        raise
    return server


@pytest.fixture(scope="module")
def locked_embedder(
    ca: CertificateAuthority,
    server_pair: Pair,
    mtls: ClientSecurity,
    logs_dir: Path,
) -> Iterator[servers.Server]:
    """An embedder with mutual TLS and a bearer token."""
    server = servers.start_embedder(
        logs_dir / "embedder-locked.log",
        "--tls-cert",
        str(server_pair.cert),
        "--tls-key",
        str(server_pair.key),
        "--tls-client-ca",
        str(ca.pair.cert),
        wait=False,
        env=servers.child_env(FASHIONRAG_AUTH_TOKEN=EMBEDDER_TOKEN),
    )
    yield _wait(server, mtls)
    server.stop()


def _embed(security: ClientSecurity, address: str) -> None:
    with EmbedderClient(address, timeout=10, security=security) as client:
        client.embed_texts(["red tops"])


@pytest.mark.integration
def test_mutual_tls_client_with_the_token_embeds(
    locked_embedder: servers.Server, mtls: ClientSecurity
) -> None:
    with EmbedderClient(locked_embedder.address, timeout=30, security=mtls) as client:
        vectors = client.embed_texts(["red tops", "a long dress"])
    assert vectors.shape[0] == 2


def _health_code(channel: grpc.Channel) -> grpc.StatusCode:
    try:
        health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
    except grpc.RpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


@pytest.mark.integration
def test_plaintext_client_cannot_reach_a_tls_server(locked_embedder: servers.Server) -> None:
    with grpc.insecure_channel(locked_embedder.address) as channel:
        assert _health_code(channel) == grpc.StatusCode.UNAVAILABLE


@pytest.mark.integration
def test_mutual_tls_refuses_a_client_without_a_certificate(
    locked_embedder: servers.Server, ca: CertificateAuthority
) -> None:
    no_cert = ClientSecurity(str(ca.pair.cert))
    with no_cert.open_channel(locked_embedder.address) as channel:
        assert _health_code(channel) == grpc.StatusCode.UNAVAILABLE


@pytest.mark.integration
def test_client_refuses_a_server_its_ca_did_not_sign(
    locked_embedder: servers.Server, client_pair: Pair, tmp_path: Path
) -> None:
    other = CertificateAuthority(tmp_path, "another-ca")
    distrusting = ClientSecurity(str(other.pair.cert), str(client_pair.cert), str(client_pair.key))
    with distrusting.open_channel(locked_embedder.address) as channel:
        assert _health_code(channel) == grpc.StatusCode.UNAVAILABLE


@pytest.mark.integration
@pytest.mark.parametrize(("token", "reason"), [("", "TOKEN_MISSING"), ("wrong", "TOKEN_INVALID")])
def test_missing_or_wrong_token_is_unauthenticated(
    locked_embedder: servers.Server,
    ca: CertificateAuthority,
    client_pair: Pair,
    token: str,
    reason: str,
) -> None:
    security = ClientSecurity(str(ca.pair.cert), str(client_pair.cert), str(client_pair.key), token)
    with pytest.raises(Unauthenticated) as info:
        _embed(security, locked_embedder.address)
    assert info.value.reason == reason
    assert info.value.grpc_code == grpc.StatusCode.UNAUTHENTICATED


@pytest.mark.integration
def test_health_and_reflection_stay_open_without_the_token(
    locked_embedder: servers.Server, ca: CertificateAuthority, client_pair: Pair
) -> None:
    no_token = ClientSecurity(str(ca.pair.cert), str(client_pair.cert), str(client_pair.key))
    with no_token.open_channel(locked_embedder.address) as channel:
        assert _health_code(channel) == grpc.StatusCode.OK
        answers = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5
        )
        names = {s.name for a in answers for s in a.list_services_response.service}
    assert "fashionrag.v1.EmbedderService" in names


@pytest.mark.integration
def test_healthcheck_command_checks_a_mutual_tls_server(
    locked_embedder: servers.Server, ca: CertificateAuthority, client_pair: Pair
) -> None:
    def healthcheck(*flags: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "fashionrag.healthcheck", locked_embedder.address, *flags],
            capture_output=True,
            text=True,
            timeout=30,
        )

    tls = ["--tls-ca", str(ca.pair.cert)]
    mutual = [*tls, "--tls-cert", str(client_pair.cert), "--tls-key", str(client_pair.key)]
    served = healthcheck(*mutual, "--server-name", "localhost")
    assert served.returncode == 0, served.stderr
    assert "SERVING" in served.stdout
    assert healthcheck(*tls).returncode == 1  # no client certificate: refused


@pytest.fixture(scope="module")
def locked_query(
    locked_embedder: servers.Server,
    ca: CertificateAuthority,
    server_pair: Pair,
    client_pair: Pair,
    chroma_url: str,
    dataset_dir: Path,
    tmp_path_factory: pytest.TempPathFactory,
    logs_dir: Path,
) -> Iterator[servers.Server]:
    """A query service with TLS and its own token, over a collection the indexer wrote through
    the locked embedder, calling that embedder with its CA, client certificate and token."""
    embedder_doors = servers.child_env(
        FASHIONRAG_EMBEDDER_TLS_CA=str(ca.pair.cert),
        FASHIONRAG_EMBEDDER_TLS_CERT=str(client_pair.cert),
        FASHIONRAG_EMBEDDER_TLS_KEY=str(client_pair.key),
        FASHIONRAG_EMBEDDER_TOKEN=EMBEDDER_TOKEN,
    )
    images = tmp_path_factory.mktemp("doors-images")
    indexed = servers.run_indexer(
        *servers.indexer_args(
            locked_embedder.address, chroma_url, dataset_dir, images, COLLECTION, "--limit", "8"
        ),
        env=embedder_doors,
    )
    assert indexed.returncode == 0, indexed.stderr
    summary = json.loads(indexed.stdout.splitlines()[-1])
    assert summary["indexed"] >= 7 and summary["indexed"] + summary["failed"] == 8  # a corrupt one
    server = servers.start_query(
        logs_dir / "query-locked.log",
        locked_embedder.address,
        chroma_url,
        COLLECTION,
        "--tls-cert",
        str(server_pair.cert),
        "--tls-key",
        str(server_pair.key),
        "--images-dir",
        str(images),
        wait=False,
        env={**embedder_doors, "FASHIONRAG_AUTH_TOKEN": QUERY_TOKEN},
    )
    yield _wait(server, ClientSecurity(str(ca.pair.cert)))
    server.stop()


@pytest.mark.integration
def test_query_service_searches_through_a_tls_and_token_embedder(
    locked_query: servers.Server, ca: CertificateAuthority
) -> None:
    security = ClientSecurity(str(ca.pair.cert), token=QUERY_TOKEN)
    with QueryClient(locked_query.address, timeout=30, security=security) as client:
        outcome = client.text("something red", top_k=3, auto_category=False)
    assert len(outcome.hits) == 3


@pytest.mark.integration
def test_query_service_without_its_token_is_unauthenticated(
    locked_query: servers.Server, ca: CertificateAuthority
) -> None:
    with (
        QueryClient(
            locked_query.address, timeout=30, security=ClientSecurity(str(ca.pair.cert))
        ) as client,
        pytest.raises(Unauthenticated),
    ):
        client.text("something red")


@pytest.mark.integration
def test_search_command_passes_tls_and_the_token(
    locked_query: servers.Server, ca: CertificateAuthority
) -> None:
    def search(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "query_service",
                "search",
                "something red",
                "-k",
                "2",
                "--json",
                "--address",
                locked_query.address,
                "--tls-ca",
                str(ca.pair.cert),
            ],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )

    found = search(servers.child_env(FASHIONRAG_TOKEN=QUERY_TOKEN))
    assert found.returncode == 0, found.stderr
    assert len(json.loads(found.stdout)["results"]) == 2
    refused = search(servers.child_env())
    assert refused.returncode == 1
    assert "UNAUTHENTICATED" in refused.stderr


def _http(server: servers.Server, path: str, token: str | None = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    return httpx.get(f"{server.http}{path}", headers=headers, timeout=30)


@pytest.mark.integration
def test_http_api_and_images_ask_for_the_token(locked_query: servers.Server) -> None:
    search = "/api/search?q=something+red&k=2"
    missing = _http(locked_query, search)
    assert missing.status_code == 401
    assert missing.headers["WWW-Authenticate"].startswith("Bearer")
    assert missing.json()["code"] == "UNAUTHENTICATED"
    wrong = _http(locked_query, search, "wrong")
    assert wrong.status_code == 401
    assert 'error="invalid_token"' in wrong.headers["WWW-Authenticate"]
    found = _http(locked_query, search, QUERY_TOKEN)
    assert found.status_code == 200, found.text
    image = f"/images/{found.json()['results'][0]['id']}"
    assert _http(locked_query, image).status_code == 401
    assert _http(locked_query, image, QUERY_TOKEN).status_code == 200
    assert _http(locked_query, "/api/categories").status_code == 401


@pytest.mark.integration
def test_http_gallery_and_healthz_stay_open(locked_query: servers.Server) -> None:
    for path in ("/", "/static/gallery.js", "/static/auth.js", "/static/gallery.css", "/healthz"):
        assert _http(locked_query, path).status_code == 200, path


@pytest.mark.integration
def test_gallery_asks_for_the_token_in_a_browser(
    locked_query: servers.Server, tmp_path: Path
) -> None:
    dom = dump_dom(f"{locked_query.http}/?q=something+red", tmp_path, budget_ms=10000)
    form = re.search(r"<form id=\"auth\"[^>]*>", dom)
    assert form is not None and "hidden" not in form.group(0), dom[-2000:]
    status = re.search(r'<div id="status"[^>]*class="error"[^>]*>([^<]*)<', dom)
    assert status is not None and "token" in status.group(1), dom[-2000:]


def test_bearer_check_accepts_only_the_token() -> None:
    assert check_bearer("Bearer s3cret", "s3cret") is None
    assert check_bearer("bearer s3cret", "s3cret") is None  # the scheme is case-insensitive
    assert check_bearer(None, "") is None  # no token asked for
    for header, reason in [
        (None, "TOKEN_MISSING"),
        ("Basic czNjcmV0", "TOKEN_MISSING"),
        ("Bearer ", "TOKEN_MISSING"),
        ("Bearer s3cre", "TOKEN_INVALID"),
        ("Bearer s3cret2", "TOKEN_INVALID"),
    ]:
        error = check_bearer(header, "s3cret")
        assert error is not None and error.reason == reason, header


@pytest.mark.parametrize(
    "doors",
    [
        {"tls_cert": "a.crt"},
        {"tls_key": "a.key"},
        {"tls_client_ca": "ca.crt"},
    ],
)
def test_server_doors_that_cannot_work_are_refused(doors: dict[str, str]) -> None:
    with pytest.raises(ConfigurationError):
        ServerSecurity(**doors)


def test_client_certificate_without_a_ca_is_refused() -> None:
    with pytest.raises(ConfigurationError):
        ClientSecurity(tls_cert="c.crt", tls_key="c.key")


def test_unreadable_certificate_names_the_file(tmp_path: Path) -> None:
    doors = ServerSecurity(str(tmp_path / "missing.crt"), str(tmp_path / "missing.key"))
    with pytest.raises(ConfigurationError, match="missing"):
        doors.credentials()
