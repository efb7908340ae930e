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
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from fashionrag.errors import FashionragError, InvalidArgument
from fashionrag.grpc_client import GrpcClient, translate_errors
from fashionrag.grpc_options import MAX_MESSAGE_BYTES
from fashionrag.model_info import ModelInfo
from fashionrag.v1 import embedder_pb2, embedder_pb2_grpc

SERVICE_NAME = "fashionrag.v1.Embedder"

# Leave room for the message framing around the image bytes.
_MAX_REQUEST_BYTES = MAX_MESSAGE_BYTES - 1024 * 1024


@dataclass(frozen=True)
class ImageEmbedding:
    """One image's outcome: `vector` is set, or `error` says why not."""

    id: str
    vector: np.ndarray | None
    error: str | None
    width: int = 0
    height: int = 0


def _as_input(item: bytes | tuple[str, bytes], index: int) -> embedder_pb2.ImageInput:
    if isinstance(item, tuple):
        return embedder_pb2.ImageInput(id=item[0], data=item[1])
    return embedder_pb2.ImageInput(id=str(index), data=item)


class EmbedderClient(GrpcClient):
    """A connection to one embedder address, or to every replica behind a DNS name.

    Args:
        target: "host:port", or "dns:///name:port" to use every address the name resolves to.
        timeout: the deadline of each call, in seconds.
    """

    service_name = SERVICE_NAME
    label = "embedder"
    # A full queue is worth a retry too: another replica, or a moment later, has room.
    retryable = ("UNAVAILABLE", "RESOURCE_EXHAUSTED")

    def __init__(self, target: str, timeout: float = 60.0) -> None:
        super().__init__(target, timeout)
        self._stub = embedder_pb2_grpc.EmbedderStub(self.channel)
        self._info: ModelInfo | None = None

    @translate_errors
    def model_info(self, refresh: bool = False) -> ModelInfo:
        """The embedder's model (asked once, then remembered unless `refresh`)."""
        if self._info is None or refresh:
            message = self._stub.GetModelInfo(
                embedder_pb2.GetModelInfoRequest(), timeout=self.timeout
            )
            self._info = ModelInfo.from_message(message)
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
        limit = self.model_info().max_batch_items
        chunk: list[embedder_pb2.ImageInput] = []
        size = 0
        for item in inputs:
            item_size = len(item.data) + len(item.id) + 16
            if chunk and (len(chunk) >= limit or size + item_size > _MAX_REQUEST_BYTES):
                yield chunk
                chunk, size = [], 0
            chunk.append(item)
            size += item_size
        if chunk:
            yield chunk

    @translate_errors
    def embed_images(
        self, images: Sequence[bytes | tuple[str, bytes]], timeout: float | None = None
    ) -> list[ImageEmbedding]:
        """Embed encoded images, given as bytes or (id, bytes); one outcome per image, in order.

        An image that cannot be decoded gets an `error` and no vector; the others are embedded.
        `timeout` is each request's deadline in seconds (default: the client's).
        """
        inputs = [_as_input(item, i) for i, item in enumerate(images)]
        outcomes: list[ImageEmbedding] = []
        for chunk in self._chunks(inputs):
            response = self._stub.EmbedImages(
                embedder_pb2.EmbedImagesRequest(images=chunk), timeout=timeout or self.timeout
            )
            for r in response.results:
                if r.HasField("embedding"):
                    vector = np.array(r.embedding.values, dtype=np.float32)
                    outcomes.append(ImageEmbedding(r.id, vector, None, r.width, r.height))
                else:
                    outcomes.append(ImageEmbedding(r.id, None, r.error.message))
        return outcomes

    def embed_image(self, data: bytes, timeout: float | None = None) -> np.ndarray:
        """Embed one encoded image; returns its vector.

        Raises:
            InvalidArgument: the image cannot be decoded (the message says why).
        """
        (outcome,) = self.embed_images([data], timeout)
        if outcome.vector is None:
            raise InvalidArgument(f"image: {outcome.error}")
        return outcome.vector


__all__ = ["EmbedderClient", "FashionragError", "ImageEmbedding", "ModelInfo"]
