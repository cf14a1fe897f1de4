"""gRPC face of the embedding stage: proto <-> EmbeddingService, one call per RPC."""

from __future__ import annotations

import grpc

from echo.v1 import common_pb2, embedding_pb2, embedding_pb2_grpc
from services.common.errors import grpc_errors
from services.common.images import encode_png, image_bytes
from services.embedding.core import EmbeddingService


def _vectors(rows: object) -> list[common_pb2.Vector]:
    return [common_pb2.Vector(values=row.tolist()) for row in rows]  # type: ignore[attr-defined]


class EmbeddingServicer(embedding_pb2_grpc.EmbeddingServicer):
    def __init__(self, service: EmbeddingService) -> None:
        self.service = service

    @grpc_errors
    async def EmbedImages(
        self, request: embedding_pb2.EmbedImagesRequest, context: grpc.aio.ServicerContext
    ) -> embedding_pb2.EmbedImagesResponse:
        images = [image_bytes(img, field=f"images[{i}]") for i, img in enumerate(request.images)]
        res = await self.service.embed_images(images, request.return_patch_tokens)
        patches = [
            embedding_pb2.PatchTokens(num_tokens=t.shape[0], dim=t.shape[1], values=t.ravel().tolist())
            for t in res.patch_tokens or []
        ]
        return embedding_pb2.EmbedImagesResponse(
            embeddings=_vectors(res.vectors),
            dim=self.service.dim,
            model_id=self.service.model_id,
            compute_ms=res.compute_ms,
            patch_tokens=patches,
            preprocess_ms=res.preprocess_ms,
        )

    @grpc_errors
    async def EmbedTexts(
        self, request: embedding_pb2.EmbedTextsRequest, context: grpc.aio.ServicerContext
    ) -> embedding_pb2.EmbedTextsResponse:
        res = await self.service.embed_texts(list(request.texts))
        return embedding_pb2.EmbedTextsResponse(
            embeddings=_vectors(res.vectors),
            dim=self.service.dim,
            model_id=self.service.model_id,
            compute_ms=res.compute_ms,
        )

    @grpc_errors
    async def Info(
        self, request: embedding_pb2.EmbeddingInfoRequest, context: grpc.aio.ServicerContext
    ) -> embedding_pb2.EmbeddingInfoResponse:
        encoder = self.service.encoder
        return embedding_pb2.EmbeddingInfoResponse(
            model_id=self.service.model_id,
            dim=self.service.dim,
            texts=encoder.has_text_tower,
            patch_tokens=encoder.has_patch_tokens,
        )

    async def close(self) -> None:
        """Stop the batcher and its worker threads."""
        await self.service.close()

    async def check_health(self) -> None:
        """Embed a real 8x8 image through the whole path (decode, batch, model); raises if that fails."""
        from PIL import Image

        res = await self.service.embed_images([encode_png(Image.new("RGB", (8, 8), (128, 128, 128)))])
        if res.vectors.shape != (1, self.service.dim):
            raise RuntimeError(f"health probe gave shape {res.vectors.shape}, expected (1, {self.service.dim})")
