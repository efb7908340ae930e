"""The embedder's core, free of gRPC: validates requests, decodes images in a worker pool (where
each box of an image is cropped and its colours named), and batches the model work of concurrent
requests (see batcher.py) off the event loop."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from embedder_service import regions
from embedder_service.batcher import DynamicBatcher
from embedder_service.garment_colour import garment_colours
from embedder_service.images import check_header, decode_image, decode_reduced, reduced
from embedder_service.metrics import EmbedderMetrics
from embedder_service.model import EmbeddingModel, OpenClipModel
from embedder_service.resources import PixelBudget, lower_thread_priority, trim_heap
from embedder_service.settings import EmbedderSettings
from fashionrag.errors import FashionragError, InvalidArgument

log = logging.getLogger(__name__)

# A decode of at least this many pixels hands the freed memory back to the system when it ends
# (see resources.trim_heap): the photos the service lives on (Fashionpedia's, about 1 Mpx) never
# pay for the trim, while each image that can leave tens of MB behind does.
TRIM_PIXELS = 4_000_000


@dataclass(frozen=True)
class TextVector:
    """The vector of one text."""

    vector: np.ndarray
    truncated: bool


@dataclass(frozen=True)
class ImageItem:
    """One image to embed: its id, its encoded bytes, and boxes (x0, y0, x1, y1) in its
    original pixels to embed too."""

    id: str
    data: bytes
    boxes: Sequence[Sequence[float]] = ()


@dataclass(frozen=True)
class RegionOutcome:
    """The vector and colour names of one box, or why it has none."""

    vector: np.ndarray | None = None
    error: FashionragError | None = None
    colour: str = ""
    colour2: str = ""


@dataclass(frozen=True)
class ImageOutcome:
    """The vector of one image and of its boxes, or why it has none."""

    id: str
    vector: np.ndarray | None = None
    error: FashionragError | None = None
    width: int = 0
    height: int = 0
    regions: tuple[RegionOutcome, ...] = ()


@dataclass(frozen=True)
class _Crop:
    tensor: Any
    colour: str
    colour2: str


@dataclass(frozen=True)
class _Decoded:
    tensor: Any
    width: int
    height: int
    regions: tuple[_Crop | FashionragError, ...] = ()

    def tensors(self) -> list[Any]:
        """The whole image's input, then each good crop's, in order."""
        return [self.tensor, *(r.tensor for r in self.regions if isinstance(r, _Crop))]


class EmbedEngine:
    """Embeds texts and images with one model, within the service's limits.

    Args:
        model: the loaded model.
        settings: the service's limits and batching settings.
        metrics: where the batchers and item errors are recorded.
        model_thread: the one thread that runs the model: the one that loaded it (see
            `load`). The engine shuts it down when it closes.
    """

    def __init__(
        self,
        model: EmbeddingModel,
        settings: EmbedderSettings,
        model_thread: ThreadPoolExecutor,
        metrics: EmbedderMetrics | None = None,
    ) -> None:
        self.model = model
        self.settings = settings
        self.metrics = metrics or EmbedderMetrics()
        # One thread runs the model: a forward pass already uses every core through torch's own
        # thread pool, and two at once would only contend. It keeps the event loop free to
        # accept, decode and batch the next requests meanwhile.
        self._model_thread = model_thread
        # Pillow releases the GIL while decoding and resizing, so these threads prepare the next
        # batch while the model runs the current one. They run at a lower CPU priority: when a
        # burst of large images wants every core, the model thread still gets them first, so
        # the texts waiting on it keep their latency, and images lose nothing on an idle machine.
        workers = settings.decode_workers or os.cpu_count() or 1
        lower_priority = lower_thread_priority(settings.decode_nice)

        def start_decode_thread() -> None:
            lower_priority()
            model.start_helper_thread()

        self._decode_pool = ThreadPoolExecutor(
            workers, thread_name_prefix="decode", initializer=start_decode_thread
        )
        # Pixels being decoded at once, summed over images: one caller's burst of huge pictures
        # decodes one or two at a time (bounding memory) instead of filling every worker.
        self._budget = PixelBudget(settings.decode_pixel_budget or settings.max_image_pixels)
        # Reduced decoding keeps at least twice the model's input side (Pillow's thumbnail rule):
        # the vectors stay within cosine 0.999 of a full decode (tests/embedder_service/
        # test_engine.py checks it on photos large enough to be reduced).
        self._min_side = 2 * model.description.image_size if settings.jpeg_draft else 0
        # Texts and images batch separately: they run through different towers.
        self._texts: DynamicBatcher[str, tuple[np.ndarray, bool]] = self._batcher(
            "texts", self._run_texts
        )
        self._images: DynamicBatcher[Any, np.ndarray] = self._batcher("images", self._run_images)

    @classmethod
    def load(
        cls, settings: EmbedderSettings, metrics: EmbedderMetrics | None = None
    ) -> EmbedEngine:
        """The model that `settings` names, loaded on the thread that will run it, in an engine.

        torch's OpenMP threads belong to the thread that first runs parallel work: the load
        (whose timed text passes choose the text thread count) and every later pass share one
        team that way. Once libgomp manages more threads than there are cores it stops spinning
        between parallel regions everywhere, and a short text is about a hundred regions
        microseconds apart: with a second team a ViT-B-32 bf16 text took 21 ms instead of 12.5
        on two cores.

        Raises:
            ConfigurationError: the model cannot be loaded (see `OpenClipModel.load`).
        """
        model_thread = ThreadPoolExecutor(1, thread_name_prefix="model")
        try:
            model = model_thread.submit(OpenClipModel.load, settings).result()
            return cls(model, settings, model_thread, metrics)
        except BaseException:
            model_thread.shutdown(wait=False)
            raise

    def _batcher(self, kind: str, run: Any) -> Any:
        return DynamicBatcher(
            kind,
            run,
            self._model_thread,
            max_batch_size=self.settings.max_batch_size,
            max_delay_s=self.settings.max_delay_ms / 1000,
            lone_waits=self.settings.fixed_delay,
            max_queue=self.settings.max_queue,
            metrics=self.metrics,
        )

    async def close(self) -> None:
        """Stop the batchers and the worker threads (after the server has drained)."""
        await self._texts.stop()
        await self._images.stop()
        self._model_thread.shutdown(wait=True)
        self._decode_pool.shutdown(wait=True)

    def _run_texts(self, texts: list[str], company: bool) -> list[tuple[np.ndarray, bool]]:
        vectors, truncated = self.model.embed_texts(texts, company=company)
        return list(zip(vectors, truncated, strict=True))

    def _run_images(self, tensors: list[Any], company: bool) -> list[np.ndarray]:
        return list(self.model.embed_images(tensors))

    def _check_count(self, what: str, n: int, boxes: int = 0) -> None:
        limit = self.settings.max_batch_items
        if n == 0:
            raise InvalidArgument(f"no {what} given; send between 1 and {limit}", field=what)
        if n + boxes > limit:
            counted = f"{n} {what} and {boxes} boxes" if boxes else f"{n} {what}"
            rule = "items (each image and each box counts as one)" if boxes else "are"
            raise InvalidArgument(
                f"{counted} in one request; at most {limit} {rule} accepted (the client splits "
                "larger batches)",
                field=what,
                reason="TOO_MANY_ITEMS",
                metadata={"max_batch_items": str(limit)},
            )

    def _check_boxes(self, items: Sequence[ImageItem]) -> None:
        limit = self.settings.max_boxes_per_image
        for i, item in enumerate(items):
            if len(item.boxes) > limit:
                raise InvalidArgument(
                    f"image {i} ({item.id!r}) has {len(item.boxes)} boxes; at most {limit} per "
                    "image are accepted (--max-boxes-per-image)",
                    field=f"images[{i}].boxes",
                    reason="TOO_MANY_ITEMS",
                    metadata={"max_boxes_per_image": str(limit)},
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
                raise InvalidArgument(
                    f"text {i} is empty; every text needs a non-blank string", field=f"texts[{i}]"
                )
            if len(text) > self.settings.max_text_chars:
                raise InvalidArgument(
                    f"text {i} has {len(text)} characters; at most "
                    f"{self.settings.max_text_chars} are accepted",
                    field=f"texts[{i}]",
                )
        results = await self._texts.submit(texts)
        return [TextVector(vector, truncated) for vector, truncated in results]

    def _decode(self, item: ImageItem) -> _Decoded:
        """Decode one image into the model's input (runs in the decode workers)."""
        if item.boxes:
            return self._decode_with_regions(item)
        data, max_pixels = item.data, self.settings.max_image_pixels
        if self.settings.gpu_decode:
            check_header(data, max_pixels)
            on_device = self.model.decode_on_device(data)
            if on_device is not None:
                return _Decoded(*on_device)
        image, width, height = decode_reduced(data, max_pixels, self._min_side)
        return _Decoded(self.model.preprocess(image), width, height)

    def _decode_and_trim(self, item: ImageItem, pixels: int) -> _Decoded:
        """Decode one image; after a large one, hand the memory its pixels took back (runs in
        the decode workers; the full-size pixels are freed when `_decode` returns)."""
        decoded = self._decode(item)
        if pixels >= TRIM_PIXELS:
            trim_heap()
        return decoded

    async def _decode_admitted(self, item: ImageItem) -> _Decoded:
        """Decode one image in the workers once its pixels fit in the budget."""
        # Reading the header is microseconds (Pillow parses no pixel data), so it runs on the
        # loop: the budget needs the size before the image may take a worker.
        _, width, height = check_header(item.data, self.settings.max_image_pixels)
        pixels = width * height
        await self._budget.acquire(pixels)
        loop = asyncio.get_running_loop()
        job = self._decode_pool.submit(self._decode_and_trim, item, pixels)
        # Released when the work really ends (or is cancelled before it starts), not when a
        # caller who gave up stops waiting for it.
        job.add_done_callback(lambda _: loop.call_soon_threadsafe(self._budget.release, pixels))
        return await asyncio.wrap_future(job)

    def _decode_with_regions(self, item: ImageItem) -> _Decoded:
        """Decode one image once into the model's input for the whole image and, per box, its
        crop's input and colour names, or the box's error (runs in the decode workers).

        Pillow decodes here even under --gpu-decode: the crops and the colour names need the
        pixels on the host, and one decode path for regions is the simplest to keep right.
        The crops are cut from the decode (reduced only by a JPEG draft that spares them), the
        whole image's input from it reduced as without boxes, so boxes leave the whole image's
        vector as it is.
        """
        data, max_pixels = item.data, self.settings.max_image_pixels
        _, width, height = check_header(data, max_pixels)
        rects: list[tuple[regions.Box, regions.Box] | FashionragError] = []
        for box in item.boxes:
            try:
                clipped = regions.normalise_box(box, width, height)
            except FashionragError as exc:
                rects.append(exc)
                continue
            rects.append((clipped, regions.crop_rect(clipped, width, height)))
        good = [r[1] for r in rects if isinstance(r, tuple)]
        # A reduced JPEG decode still leaves every crop as many pixels as a whole image gets.
        draft = regions.draft_size(good, width, height, self._min_side)
        image, width, height = decode_image(data, max_pixels, draft)
        original = (width, height)
        crops: list[_Crop | FashionragError] = []
        for rect in rects:
            if not isinstance(rect, tuple):
                crops.append(rect)
                continue
            clipped, cut = rect
            tensor = self.model.preprocess(regions.crop(image, cut, original))
            crops.append(_Crop(tensor, *self._colours(image, clipped, original)))
        whole = self.model.preprocess(reduced(image, self._min_side))
        return _Decoded(whole, width, height, tuple(crops))

    @staticmethod
    def _colours(image: Any, box: regions.Box, original: tuple[int, int]) -> tuple[str, str]:
        try:
            return garment_colours(image, box, original)
        except Exception:
            # The names are an extra: a failure to name them must not cost the box its vector.
            log.exception("cannot name the colours of box %r", box)
            return "", ""

    async def embed_images(
        self, items: Sequence[ImageItem | tuple[str, bytes]]
    ) -> list[ImageOutcome]:
        """Embed images, each given as an ImageItem or (id, encoded bytes), in order; a bad
        image fails only its own item and a bad box only its own region.

        Raises:
            InvalidArgument: no images, too many images and boxes together, or an image with too
                many boxes.
            ResourceExhausted: the queue is full.
        """
        images = [i if isinstance(i, ImageItem) else ImageItem(*i) for i in items]
        self._check_count("images", len(images), sum(len(i.boxes) for i in images))
        self._check_boxes(images)
        decoded = await asyncio.gather(
            *(self._decode_admitted(item) for item in images), return_exceptions=True
        )
        good = [d for d in decoded if isinstance(d, _Decoded)]
        tensors = [t for d in good for t in d.tensors()]
        vectors = iter(await self._images.submit(tensors) if tensors else [])
        outcomes: list[ImageOutcome] = []
        for item, result in zip(images, decoded, strict=True):
            if isinstance(result, _Decoded):
                vector = next(vectors)
                outcomes.append(
                    ImageOutcome(
                        item.id,
                        vector,
                        None,
                        result.width,
                        result.height,
                        tuple(self._region(item.id, r, vectors) for r in result.regions),
                    )
                )
                continue
            if not isinstance(result, FashionragError):
                log.error("image %r failed unexpectedly", item.id, exc_info=result)
                result = InvalidArgument(f"cannot process image: {result}")
            log.info("image %r refused: %s", item.id, result)
            self.metrics.item_errors.labels("images").inc()
            outcomes.append(ImageOutcome(item.id, error=result))
        return outcomes

    def _region(self, image_id: str, crop: _Crop | FashionragError, vectors: Any) -> RegionOutcome:
        if isinstance(crop, _Crop):
            self.metrics.items.labels("regions").inc()
            return RegionOutcome(next(vectors), None, crop.colour, crop.colour2)
        log.info("a box of image %r refused: %s", image_id, crop)
        self.metrics.item_errors.labels("regions").inc()
        return RegionOutcome(error=crop)
