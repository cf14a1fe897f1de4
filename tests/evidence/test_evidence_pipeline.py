"""The evidence backbone's image path on the shared pipeline: the same features as the plain path on the CPU,
the GPU path's tensor preprocessing and half precision within a stated tolerance, per-image errors.

The GPU path (nvjpeg decode, uint8 resize, bf16 backbone, two CUDA streams) cannot run here; its code
runs on the CPU (the tensor path with torchvision's CPU decoders, the backbone in fp16 or bf16), which
is what these tests pin. `bench_evidence --gpu` measures the same shifts on the GPU.
"""

from __future__ import annotations

import asyncio
import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from services.common.anomaly_metrics import auroc
from services.common.errors import InvalidArgument
from services.common.images import encode_jpeg
from services.evidence.bank import BankStore
from services.evidence.core import EvidenceService
from services.evidence.features import TimmPatchFeatures
from tests.evidence.conftest import DATASET, Product, make_product, small_settings

pytestmark = [
    pytest.mark.filterwarnings("ignore:The image decoding and encoding capabilities:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:The given buffer is not writable:UserWarning"),
]

# Largest score shift, as a share of the threshold, that the GPU path may cause against the CPU path.
# Measured on the fabric fixture (8 normal images): tensor path 0 (PNG), fp16 0.0004, bf16 0.039 (0.045 on
# round_part); bench_evidence --gpu reports the same shifts on the GPU, on the evaluation data.
SHIFT_TOLERANCE = 0.1


def service(root: Path, features: TimmPatchFeatures, decode_on_device: bool | None = None, **kw: Any):
    # raw distances: shifts here are the pipeline's (decode, precision), measured on the distance's own scale
    s = small_settings(root, **{"position_norm": "off", **kw})
    return EvidenceService(s, features, BankStore(s.bank_store), decode_on_device=decode_on_device)


def queries(p: Product) -> tuple[list[bytes], list[int]]:
    return p.held_out + [d.image for d in p.defective], [0] * len(p.held_out) + [1] * len(p.defective)


def scores_of(svc: EvidenceService, p: Product) -> tuple[list[float], float]:
    svc.add_normal_images("l", DATASET, p.category, p.normals)
    images, _ = queries(p)
    out = [svc.analyze_sync("l", DATASET, p.category, d) for d in images]
    return [r.score for r in out], out[0].threshold


async def test_the_pipeline_gives_the_plain_paths_features_batched(
    tmp_path: Path, real_features: TimmPatchFeatures, fabric: Product
) -> None:
    """Concurrent queries ride in shared batches, and each gets the features the plain path (PIL, backbone) gives."""
    svc = service(tmp_path, real_features)
    images, _ = queries(fabric)
    try:
        got = await asyncio.gather(*(svc.extract(d) for d in images))
    finally:
        await svc.close()
    assert max(svc.pipeline.batches) > 1
    for (feats, geom), d in zip(got, images, strict=True):
        pixels, plain_geom = svc.preprocess(d)
        plain = real_features.extract(pixels[None])[0]
        assert geom == plain_geom
        np.testing.assert_allclose(feats, plain, rtol=1e-4, atol=1e-5)


async def test_scores_through_the_pipeline_equal_the_synchronous_scores(
    tmp_path: Path, real_features: TimmPatchFeatures, fabric: Product
) -> None:
    svc = service(tmp_path, real_features)
    sync_scores, _ = scores_of(svc, fabric)
    images, _ = queries(fabric)
    try:
        results = await asyncio.gather(*(svc.analyze("l", DATASET, fabric.category, d) for d in images))
    finally:
        await svc.close()
    np.testing.assert_allclose([r.score for r in results], sync_scores, rtol=1e-5)


