"""The async service path: batched results equal unbatched ones; bad input names the image."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import numpy as np
import pytest

from services.common.batching import BatchFn, MicroBatcher
from services.common.errors import InvalidArgument
from services.embedding import preprocess
from services.embedding.config import EmbeddingSettings
from services.embedding.core import ClipEncoder, EmbeddingService


@pytest.fixture
async def service(encoder: ClipEncoder, settings: EmbeddingSettings) -> AsyncIterator[EmbeddingService]:
    svc = EmbeddingService(encoder, settings.model_copy(update={"max_images_per_request": 16}))
    yield svc
    await svc.close()


async def test_batching_does_not_change_embeddings(service: EmbeddingService, make_png: Callable[..., bytes]) -> None:
    datas = [make_png(i) for i in range(12)]
    alone = np.concatenate([(await service.embed_images([d])).vectors for d in datas])
    together = await asyncio.gather(*(service.embed_images([d]) for d in datas))
    np.testing.assert_allclose(np.concatenate([r.vectors for r in together]), alone, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(alone, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(service.encoder.embed_batch(datas), alone, atol=1e-5)


async def test_patch_tokens_are_optional_normalized_and_in_the_joint_space(
    service: EmbeddingService, make_png: Callable[..., bytes]
) -> None:
    plain = await service.embed_images([make_png(1)])
    with_tokens = await service.embed_images([make_png(1), make_png(2)], return_patch_tokens=True)
    assert plain.patch_tokens is None
    grid = (service.encoder.image_size[0] // 8) * (service.encoder.image_size[1] // 8)  # tiny model: 8 px patches
    assert [t.shape for t in with_tokens.patch_tokens] == [(grid, service.dim)] * 2
    np.testing.assert_allclose(np.linalg.norm(with_tokens.patch_tokens[0], axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(with_tokens.vectors[0], plain.vectors[0], atol=1e-5)


async def test_a_bad_image_is_named_by_its_place_in_the_request(
    service: EmbeddingService, make_png: Callable[..., bytes]
) -> None:
    with pytest.raises(InvalidArgument, match=r"^images\[1\]: cannot be decoded"):
        await service.embed_images([make_png(1), b"garbage"])
    with pytest.raises(InvalidArgument, match="images: is empty"):
        await service.embed_images([])
    with pytest.raises(InvalidArgument, match="has 17 images, over the limit of 16"):
        await service.embed_images([make_png(1)] * 17)


async def test_texts_are_embedded_and_blank_ones_refused(service: EmbeddingService) -> None:
    res = await service.embed_texts(["a photo of a screw", "a round metal part"])
    assert res.vectors.shape == (2, service.dim)
    with pytest.raises(InvalidArgument, match=r"texts\[1\]: is empty"):
        await service.embed_texts(["ok", "  "])


@pytest.mark.filterwarnings("ignore:The image decoding and encoding capabilities:DeprecationWarning")
@pytest.mark.filterwarnings("ignore:The given buffer is not writable:UserWarning")
async def test_device_decode_pipeline_matches_the_cpu_path_and_names_bad_images(
    encoder: ClipEncoder, settings: EmbeddingSettings, make_png: Callable[..., bytes], make_jpeg: Callable[..., bytes]
) -> None:
    """The GPU path (tensor decode and resize, then the model, pipelined), run here with torchvision's CPU decoders."""
    svc = EmbeddingService(encoder, settings, decode_on_device=True)
    try:
        datas = [make_jpeg(i, 96, 72) for i in range(6)] + [make_png(9)]
        results = await asyncio.gather(*(svc.embed_images([d]) for d in datas))
        piped = np.concatenate([r.vectors for r in results])
        assert (piped * encoder.embed_batch(datas)).sum(axis=1).min() > 0.999
        with pytest.raises(InvalidArgument, match=r"^images\[1\]: cannot be decoded"):
            await svc.embed_images([datas[0], b"\xff\xd8\xff broken jpeg"])
    finally:
        await svc.close()


@pytest.mark.filterwarnings("ignore:The image decoding and encoding capabilities:DeprecationWarning")
@pytest.mark.filterwarnings("ignore:The given buffer is not writable:UserWarning")
async def test_the_service_batches_through_the_batcher_it_is_built_with(
    encoder: ClipEncoder, settings: EmbeddingSettings, make_jpeg: Callable[..., bytes]
) -> None:
    built: list[str] = []

    def factory(fn: BatchFn, **kw: Any) -> MicroBatcher:
        built.append(kw["stage"])
        return MicroBatcher(fn, **kw)

    svc = EmbeddingService(encoder, settings, decode_on_device=True, batcher_factory=factory)
    try:
        await svc.embed_images([make_jpeg(1)])
        assert built == ["embedding"]
        assert svc.pipeline.batches == [1] and svc.pipeline.times.batches == 1
    finally:
        await svc.close()


@pytest.mark.filterwarnings("ignore:The image decoding and encoding capabilities:DeprecationWarning")
@pytest.mark.filterwarnings("ignore:The given buffer is not writable:UserWarning")
def test_a_failed_tensor_decode_falls_back_to_the_cpu_logged_and_counted(
    encoder: ClipEncoder, make_jpeg: Callable[..., bytes], caplog: pytest.LogCaptureFixture
) -> None:
    import torch
    from prometheus_client import REGISTRY

    def fallbacks() -> float:
        return REGISTRY.get_sample_value("echo_gpu_decode_fallbacks_total", {"stage": "embedding"}) or 0.0

    good = make_jpeg(1, 96, 72)
    at = good.index(b"\xff\xc4") + 5  # the Huffman code counts: its header and structure read fine, its pixels not
    corrupt = good[:at] + b"\xff" * 16 + good[at + 16 :]
    before = fallbacks()
    with caplog.at_level("WARNING", logger=preprocess.__name__):
        out = preprocess.preprocess_tensors(
            [good, corrupt],
            encoder.preprocess_cfg,
            torch.device("cpu"),
            encoder.limits,
            encoder.loaded.preprocess,
            ["images[0]", "images[1]"],
        )
    assert fallbacks() == before + 1
    assert "decoding them on the CPU" in caplog.text
    assert isinstance(out[0], torch.Tensor)  # the good image still made it, through the CPU path
