"""Fixtures for the embedding stage: the offline tiny CLIP (random weights, seeded), built once."""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
import pytest
from PIL import Image

from services.embedding.config import EmbeddingSettings
from services.embedding.core import ClipEncoder


def png(seed: int, w: int = 80, h: int = 60) -> bytes:
    """A random RGB PNG (smooth enough that resizing is meaningful)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (h // 4 + 1, w // 4 + 1, 3), dtype=np.uint8)
    img = Image.fromarray(small).resize((w, h), Image.BILINEAR)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def jpeg(seed: int, w: int = 80, h: int = 60) -> bytes:
    buf = io.BytesIO()
    Image.open(io.BytesIO(png(seed, w, h))).save(buf, format="JPEG", quality=95)
    return buf.getvalue()


@pytest.fixture(scope="session")
def make_png() -> Callable[..., bytes]:
    return png


@pytest.fixture(scope="session")
def make_jpeg() -> Callable[..., bytes]:
    return jpeg


@pytest.fixture(scope="session")
def settings() -> EmbeddingSettings:
    # the tiny CLIP, named: the default (auto) would embed with EfficientNet-Lite0 since its weights are random
    return EmbeddingSettings(device="cpu", image_encoder="clip", max_wait_ms=2.0, max_batch_size=8)


@pytest.fixture(scope="session")
def encoder(settings: EmbeddingSettings) -> ClipEncoder:
    return ClipEncoder.from_settings(settings)
