"""The embedder's core, free of gRPC: validates requests, decodes images in a worker pool, and
batches the model work of concurrent requests (see batcher.py) off the event loop."""

from __future__ import annotations

import asyncio
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from embedder_service.batcher import DynamicBatcher
from embedder_service.images import check_header, decode_image
from embedder_service.metrics import EmbedderMetrics
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
    """Embeds texts and images with one model, within the service's limits.

    Args:
        model: the loaded model.
        settings: the service's limits and batching settings.
        metrics: where the batchers and item errors are recorded.
    """

    def __init__(
        self,
        model: EmbeddingModel,
        settings: EmbedderSettings,
        metrics: EmbedderMetrics | None = None,
    ) -> None:
        self.model = model
        self.settings = settings
        self.metrics = metrics or EmbedderMetrics()
        # One thread runs the model: a forward pass already uses every core through torch's own
        # thread pool, and two at once would only contend. It keeps the event loop free to
        # accept, decode and batch the next requests meanwhile.
        self._model_thread = ThreadPoolExecutor(1, thread_name_prefix="model")
        # Pillow releases the GIL while decoding and resizing, so these threads prepare the next
        # batch while the model runs the current one.
        workers = settings.decode_workers or os.cpu_count() or 1
        self._decode_pool = ThreadPoolExecutor(workers, thread_name_prefix="decode")
        # Draft decoding keeps twice the model's input size: the vectors stay within cosine
        # 0.999 of a full decode (tests/embedder_service/test_engine.py checks it).
        self._draft_size = 2 * model.description.image_size if settings.jpeg_draft else 0
        # Texts and images batch separately: they run through different towers.
        self._texts: DynamicBatcher[str, tuple[np.ndarray, bool]] = self._batcher(
            "texts", self._run_texts
        )
        self._images: DynamicBatcher[Any, np.ndarray] = self._batcher("images", self._run_images)

    def _batcher(self, kind: str, run: Any) -> Any:
        return DynamicBatcher(
            kind,
            run,
            self._model_thread,
            max_batch_size=self.settings.max_batch_size,
            max_delay_s=self.settings.max_delay_ms / 1000,
            max_queue=self.settings.max_queue,
            metrics=self.metrics,
        )

    async def close(self) -> None:
        """Stop the batchers and the worker threads (after the server has drained)."""
        await self._texts.stop()
        await self._images.stop()
        self._model_thread.shutdown(wait=True)
        self._decode_pool.shutdown(wait=True)

    def _run_texts(self, texts: list[str]) -> list[tuple[np.ndarray, bool]]:
        vectors, truncated = self.model.embed_texts(texts)
        return list(zip(vectors, truncated, strict=True))

    def _run_images(self, tensors: list[Any]) -> list[np.ndarray]:
        return list(self.model.embed_images(tensors))

    def _check_count(self, what: str, n: int) -> None:
        limit = self.settings.max_batch_items
        if n == 0:
            raise InvalidArgument(f"no {what} given; send between 1 and {limit}")
        if n > limit:
            raise InvalidArgument(
                f"{n} {what} in one request; at most {limit} are accepted (the client splits "
                "larger batches)"
            )

    async def embed_texts(self, texts: list[str]) -> list[TextVector]:
        """Embed texts, in order.

        Raises:
            InvalidArgument: no texts, too many, or an empty or overlong text.
            ResourceExhausted: the queue is full.
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
        results = await self._texts.submit(texts)
        return [TextVector(vector, truncated) for vector, truncated in results]

    def _decode(self, data: bytes) -> _Decoded:
        max_pixels = self.settings.max_image_pixels
        if self.settings.gpu_decode:
            check_header(data, max_pixels)
            on_device = self.model.decode_on_device(data)
            if on_device is not None:
                return _Decoded(*on_device)
        image, width, height = decode_image(data, max_pixels, self._draft_size)
        return _Decoded(self.model.preprocess(image), width, height)

    async def embed_images(self, items: list[tuple[str, bytes]]) -> list[ImageOutcome]:
        """Embed (id, encoded bytes) pairs, in order; a bad image fails only its own item.

        Raises:
            InvalidArgument: no images, or too many.
            ResourceExhausted: the queue is full.
        """
        self._check_count("images", len(items))
        loop = asyncio.get_running_loop()
        decoded = await asyncio.gather(
            *(loop.run_in_executor(self._decode_pool, self._decode, data) for _, data in items),
            return_exceptions=True,
        )
        good = [d for d in decoded if isinstance(d, _Decoded)]
        vectors = iter(await self._images.submit([d.tensor for d in good]) if good else [])
        outcomes: list[ImageOutcome] = []
        for (item_id, _), result in zip(items, decoded, strict=True):
            if isinstance(result, _Decoded):
                outcomes.append(
                    ImageOutcome(item_id, next(vectors), None, result.width, result.height)
                )
                continue
            if not isinstance(result, FashionragError):
                log.error("image %r failed unexpectedly", item_id, exc_info=result)
                result = InvalidArgument(f"cannot process image: {result}")
            log.info("image %r refused: %s", item_id, result)
            self.metrics.item_errors.labels("images").inc()
            outcomes.append(ImageOutcome(item_id, error=result))
        return outcomes
