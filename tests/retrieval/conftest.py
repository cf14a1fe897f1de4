"""Fixtures for the retrieval stage: the tiny CLIP, synthetic normal images with drawn defects, store settings."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from services.common.images import ImageStore, encode_png
from services.embedding.config import EmbeddingSettings
from services.embedding.core import ClipEncoder
from services.mmad.synth import CATEGORIES, draw_defect, render_normal
from services.retrieval.config import HnswSettings, RetrievalSettings
from services.retrieval.core import Memory
from services.retrieval.store import open_store

DATASET = "Synthetic"
PER_CATEGORY = 6


@dataclass
class Scene:
    """A normal rendering (the memory's template) and a defective copy of it (the query)."""

    category: str
    normal: bytes
    defective: bytes
    defect: str


@pytest.fixture(scope="session")
def encoder() -> ClipEncoder:
    return ClipEncoder.from_settings(EmbeddingSettings(device="cpu"))


@pytest.fixture(scope="session")
def scenes() -> list[Scene]:
    """PER_CATEGORY normal images of every synthetic category, each with one defect drawn into a copy."""
    out = []
    for c_idx, (category, spec) in enumerate(sorted(CATEGORIES.items())):
        rng = np.random.default_rng(100 + c_idx)
        for i in range(PER_CATEGORY):
            img = render_normal(category, rng, size=128)
            defect = spec.defects[i % len(spec.defects)]
            bad, _, _ = draw_defect(img.copy(), category, defect, rng)
            out.append(Scene(category, encode_png(img), encode_png(bad), defect))
    return out


@pytest.fixture(params=["edge", "server"])
def engine(request: pytest.FixtureRequest) -> str:
    """Both real engines: Qdrant Edge, and qdrant-client (local mode here: no server binary runs on our machines)."""
    return request.param


def _retrieval_settings(engine: str, root: Path, **hnsw: int) -> RetrievalSettings:
    return RetrievalSettings(
        engine=engine,  # type: ignore[arg-type]
        path=str(root / "edge"),
        url=str(root / "qdrant-local"),
        image_store=str(root / "images"),
        hnsw=HnswSettings(**hnsw),
    )


@pytest.fixture(scope="session")
def retrieval_settings() -> Callable[..., RetrievalSettings]:
    """(engine, root folder, **hnsw) -> settings whose state all lives under root."""
    return _retrieval_settings


@pytest.fixture
def open_memory(engine: str, tmp_path: Path, encoder: ClipEncoder) -> Iterator[Callable[..., Memory]]:
    """Open (or reopen) the memory in tmp_path with the given engine; everything opened is closed afterwards."""
    opened: list[Memory] = []

    def make(**hnsw: int) -> Memory:
        s = _retrieval_settings(engine, tmp_path, **hnsw)
        mem = Memory(open_store(s, encoder.dim), s, ImageStore(s.image_store), encoder.embed_batch)
        opened.append(mem)
        return mem

    yield make
    for mem in opened:
        mem.close()  # idempotent: a restart test has closed some already
