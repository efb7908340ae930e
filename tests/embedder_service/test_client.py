"""The client spreads calls over replicas and keeps away from unhealthy or dead ones."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent import futures

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from devstack import servers
from devstack.ports import free_port
from embedder_service.client import EmbedderClient
from fashionrag.v1 import embedder_pb2, embedder_pb2_grpc

pytestmark = pytest.mark.integration


class CountingReplica(embedder_pb2_grpc.EmbedderServiceServicer):
    """A stand-in replica whose health we can turn: it counts the calls it gets. (A real
    embedder cannot be held NOT_SERVING on demand; that is the fault this one causes.)"""

    def __init__(self) -> None:
        self.calls = 0

    def EmbedTexts(self, request, context):
        self.calls += 1
        vector = embedder_pb2.Embedding(values=[1.0] + [0.0] * 31)
        return embedder_pb2.EmbedTextsResponse(
            results=[embedder_pb2.TextResult(embedding=vector) for _ in request.texts]
        )


class Replica:
    def __init__(self) -> None:
        self.servicer = CountingReplica()
        self.health = health.HealthServicer()
        self.server = grpc.server(futures.ThreadPoolExecutor(4))
        embedder_pb2_grpc.add_EmbedderServiceServicer_to_server(self.servicer, self.server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.set_serving(False)
        self.server.start()

    def set_serving(self, serving: bool) -> None:
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if serving
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        self.health.set("fashionrag.v1.EmbedderService", status)


@pytest.fixture()
def replica() -> Iterator[Replica]:
    r = Replica()
    yield r
    r.server.stop(0)


def test_not_serving_replica_gets_no_calls_until_it_serves(
    embedder: servers.Server, replica: Replica
) -> None:
    target = f"ipv4:{embedder.address},127.0.0.1:{replica.port}"
    with EmbedderClient(target, timeout=10) as client:
        client.model_info()  # asked of the real replica: the stand-in does not serve it
        for i in range(20):
            assert client.embed_texts([f"text {i}"]).shape == (1, 32)
        assert replica.servicer.calls == 0

        replica.set_serving(True)  # health watch streams tell the client at once
        for i in range(40):
            client.embed_texts([f"again {i}"])
            if replica.servicer.calls:
                break
        assert replica.servicer.calls > 0  # round_robin now spreads calls to it


def test_dead_replica_does_not_stall_callers(embedder: servers.Server) -> None:
    dead = f"127.0.0.1:{free_port()}"
    with EmbedderClient(f"ipv4:{embedder.address},{dead}", timeout=3) as client:
        for i in range(10):
            assert client.embed_texts([f"text {i}"]).shape == (1, 32)
