"""The embedder over real gRPC: contract, status codes, health, both reflections, shutdown."""

from __future__ import annotations

import io
import signal
import subprocess
import sys
from pathlib import Path

import grpc
import numpy as np
import open_clip
import pytest
import torch
from google.protobuf import descriptor_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2
from PIL import Image

from devstack import servers
from devstack.ports import free_port
from embedder_service.client import EmbedderClient
from fashionrag.errors import InvalidArgument, Unavailable
from fashionrag.v1 import embedder_pb2, embedder_pb2_grpc
from tests.rich_status import details

pytestmark = pytest.mark.integration


def jpeg(color: tuple[int, int, int], size: tuple[int, int] = (64, 48)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, "JPEG")
    return out.getvalue()


@pytest.fixture()
def stub(embedder: servers.Server) -> embedder_pb2_grpc.EmbedderServiceStub:
    return embedder_pb2_grpc.EmbedderServiceStub(grpc.insecure_channel(embedder.address))


def test_model_info_describes_the_loaded_model(embedder_client: EmbedderClient) -> None:
    info = embedder_client.model_info()
    assert (info.model_name, info.pretrained, info.dimension, info.device) == (
        "tiny-clip",
        "none",
        32,
        "cpu",
    )
    assert info.max_batch_items > 0


def test_text_vector_equals_open_clips_own_for_the_same_seed(
    embedder_client: EmbedderClient,
) -> None:
    open_clip.add_model_config(servers.TINY_MODEL)
    torch.manual_seed(0)
    clip, _, _ = open_clip.create_model_and_transforms(servers.TINY_MODEL.stem)
    clip.eval()
    tokens = open_clip.get_tokenizer(servers.TINY_MODEL.stem)(["red tops"])
    with torch.inference_mode():
        expected = torch.nn.functional.normalize(clip.encode_text(tokens), dim=-1)[0].numpy()
    np.testing.assert_allclose(embedder_client.embed_text("red tops"), expected, atol=1e-5)


def test_bad_image_fails_only_its_item(embedder_client: EmbedderClient) -> None:
    outcomes = embedder_client.embed_images(
        [("a", jpeg((255, 0, 0))), ("bad", b"not an image"), ("c", jpeg((0, 0, 255)))]
    )
    assert [o.id for o in outcomes] == ["a", "bad", "c"]
    assert outcomes[0].vector is not None and outcomes[2].vector is not None
    assert outcomes[1].vector is None and "cannot identify" in (outcomes[1].error or "")
    assert (outcomes[0].width, outcomes[0].height) == (64, 48)
    assert not np.allclose(outcomes[0].vector, outcomes[2].vector)


def test_item_error_carries_invalid_argument_code(
    stub: embedder_pb2_grpc.EmbedderServiceStub,
) -> None:
    response = stub.EmbedImages(
        embedder_pb2.EmbedImagesRequest(images=[embedder_pb2.ImageInput(id="x", data=b"junk")])
    )
    assert response.results[0].error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]


def test_same_image_same_vector_in_any_batch(embedder_client: EmbedderClient) -> None:
    image = jpeg((10, 200, 30))
    alone = embedder_client.embed_images([image])[0].vector
    batched = embedder_client.embed_images([jpeg((1, 2, 3)), image])[1].vector
    assert alone is not None and batched is not None
    np.testing.assert_allclose(alone, batched, atol=1e-5)


@pytest.mark.parametrize(
    ("request_", "message", "field", "reason"),
    [
        (embedder_pb2.EmbedTextsRequest(), "no texts given", "texts", "INVALID_ARGUMENT"),
        (
            embedder_pb2.EmbedTextsRequest(texts=["ok", "  "]),
            "text 1 is empty",
            "texts[1]",
            "INVALID_ARGUMENT",
        ),
        (
            embedder_pb2.EmbedTextsRequest(texts=["x"] * 1000),
            "at most 256",
            "texts",
            "TOO_MANY_ITEMS",
        ),
    ],
)
def test_bad_text_requests_are_invalid_argument_naming_the_field(
    stub: embedder_pb2_grpc.EmbedderServiceStub,
    request_: embedder_pb2.EmbedTextsRequest,
    message: str,
    field: str,
    reason: str,
) -> None:
    with pytest.raises(grpc.RpcError) as info:
        stub.EmbedTexts(request_)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in (info.value.details() or "")
    found = details(info.value)
    assert (found.fields, found.reason, found.domain) == ([field], reason, "fashionrag.dev")


def test_empty_image_request_is_invalid_argument(
    stub: embedder_pb2_grpc.EmbedderServiceStub,
) -> None:
    with pytest.raises(grpc.RpcError) as info:
        stub.EmbedImages(embedder_pb2.EmbedImagesRequest())
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert details(info.value).fields == ["images"]


def test_too_many_boxes_names_the_image(stub: embedder_pb2_grpc.EmbedderServiceStub) -> None:
    boxes = [embedder_pb2.Box(x0=0, y0=0, x1=10, y1=10)] * 100  # over 64, under 256 items
    ok = embedder_pb2.ImageInput(id="ok", data=jpeg((1, 2, 3)))
    image = embedder_pb2.ImageInput(id="a", data=jpeg((1, 2, 3)), boxes=boxes)
    with pytest.raises(grpc.RpcError) as info:
        stub.EmbedImages(embedder_pb2.EmbedImagesRequest(images=[ok, image]))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert details(info.value).fields == ["images[1].boxes"]