async def test_a_bad_image_fails_only_its_own_analysis(
    tmp_path: Path, real_features: TimmPatchFeatures, fabric: Product
) -> None:
    svc = service(tmp_path, real_features)
    svc.add_normal_images("l", DATASET, fabric.category, fabric.normals[:3])
    good = fabric.held_out[0]
    try:
        out = await asyncio.gather(
            *(svc.analyze("l", DATASET, fabric.category, d) for d in (good, b"not an image", good)),
            return_exceptions=True,
        )
    finally:
        await svc.close()
    assert isinstance(out[1], InvalidArgument) and str(out[1]).startswith("image: cannot be decoded")
    assert out[0].score == pytest.approx(out[2].score)


@pytest.mark.parametrize("mode", ["squash", "pad"])
def test_the_tensor_path_gives_the_pil_paths_pixels_and_geometry(
    tmp_path: Path, real_features: TimmPatchFeatures, fabric: Product, mode: str
) -> None:
    """The GPU path's preprocessing (torchvision decode, uint8 resize), run on the CPU, against PIL's."""
    feats = real_features if mode == "squash" else TimmPatchFeatures(small_settings(tmp_path, resize_mode=mode))
    svc = service(tmp_path, feats, decode_on_device=True, resize_mode=mode)
    wide = Image.open(io.BytesIO(fabric.defective[0].image)).resize((240, 120))
    images = [fabric.normals[0], encode_jpeg(wide), fabric.defective[1].image]
    items = [(d, f"images[{i}]") for i, d in enumerate(images)]
    tensor = svc.prepare_batch(items).payload
    pil = svc.preprocess.batch(items, tensor_path=False).payload
    assert tensor.geoms == pil.geoms
    assert tensor.pixels.shape == pil.pixels.shape == (3, 3, svc.input_size, svc.input_size)
    assert (tensor.pixels - pil.pixels).abs().mean() < 0.02  # bilinear rounding differs by a hair


def test_the_tensor_path_moves_scores_less_than_the_tolerance(
    tmp_path: Path, real_features: TimmPatchFeatures, small_fabric: Product, fp32_scores: tuple[list[float], float]
) -> None:
    cpu, threshold = fp32_scores
    tensor, _ = scores_of(service(tmp_path / "tensor", real_features, decode_on_device=True), small_fabric)
    shift = np.abs(np.subtract(tensor, cpu)) / threshold
    assert shift.max() < SHIFT_TOLERANCE


@pytest.fixture(scope="module")
def small_fabric() -> Product:
    """4 normal images, 1 held out, 3 defective: few images, as fp16 convolutions are slow on CPUs."""
    return make_product("woven_fabric", seed=7, n_normal=4, n_held=1)


@pytest.fixture(scope="module")
def fp32_scores(
    tmp_path_factory: pytest.TempPathFactory, real_features: TimmPatchFeatures, small_fabric: Product
) -> tuple[list[float], float]:
    """The small fabric's query scores and threshold on the CPU path (fp32, PIL)."""
    return scores_of(service(tmp_path_factory.mktemp("fp32"), real_features), small_fabric)


@pytest.mark.parametrize(
    ("precision", "tolerance"),
    [pytest.param("fp16", 0.01, marks=pytest.mark.slow), ("bf16", SHIFT_TOLERANCE)],
)
def test_a_half_precision_backbone_keeps_scores_within_its_tolerance_and_the_ranking(
    tmp_path: Path,
    small_fabric: Product,
    real_features: TimmPatchFeatures,
    fp32_scores: tuple[list[float], float],
    precision: str,
    tolerance: float,
) -> None:
    """fp16 (the CUDA default) and bf16 against fp32 (the CPU's), each with its own bank; AUROC holds."""
    half = TimmPatchFeatures(small_settings(tmp_path, precision=precision))
    assert half.dtype == {"fp16": torch.float16, "bf16": torch.bfloat16}[precision]
    assert half.backbone_id == real_features.backbone_id  # a bank built in either precision serves the other
    fp32_scores, threshold = fp32_scores
    half_scores, _ = scores_of(service(tmp_path / precision, half, precision=precision), small_fabric)
    shift = np.abs(np.subtract(half_scores, fp32_scores)) / threshold
    assert shift.max() < tolerance
    _, labels = queries(small_fabric)
    assert auroc(labels, half_scores) == auroc(labels, fp32_scores)
