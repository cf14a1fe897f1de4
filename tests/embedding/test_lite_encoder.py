"""The offline image encoder, the default where no CLIP weights are configured: EfficientNet-Lite0's pooled
ImageNet features."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from services.common.errors import ConfigError, FailedPrecondition
from services.common.images import encode_png
from services.embedding.config import EmbeddingSettings
from services.embedding.core import ClipEncoder, EmbeddingService
from services.embedding.model import embedding_dim
from services.mmad.synth import render_normal
from services.retrieval.config import RetrievalSettings
from services.retrieval.store import open_store

DATA = Path(__file__).resolve().parents[1] / "evidence" / "data"


@pytest.fixture(scope="module")
def runtime_cache(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(tmp_path_factory.mktemp("embedding-runtime"))


@pytest.fixture(scope="module")
def lite(runtime_cache: str) -> ClipEncoder:
    return ClipEncoder.for_images(EmbeddingSettings(device="cpu", runtime_cache=runtime_cache))


def test_the_default_embeds_with_efficientnet_lite0_when_no_clip_weights_are_configured(lite: ClipEncoder) -> None:
    assert EmbeddingSettings().image_encoder == "auto"
    assert lite.model_id.startswith("efficientnet_lite0[efficientnet-lite0-57934424.pth@")
    assert lite.dim == 1280 == embedding_dim(EmbeddingSettings())
    assert not lite.has_patch_tokens and not lite.has_text_tower


def test_clip_stays_the_encoder_when_configured_or_when_its_weights_are_real() -> None:
    named = ClipEncoder.for_images(EmbeddingSettings(device="cpu", image_encoder="clip"))
    assert named.model_id.startswith("echo-tiny-clip:random") and named.has_text_tower
    real = EmbeddingSettings(weights="openai", model="ViT-B-16")
    assert embedding_dim(real) == 512  # auto keeps CLIP wherever real weights are configured


def test_vectors_are_unit_length_and_tell_products_apart(lite: ClipEncoder) -> None:
    rng = np.random.default_rng(3)
    cats = ["woven_fabric", "screw", "printed_board", "round_part"]
    images = [encode_png(render_normal(c, rng, 128)) for c in cats for _ in range(3)]
    v = lite.embed_batch(images)
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    sims = v @ v.T
    np.fill_diagonal(sims, -1)
    labels = np.repeat(np.arange(len(cats)), 3)
    assert (labels[sims.argmax(1)] == labels).all()  # every image's nearest neighbour is of its own product


def test_real_photos_are_far_apart_unlike_a_random_clip(lite: ClipEncoder) -> None:
    photos = [(DATA / n).read_bytes() for n in ("chelsea.jpg", "coffee.jpg")]
    random_clip = ClipEncoder.from_settings(EmbeddingSettings(device="cpu"))
    lite_sim = float(np.prod(lite.embed_batch(photos), axis=0).sum())
    clip_sim = float(np.prod(random_clip.embed_batch(photos), axis=0).sum())
    assert lite_sim < 0.6 < clip_sim, (lite_sim, clip_sim)  # a cat and an espresso: random features call them alike


def test_the_cpu_runtime_gives_torchs_vectors(lite: ClipEncoder) -> None:
    assert lite.runner is not None and lite.runner.name == "onnxruntime"  # the CPU default
    on_torch = ClipEncoder.for_images(EmbeddingSettings(device="cpu", runtime="torch"))
    assert on_torch.runner is None and on_torch.model_id == lite.model_id  # one memory serves both runtimes
    photos = [(DATA / n).read_bytes() for n in ("chelsea.jpg", "coffee.jpg")]
    rng = np.random.default_rng(5)
    images = photos + [encode_png(render_normal(c, rng, 128)) for c in ("screw", "woven_fabric")]
    cos = (lite.embed_batch(images) * on_torch.embed_batch(images)).sum(axis=1)
    assert float((1.0 - cos).max()) < 1e-5, cos


async def test_text_embeddings_are_refused_naming_the_field(runtime_cache: str) -> None:
    service = EmbeddingService.from_settings(
        EmbeddingSettings(device="cpu", image_encoder="efficientnet-lite0", runtime_cache=runtime_cache)
    )
    try:
        with pytest.raises(FailedPrecondition, match="no text tower") as e:
            await service.embed_texts(["a photo of a screw"])
        assert e.value.field == "texts"
    finally:
        await service.close()


def test_a_memory_built_with_the_clip_is_refused_with_the_lite_encoder(tmp_path: Path) -> None:
    settings = RetrievalSettings(engine="edge", path=str(tmp_path / "edge"), image_store=str(tmp_path / "img"))
    clip_dim = embedding_dim(EmbeddingSettings(image_encoder="clip"))
    open_store(settings, clip_dim).close()
    with pytest.raises(ConfigError, match=f"has dim {clip_dim} but the embedding model gives 1280") as e:
        open_store(settings, embedding_dim(EmbeddingSettings()))
    assert "re-onboard the line's normal images" in str(e.value) and "\n" not in str(e.value)
