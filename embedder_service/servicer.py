"""The EmbedderService gRPC servicer: protobuf in, the engine's plain Python, protobuf out."""

from __future__ import annotations

import grpc

from embedder_service.engine import EmbedEngine, ImageItem, ImageOutcome, RegionOutcome
from fashionrag.errors import FashionragError, map_errors
from fashionrag.v1 import embedder_pb2, embedder_pb2_grpc


def _item_error(error: FashionragError) -> embedder_pb2.ItemError:
    return embedder_pb2.ItemError(code=error.grpc_code.value[0], message=str(error))


def _region_result(outcome: RegionOutcome) -> embedder_pb2.RegionResult:
    if outcome.vector is not None:
        return embedder_pb2.RegionResult(
            embedding=embedder_pb2.Embedding(values=outcome.vector.tolist()),
            colour=outcome.colour,
            colour2=outcome.colour2,
        )
    assert outcome.error is not None
    return embedder_pb2.RegionResult(error=_item_error(outcome.error))


def _image_result(outcome: ImageOutcome) -> embedder_pb2.ImageResult:
    if outcome.vector is not None:
        return embedder_pb2.ImageResult(
            id=outcome.id,
            embedding=embedder_pb2.Embedding(values=outcome.vector.tolist()),
            width=outcome.width,
            height=outcome.height,
            regions=[_region_result(r) for r in outcome.regions],
        )
    assert outcome.error is not None
    return embedder_pb2.ImageResult(id=outcome.id, error=_item_error(outcome.error))


def _image_item(image: embedder_pb2.ImageInput) -> ImageItem:
    return ImageItem(image.id, image.data, [(b.x0, b.y0, b.x1, b.y1) for b in image.boxes])


class EmbedderServicer(embedder_pb2_grpc.EmbedderServiceServicer):
    """Thin: every rule lives in the engine."""

    def __init__(self, engine: EmbedEngine) -> None:
        self.engine = engine

    @map_errors
    async def EmbedTexts(
        self, request: embedder_pb2.EmbedTextsRequest, context: grpc.aio.ServicerContext
    ) -> embedder_pb2.EmbedTextsResponse:
        results = await self.engine.embed_texts(list(request.texts))
        return embedder_pb2.EmbedTextsResponse(
            results=[
                embedder_pb2.TextResult(
                    embedding=embedder_pb2.Embedding(values=r.vector.tolist()),
                    truncated=r.truncated,
                )
                for r in results
            ]
        )

    @map_errors
    async def EmbedImages(
        self, request: embedder_pb2.EmbedImagesRequest, context: grpc.aio.ServicerContext
    ) -> embedder_pb2.EmbedImagesResponse:
        outcomes = await self.engine.embed_images([_image_item(im) for im in request.images])
        return embedder_pb2.EmbedImagesResponse(results=[_image_result(o) for o in outcomes])

    @map_errors
    async def GetModelInfo(
        self, request: embedder_pb2.GetModelInfoRequest, context: grpc.aio.ServicerContext
    ) -> embedder_pb2.GetModelInfoResponse:
        model = self.engine.model.description
        served = model.served_with(self.engine.settings.max_batch_items)
        return embedder_pb2.GetModelInfoResponse(model=served.to_message())