def test_corrupt_request_bytes_are_invalid_argument(embedder: servers.Server) -> None:
    with grpc.insecure_channel(embedder.address) as channel:
        raw = channel.unary_unary(
            "/fashionrag.v1.EmbedderService/EmbedTexts",
            request_serializer=None,
            response_deserializer=None,
        )
        with pytest.raises(grpc.RpcError) as info:
            raw(b"\xff\xff\xff\xff\x0f", timeout=30)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert details(info.value).reason == "MALFORMED_REQUEST"


def test_client_splits_batches_over_the_server_limit(embedder_client: EmbedderClient) -> None:
    texts = [f"item {i}" for i in range(600)]
    vectors = embedder_client.embed_texts(texts)
    assert vectors.shape == (600, 32)
    np.testing.assert_allclose(vectors[599], embedder_client.embed_text("item 599"), atol=1e-5)


def test_client_raises_domain_errors_with_the_details(embedder_client: EmbedderClient) -> None:
    with pytest.raises(InvalidArgument, match="empty") as info:
        embedder_client.embed_texts([""])
    assert [v.field for v in info.value.violations] == ["texts[0]"]
    with pytest.raises(InvalidArgument) as undecodable:
        embedder_client.embed_image(b"not an image")
    assert undecodable.value.reason == "INVALID_IMAGE"
    assert [v.field for v in undecodable.value.violations] == ["image"]


def test_client_names_the_embedder_when_it_is_down() -> None:
    with (
        EmbedderClient(f"127.0.0.1:{free_port()}", timeout=5) as client,
        pytest.raises(Unavailable) as info,
    ):
        client.wait_until_ready(timeout=1)
    assert info.value.reason == "BACKEND_UNAVAILABLE"
    assert info.value.metadata == {"backend": "embedder"}


def test_long_text_is_flagged_truncated(stub: embedder_pb2_grpc.EmbedderServiceStub) -> None:
    response = stub.EmbedTexts(embedder_pb2.EmbedTextsRequest(texts=["dress", "word " * 40]))
    assert [r.truncated for r in response.results] == [False, True]


def test_health_reports_the_service_by_its_full_name(embedder: servers.Server) -> None:
    health = health_pb2_grpc.HealthStub(grpc.insecure_channel(embedder.address))
    for service in ("", "fashionrag.v1.EmbedderService"):
        status = health.Check(health_pb2.HealthCheckRequest(service=service)).status
        assert status == health_pb2.HealthCheckResponse.SERVING


def reflect(
    address: str, version: str, *requests: reflection_pb2.ServerReflectionRequest
) -> list[reflection_pb2.ServerReflectionResponse]:
    """A raw call of `grpc.reflection.<version>.ServerReflection`, as grpcurl makes it. v1's
    messages are v1alpha's field for field (grpc-proto), so v1alpha's classes encode both."""
    with grpc.insecure_channel(address) as channel:
        call = channel.stream_stream(
            f"/grpc.reflection.{version}.ServerReflection/ServerReflectionInfo",
            request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
            response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
        )
        return list(call(iter(requests), timeout=30))


@pytest.mark.parametrize("version", ["v1", "v1alpha"])
def test_reflection_lists_and_describes_the_services_in_both_versions(
    embedder: servers.Server, version: str
) -> None:
    listed, described = reflect(
        embedder.address,
        version,
        reflection_pb2.ServerReflectionRequest(list_services=""),
        reflection_pb2.ServerReflectionRequest(
            file_containing_symbol=f"grpc.reflection.{version}.ServerReflection"
        ),
    )
    names = {s.name for s in listed.list_services_response.service}
    assert {
        "fashionrag.v1.EmbedderService",
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
    } <= names
    files = [
        descriptor_pb2.FileDescriptorProto.FromString(raw)
        for raw in described.file_descriptor_response.file_descriptor_proto
    ]
    assert [(f.package, [s.name for s in f.service]) for f in files] == [
        (f"grpc.reflection.{version}", ["ServerReflection"])
    ]
    method = files[0].service[0].method[0]
    assert method.input_type == f".grpc.reflection.{version}.ServerReflectionRequest"


def test_reflection_v1_describes_the_embedder_for_a_v1_only_tool(embedder: servers.Server) -> None:
    (response,) = reflect(
        embedder.address,
        "v1",
        reflection_pb2.ServerReflectionRequest(
            file_containing_symbol="fashionrag.v1.EmbedderService"
        ),
    )
    files = {
        f.name: f
        for f in map(
            descriptor_pb2.FileDescriptorProto.FromString,
            response.file_descriptor_response.file_descriptor_proto,
        )
    }
    embedder_file = files["fashionrag/v1/embedder.proto"]
    assert embedder_file.options.java_package == "dev.fashionrag.v1"
    (service,) = embedder_file.service
    assert {m.name: m.output_type for m in service.method}["GetModelInfo"] == (
        ".fashionrag.v1.GetModelInfoResponse"
    )


def test_sigterm_stops_cleanly(logs_dir: Path) -> None:
    server = servers.start_embedder(logs_dir / "embedder-sigterm.log")
    assert server.stop(signal.SIGTERM) == 0
    assert "embedder stopped" in server.log()


def test_unreachable_weights_fail_with_the_offline_way(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "embedder_service",
            "--port",
            "0",
            "--model",
            "ViT-B-32",
            "--pretrained",
            "laion2b_s34b_b79k",
            "--cache-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=180,
        env=servers.child_env(),
    )
    assert result.returncode == 2
    assert "--pretrained none" in result.stderr
    assert "local checkpoint" in result.stderr
