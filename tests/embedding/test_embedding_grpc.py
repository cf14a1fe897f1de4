"""The embedding stage over a real socket: health, both towers, Info, statuses for bad input."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from echo.v1 import common_pb2, embedding_pb2, embedding_pb2_grpc
from services.common.serving import channel_options, start_server
from services.config import EchoSettings, load_settings
from services.embedding.server import SERVICE_NAME, build_stage


@pytest.fixture
async def stage_address() -> AsyncIterator[tuple[str, EchoSettings]]:
    settings = load_settings(
        None,
        embedding={"device": "cpu", "image_encoder": "clip", "max_image_bytes": 200_000, "max_images_per_request": 8},
    )
    stage = await build_stage(settings.embedding)
    server, port, _ = await start_server([stage], "127.0.0.1", 0)
    yield f"127.0.0.1:{port}", settings
    await server.stop(0)
    await stage.servicer.service.close()


async def test_health_reports_serving_after_a_real_embedding(stage_address: tuple[str, EchoSettings]) -> None:
    address, _ = stage_address
    async with grpc.aio.insecure_channel(address) as ch:
        health = health_pb2_grpc.HealthStub(ch)
        for name in (SERVICE_NAME, ""):
            resp = await health.Check(health_pb2.HealthCheckRequest(service=name))
            assert resp.status == health_pb2.HealthCheckResponse.SERVING


async def test_images_by_bytes_and_by_uri_and_texts_embed_over_grpc(
    stage_address: tuple[str, EchoSettings], make_png: Callable[..., bytes], tmp_path: Path
) -> None:
    address, _ = stage_address
    path = tmp_path / "part.png"
    path.write_bytes(make_png(5))
    async with grpc.aio.insecure_channel(address, options=channel_options()) as ch:
        stub = embedding_pb2_grpc.EmbeddingStub(ch)
        resp = await stub.EmbedImages(
            embedding_pb2.EmbedImagesRequest(
                images=[common_pb2.Image(data=make_png(5)), common_pb2.Image(uri=str(path))], return_patch_tokens=True
            )
        )
        assert resp.model_id == "echo-tiny-clip:random(seed=0)" and resp.dim == 64 and resp.compute_ms > 0
        a, b = (np.array(v.values) for v in resp.embeddings)
        np.testing.assert_allclose(a, b, atol=1e-6)
        np.testing.assert_allclose(np.linalg.norm(a), 1.0, atol=1e-5)
        tok = resp.patch_tokens[0]
        assert len(tok.values) == tok.num_tokens * tok.dim and tok.dim == 64
        texts = await stub.EmbedTexts(embedding_pb2.EmbedTextsRequest(texts=["a screw", "a washer"]))
        assert len(texts.embeddings) == 2 and len(texts.embeddings[0].values) == 64


@pytest.mark.parametrize(
    ("images", "message"),
    [
        ([common_pb2.Image(data=b"not an image")], "images[0]: cannot be decoded as an image"),
        ([common_pb2.Image()], "images[0]: is missing"),
        ([common_pb2.Image(data=b"\x89PNG" + b"\0" * 300_000)], "images[0]: is 300004 bytes, over the limit of 200000"),
        ([], "images: is empty"),
        ([common_pb2.Image(uri="/no/such/file.png")], "images[0].uri: no image at"),
    ],
)
async def test_bad_images_get_a_status_naming_the_problem(
    stage_address: tuple[str, EchoSettings], images: list[common_pb2.Image], message: str
) -> None:
    address, _ = stage_address
    async with grpc.aio.insecure_channel(address, options=channel_options()) as ch:
        stub = embedding_pb2_grpc.EmbeddingStub(ch)
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await stub.EmbedImages(embedding_pb2.EmbedImagesRequest(images=images))
        expected = grpc.StatusCode.NOT_FOUND if "no image at" in message else grpc.StatusCode.INVALID_ARGUMENT
        assert e.value.code() == expected
        assert message in e.value.details()


async def test_info_says_the_clip_embeds_texts_and_patch_tokens(stage_address: tuple[str, EchoSettings]) -> None:
    address, _ = stage_address
    async with grpc.aio.insecure_channel(address) as ch:
        info = await embedding_pb2_grpc.EmbeddingStub(ch).Info(embedding_pb2.EmbeddingInfoRequest())
    assert (info.model_id, info.dim, info.texts, info.patch_tokens) == ("echo-tiny-clip:random(seed=0)", 64, True, True)


async def test_the_default_offline_stage_says_it_has_no_text_tower_and_refuses_texts_naming_the_field() -> None:
    settings = load_settings(None, embedding={"device": "cpu"})  # no CLIP weights configured: EfficientNet-Lite0
    stage = await build_stage(settings.embedding)
    server, port, _ = await start_server([stage], "127.0.0.1", 0)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
            stub = embedding_pb2_grpc.EmbeddingStub(ch)
            info = await stub.Info(embedding_pb2.EmbeddingInfoRequest())
            assert info.model_id.startswith("efficientnet_lite0[") and info.dim == 1280
            assert not info.texts and not info.patch_tokens
            with pytest.raises(grpc.aio.AioRpcError) as e:
                await stub.EmbedTexts(embedding_pb2.EmbedTextsRequest(texts=["a photo of a screw"]))
            assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            assert e.value.details().startswith("texts: ") and "no text tower" in e.value.details()
    finally:
        await server.stop(0)
        await stage.servicer.service.close()
