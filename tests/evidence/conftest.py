"""Fixtures for the evidence stage: the real EfficientNet-Lite0 (small input, for speed), synthetic products."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from services.common.images import encode_png
from services.evidence.bank import BankStore
from services.evidence.config import EvidenceSettings
from services.evidence.core import EvidenceService
from services.evidence.features import TimmPatchFeatures
from services.mmad.synth import draw_defect, render_normal

SIZE = 128
INPUT = 160
DATASET = "Synthetic"


def small_settings(root: Path, **overrides: Any) -> EvidenceSettings:
    """Settings for a small, fast stage whose banks live under root."""
    base: dict[str, Any] = {
        "device": "cpu",
        "input_size": INPUT,
        "bank_store": str(root / "banks"),
        "auto_config": False,  # the fixed configuration; tests/evidence/test_self_config.py turns it on
        "coreset_keep_all": 0,  # the coreset at every size (test_position_norm.py proves small banks keep all)
        "augment": "none",  # every image as it is; tests/evidence/test_augment.py turns auto on
    }
    return EvidenceSettings(**{**base, **overrides})


@pytest.fixture(scope="session")
def real_features() -> TimmPatchFeatures:
    """EfficientNet-Lite0 with the packaged ImageNet weights, at a small input size."""
    return TimmPatchFeatures(EvidenceSettings(device="cpu", input_size=INPUT))


@dataclass
class Defective:
    image: bytes
    mask: np.ndarray
    region: str
    defect: str


@dataclass
class Product:
    category: str
    normals: list[bytes]
    held_out: list[bytes]  # normal images the bank never saw
    defective: list[Defective]


def make_product(category: str, seed: int, n_normal: int = 8, n_held: int = 3) -> Product:
    from services.mmad.catalogue import CATEGORIES

    rng = np.random.default_rng(seed)
    normals = [encode_png(render_normal(category, rng, SIZE)) for _ in range(n_normal)]
    held = [encode_png(render_normal(category, rng, SIZE)) for _ in range(n_held)]
    defective = []
    for defect in CATEGORIES[category].defects[:3]:
        img = render_normal(category, rng, SIZE)
        bad, mask, info = draw_defect(img, category, defect, rng)
        defective.append(Defective(encode_png(bad), mask, info["region"], defect))
    return Product(category, normals, held, defective)


@pytest.fixture(scope="session")
def fabric() -> Product:
    """Woven fabric: a texture, where a hole or stain stands out clearly from the normal patches."""
    return make_product("woven_fabric", seed=7)


@pytest.fixture
def make_service(tmp_path: Path, real_features: TimmPatchFeatures) -> Iterator[Callable[..., EvidenceService]]:
    """(**settings overrides) -> a service on the shared real backbone, banks under tmp_path."""

    def make(features: Any = None, **overrides: Any) -> EvidenceService:
        settings = small_settings(tmp_path, **overrides)
        return EvidenceService(settings, features or real_features, BankStore(settings.bank_store))

    yield make
