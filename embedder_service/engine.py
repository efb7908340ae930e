"""The embedder's core, free of gRPC: validates requests, decodes images in a worker pool and
runs the model off the event loop."""

from __future__ import annotations

import asyncio
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from embedder_service.images import decode_image
from embedder_service.model import EmbeddingModel
from embedder_service.settings import EmbedderSettings
from fashionrag.errors import FashionragError, InvalidArgument

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TextVector:
    """The vector of one text."""

    vector: np.ndarray
    truncated: bool


@dataclass(frozen=True)
class ImageOutcome:
    """The vector of one image, or why it has none."""

    id: str
    vector: np.ndarray | None = None
    error: FashionragError | None = None
    width: int = 0
    height: int = 0


@dataclass(frozen=True)
class _Decoded:
    tensor: Any
    width: int
    height: int


class EmbedEngine:
    """Embeds texts and images with one model, within the service's limits."""

    def __init__(self, model: EmbeddingModel, settings: EmbedderSettings) -> None:
        self.model = model
        self.settings = settings
        # One thread runs the model: a forward pass already uses every core through torch's own
        # thread pool, and two at once would only contend. Keeping it off the event loop lets
        # the server accept and decode other requests meanwhile.
        self._model_thread = ThreadPoolExecutor(1, thread_name_prefix="model")
        # Pillow releases the GIL while decoding and resizing, so decode threads run in
        # parallel with each other and with the model.
        workers = settings.decode_workers or os.cpu_count() or 1
        self._decode_pool = ThreadPoolExecutor(workers, thread_name_prefix="decode")

    def close(self) -> None:
        """Stop the worker threads (after the server has drained)."""
        self._model_thread.shutdown(wait=True)
        self._decode_pool.shutdown(wait=True)

    def _check_count(self, what: str, n: int) -> None:
        if n == 0:
            raise InvalidArgument(
                f"no {what} given; send between 1 and {self.settings.max_batch_items}"
            )
        if n > self.settings.max_batch_items:
            raise InvalidArgument(
                f"{n} {what} in one request; at most {self.settings.max_batch_items} are "
                "accepted (the client splits larger batches)"
            )

    async def embed_texts(self, texts: list[str]) -> list[TextVector]:
        """Embed texts, in order.

        Raises:
            InvalidArgument: no texts, too many, or an empty or overlong text.
        """
        self._check_count("texts", len(texts))
        for i, text in enumerate(texts):
            if not text.strip():
                raise InvalidArgument(f"text {i} is empty; every text needs a non-blank string")
            if len(text) > self.settings.max_text_chars:
                raise InvalidArgument(
                    f"text {i} has {len(text)} characters; at most "
                    f"{self.settings.max_text_chars} are accepted"
                )
        loop = asyncio.get_running_loop()
        vectors, truncated = await loop.run_in_executor(
            self._model_thread, self.model.embed_texts, texts
        )
        return [TextVector(v, t) for v, t in zip(vectors, truncated, strict=True)]

    def _decode(self, data: bytes) -> _Decoded:
        image = decode_image(data, self.settings.max_image_pixels)
        return _Decoded(self.model.preprocess(image), image.width, image.height)

    async def embed_images(self, items: list[tuple[str, bytes]]) -> list[ImageOutcome]:
        """Embed (id, encoded bytes) pairs, in order; a bad image fails only its own item.

        Raises:
            InvalidArgument: no images, or too many.
        """
        self._check_count("images", len(items))
        loop = asyncio.get_running_loop()
        decoded = await asyncio.gather(
            *(loop.run_in_executor(self._decode_pool, self._decode, data) for _, data in items),
            return_exceptions=True,
        )
        good = [i for i, d in enumerate(decoded) if isinstance(d, _Decoded)]
        vectors: np.ndarray | None = None
        if good:
            tensors = [decoded[i].tensor for i in good]  # type: ignore[union-attr]
            vectors = await loop.run_in_executor(
                self._model_thread, self.model.embed_images, tensors
            )
        outcomes: list[ImageOutcome] = []
        row = 0
        for (item_id, _), result in zip(items, decoded, strict=True):
            if isinstance(result, _Decoded):
                assert vectors is not None
                outcomes.append(
                    ImageOutcome(item_id, vectors[row], None, result.width, result.height)
                )
                row += 1
            elif isinstance(result, FashionragError):
                log.info("image %r refused: %s", item_id, result)
                outcomes.append(ImageOutcome(item_id, error=result))
            else:
                log.error("image %r failed unexpectedly", item_id, exc_info=result)
                outcomes.append(
                    ImageOutcome(item_id, error=InvalidArgument(f"cannot process image: {result}"))
                )
        return outcomes
