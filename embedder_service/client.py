"""The client library of the embedder: what every other service (and any caller) imports.

It spreads calls over every replica behind a DNS name (`dns:///embedder:50051`) with gRPC's
round_robin policy, skips replicas whose health is NOT_SERVING (client-side health checking),
retries UNAVAILABLE and RESOURCE_EXHAUSTED with gRPC's jittered exponential backoff, splits
batches to the server's limits, and returns numpy arrays. Errors come out as fashionrag's domain
errors, translated in one place.

    from embedder_service.client import EmbedderClient

    with EmbedderClient("127.0.0.1:50051") as embedder:
        vectors = embedder.embed_texts(["red tops", "a long dress"])   # (2, D) float32
        print(embedder.model_info().model_name, vectors.shape)

        # A photo and, per garment box (x0, y0, x1, y1 in its pixels), a vector and colours:
        (photo,) = embedder.embed_images([ImageRequest("1", jpeg, [(10, 20, 110, 220)])])
        photo.vector, photo.regions[0].vector, photo.regions[0].colour
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from fashionrag.errors import FashionragError, InvalidArgument
from fashionrag.grpc_client import PATIENT, CallPolicy, GrpcClient, translate_errors
from fashionrag.grpc_options import MAX_MESSAGE_BYTES
from fashionrag.grpc_security import PLAINTEXT, ClientSecurity
from fashionrag.model_info import ModelInfo
from fashionrag.v1 import embedder_pb2, embedder_pb2_grpc

SERVICE_NAME = embedder_pb2.DESCRIPTOR.services_by_name["EmbedderService"].full_name

# Leave room for the message framing around the image bytes.
_MAX_REQUEST_BYTES = MAX_MESSAGE_BYTES - 1024 * 1024


BoxCoords = tuple[float, float, float, float]


@dataclass(frozen=True)
class ImageRequest:
    """An image to embed with regions of it: `boxes` are (x0, y0, x1, y1) in the original
    image's pixels, Fashionpedia's layout; each gets its own vector and colour names."""

    id: str
    data: bytes
    boxes: Sequence[BoxCoords] = ()


@dataclass(frozen=True)
class RegionEmbedding:
    """One box's outcome: `vector` (with the garment's primary `colour` and secondary `colour2`,
    palette names, "" for none) is set, or `error` says why not."""

    vector: np.ndarray | None
    error: str | None
    colour: str = ""
    colour2: str = ""


@dataclass(frozen=True)
class ImageEmbedding:
    """One image's outcome: `vector` is set, or `error` says why not; `regions` has one outcome
    per requested box, in order (none when the image failed)."""

    id: str
    vector: np.ndarray | None
    error: str | None
    width: int = 0
    height: int = 0
    regions: tuple[RegionEmbedding, ...] = ()


ImageLike = bytes | tuple[str, bytes] | ImageRequest


def _as_input(item: ImageLike, index: int) -> embedder_pb2.ImageInput:
    if isinstance(item, ImageRequest):
        boxes = [embedder_pb2.Box(x0=b[0], y0=b[1], x1=b[2], y1=b[3]) for b in item.boxes]
        return embedder_pb2.ImageInput(id=item.id, data=item.data, boxes=boxes)
    if isinstance(item, tuple):
        return embedder_pb2.ImageInput(id=item[0], data=item[1])
    return embedder_pb2.ImageInput(id=str(index), data=item)


def _region(result: embedder_pb2.RegionResult) -> RegionEmbedding:
    if result.HasField("embedding"):
        vector = np.array(result.embedding.values, dtype=np.float32)
        return RegionEmbedding(vector, None, result.colour, result.colour2)
    return RegionEmbedding(None, result.error.message)


def _image(result: embedder_pb2.ImageResult) -> ImageEmbedding:
    if result.HasField("embedding"):
        vector = np.array(result.embedding.values, dtype=np.float32)
        regions = tuple(_region(r) for r in result.regions)
        return ImageEmbedding(result.id, vector, None, result.width, result.height, regions)
    return ImageEmbedding(result.id, None, result.error.message)


class EmbedderClient(GrpcClient):
    """A connection to one embedder address, or to every replica behind a DNS name.

    Args:
        target: "host:port", or "dns:///name:port" to use every address the name resolves to.
        timeout: the deadline of each call, in seconds.
        security: TLS (mutual TLS) and the bearer token to send (default: plaintext, none).
        policy: PATIENT (calls wait for a replica: the indexer) or FAIL_FAST (UNAVAILABLE at
            once while none is up: the query service).
    """

    service_name = SERVICE_NAME
    label = "embedder"
    backend = "embedder"
    # A full queue is worth a retry too: another replica, or a moment later, has room.
    retryable = ("UNAVAILABLE", "RESOURCE_EXHAUSTED")

    def __init__(
        self,
        target: str,
        timeout: float = 60.0,
        policy: CallPolicy = PATIENT,
        *,
        security: ClientSecurity = PLAINTEXT,
    ) -> None:
        super().__init__(target, timeout, policy, security=security)
        self._stub = embedder_pb2_grpc.EmbedderServiceStub(self.channel)
        self._info: ModelInfo | None = None

    @translate_errors
    def model_info(self, refresh: bool = False) -> ModelInfo:
        """The embedder's model (asked once, then remembered unless `refresh`)."""
        if self._info is None or refresh:
            response = self._stub.GetModelInfo(
                embedder_pb2.GetModelInfoRequest(), timeout=self.timeout
            )
            self._info = ModelInfo.from_message(response.model)
        return self._info

    @translate_errors
    def embed_texts(self, texts: Sequence[str], timeout: float | None = None) -> np.ndarray:
        """Embed texts; returns a (len(texts), dimension) float32 array, L2-normalised rows.

        Args:
            texts: the texts.
            timeout: this call's deadline in seconds (default: the client's).

        Raises:
            InvalidArgument: no text, or an empty one.
        """
        if not texts:
            return np.zeros((0, self.model_info().dimension), dtype=np.float32)
        limit = self.model_info().max_batch_items
        parts = []
        for start in range(0, len(texts), limit):
            response = self._stub.EmbedTexts(
                embedder_pb2.EmbedTextsRequest(texts=list(texts[start : start + limit])),
                timeout=timeout or self.timeout,
            )
            parts.append(np.array([r.embedding.values for r in response.results], dtype=np.float32))
        return np.concatenate(parts)

    def embed_text(self, text: str, timeout: float | None = None) -> np.ndarray:
        """Embed one text; returns its (dimension,) vector."""
        return self.embed_texts([text], timeout)[0]

    def _chunks(
        self, inputs: list[embedder_pb2.ImageInput]
    ) -> Iterator[list[embedder_pb2.ImageInput]]:
        # The server counts each image and each of its boxes as one item.
        limit = self.model_info().max_batch_items
        chunk: list[embedder_pb2.ImageInput] = []
        size = items = 0
        for item in inputs:
            item_size = item.ByteSize() + 16
            item_count = 1 + len(item.boxes)
            if chunk and (items + item_count > limit or size + item_size > _MAX_REQUEST_BYTES):
                yield chunk
                chunk, size, items = [], 0, 0
            chunk.append(item)
            size += item_size
            items += item_count
        if chunk:
            yield chunk

    @translate_errors
    def embed_images(
        self, images: Sequence[ImageLike], timeout: float | None = None
    ) -> list[ImageEmbedding]:
        """Embed encoded images, given as bytes, (id, bytes) or ImageRequest (with boxes); one
        outcome per image, in order.

        An image that cannot be decoded gets an `error` and no vector; the others are embedded.
        A box that is empty, not finite or outside its image gets an `error` in its region; the
        image and its other boxes are embedded. `timeout` is each request's deadline in seconds
        (default: the client's).

        Raises:
            InvalidArgument: an image carries more boxes than the server accepts.
        """
        inputs = [_as_input(item, i) for i, item in enumerate(images)]
        outcomes: list[ImageEmbedding] = []
        for chunk in self._chunks(inputs):
            response = self._stub.EmbedImages(
                embedder_pb2.EmbedImagesRequest(images=chunk), timeout=timeout or self.timeout
            )
            outcomes.extend(_image(r) for r in response.results)
        return outcomes

    def embed_image(self, data: bytes, timeout: float | None = None) -> np.ndarray:
        """Embed one encoded image; returns its vector.

        Raises:
            InvalidArgument: the image cannot be decoded (the message says why).
        """
        (outcome,) = self.embed_images([data], timeout)
        if outcome.vector is None:
            raise InvalidArgument(f"image: {outcome.error}", field="image", reason="INVALID_IMAGE")
        return outcome.vector


__all__ = [
    "EmbedderClient",
    "FashionragError",
    "ImageEmbedding",
    "ImageRequest",
    "ModelInfo",
    "RegionEmbedding",
]
