"""Weights come from exactly the configured source, offline; anything missing is a ConfigError naming it."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import open_clip
import pytest
import torch

from services.common.errors import ConfigError
from services.embedding.config import EmbeddingSettings
from services.embedding.core import ClipEncoder
from services.embedding.model import MODEL_CONFIG_DIR, TINY_MODEL, embedding_dim, load_clip, register_model_configs


def test_tiny_model_is_a_registered_open_clip_config_built_without_downloads() -> None:
    register_model_configs()
    model, _, _ = open_clip.create_model_and_transforms(TINY_MODEL)
    cfg = json.loads((MODEL_CONFIG_DIR / f"{TINY_MODEL}.json").read_text())
    out = model.encode_image(torch.zeros(2, 3, cfg["vision_cfg"]["image_size"], cfg["vision_cfg"]["image_size"]))
    assert out.shape == (2, cfg["embed_dim"])
    assert embedding_dim(EmbeddingSettings(image_encoder="clip")) == cfg["embed_dim"]


def test_default_settings_give_the_tiny_model_with_normalized_image_and_text_towers(
    encoder: ClipEncoder, make_png: Callable[..., bytes]
) -> None:
    png = make_png
    assert encoder.model_id == "echo-tiny-clip:random(seed=0)"
    assert encoder.device.type == "cpu" and encoder.dtype == torch.float32
    img = encoder.embed_batch([png(1), png(2)])
    txt = encoder.embed_texts(["a photo of a screw", "a woven fabric"])
    assert img.shape == txt.shape == (2, encoder.dim)
    np.testing.assert_allclose(np.linalg.norm(img, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(txt, axis=1), 1.0, atol=1e-5)


def test_random_weights_are_seeded_so_every_replica_agrees(
    encoder: ClipEncoder, make_png: Callable[..., bytes]
) -> None:
    png = make_png
    again = ClipEncoder.from_settings(EmbeddingSettings(device="cpu"))
    other = ClipEncoder.from_settings(EmbeddingSettings(device="cpu", seed=1))
    a, b, c = (e.embed_batch([png(3)]) for e in (encoder, again, other))
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_missing_pretrained_tag_names_the_tag_and_downloads_nothing(tmp_path: Path) -> None:
    s = EmbeddingSettings(model="ViT-B-16", weights="openai", cache_dir=str(tmp_path), device="cpu")
    with pytest.raises(ConfigError, match="'openai' for ViT-B-16 is not in the local cache"):
        load_clip(s)
    assert not any(tmp_path.iterdir()), "nothing may be downloaded into the cache"


def test_unknown_tag_missing_checkpoint_and_unknown_model_are_named() -> None:
    with pytest.raises(ConfigError, match="'no-such-tag' is neither a checkpoint file nor a pretrained tag"):
        load_clip(EmbeddingSettings(model="ViT-B-16", weights="no-such-tag", device="cpu"))
    with pytest.raises(ConfigError, match=r"checkpoint '/no/such/weights\.pt' does not exist"):
        load_clip(EmbeddingSettings(weights="/no/such/weights.pt", device="cpu"))
    with pytest.raises(ConfigError, match="'ViT-Q-99' is not an open_clip model"):
        load_clip(EmbeddingSettings(model="ViT-Q-99", device="cpu"))


def test_checkpoint_path_and_local_dir_load_those_weights(
    encoder: ClipEncoder, tmp_path: Path, make_png: Callable[..., bytes]
) -> None:
    """Save the seed-0 model; a seed-1 build that loads it must embed exactly like seed 0."""
    png = make_png
    ckpt = tmp_path / "tiny.pt"
    torch.save(encoder.model.state_dict(), ckpt)
    from_file = ClipEncoder.from_settings(EmbeddingSettings(weights=str(ckpt), seed=1, device="cpu"))
    np.testing.assert_allclose(from_file.embed_batch([png(4)]), encoder.embed_batch([png(4)]), atol=1e-6)
    assert from_file.model_id == "echo-tiny-clip:tiny.pt"

    folder = tmp_path / "hub-style"
    folder.mkdir()
    cfg = json.loads((MODEL_CONFIG_DIR / f"{TINY_MODEL}.json").read_text())
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": cfg, "preprocess_cfg": {}}))
    with pytest.raises(ConfigError, match="no weights"):
        load_clip(EmbeddingSettings(model=f"local-dir:{folder}", device="cpu"))
    torch.save(encoder.model.state_dict(), folder / "open_clip_pytorch_model.bin")
    local = ClipEncoder.from_settings(EmbeddingSettings(model=f"local-dir:{folder}", seed=1, device="cpu"))
    np.testing.assert_allclose(local.embed_batch([png(4)]), encoder.embed_batch([png(4)]), atol=1e-6)


def test_cuda_requested_without_a_gpu_is_a_config_error() -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: the refusal cannot happen here")
    with pytest.raises(ConfigError, match="no CUDA device"):
        load_clip(EmbeddingSettings(device="cuda"))
