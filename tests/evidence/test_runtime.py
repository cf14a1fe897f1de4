"""The evidence backbone on ONNX Runtime and OpenVINO: the same verdicts as torch, one cached export per choice."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from services.common.runtime import cache_path, compile_features
from services.evidence.bank import BankStore
from services.evidence.config import EvidenceSettings
from services.evidence.core import EvidenceService
from services.evidence.features import FeatureChoice, TimmPatchFeatures
from tests.evidence.conftest import DATASET, INPUT, Product, make_product, small_settings

RUNTIMES = ("onnxruntime", "openvino")


@pytest.fixture(scope="module")
def product() -> Product:
    return make_product("woven_fabric", seed=7, n_normal=12)


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("runtime-cache")


@pytest.fixture(scope="module")
def torch_features() -> TimmPatchFeatures:
    """The reference: the same backbone run by torch."""
    return TimmPatchFeatures(EvidenceSettings(device="cpu", input_size=INPUT, runtime="torch"))


def runtime_features(runtime: str, cache: Path, **overrides: object) -> TimmPatchFeatures:
    return TimmPatchFeatures(
        EvidenceSettings(device="cpu", input_size=INPUT, runtime=runtime, runtime_cache=str(cache), **overrides)
    )


def results(features: TimmPatchFeatures, root: Path, product: Product) -> list:
    s = small_settings(root)
    svc = EvidenceService(s, features, BankStore(s.bank_store))
    svc.add_normal_images("line-1", DATASET, product.category, product.normals)
    queries = product.held_out + [d.image for d in product.defective]
    return [svc.analyze_sync("line-1", DATASET, product.category, q) for q in queries]


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_real_weights_score_within_half_a_percent_of_the_threshold_of_torch_with_equal_verdicts(
    runtime: str, torch_features: TimmPatchFeatures, product: Product, cache: Path, tmp_path: Path
) -> None:
    feats = runtime_features(runtime, cache)
    assert feats.runner is not None and feats.runner.name == runtime
    assert feats.backbone_id == torch_features.backbone_id  # a bank built on one runtime serves the others
    base = results(torch_features, tmp_path / "torch", product)
    got = results(feats, tmp_path / runtime, product)
    threshold = base[0].threshold
    shifts = [abs(a.score - b.score) / threshold for a, b in zip(got, base, strict=True)]
    assert max(shifts) <= 0.005, shifts
    assert [r.anomalous for r in got] == [r.anomalous for r in base]
    assert any(r.anomalous for r in base) and not all(r.anomalous for r in base)  # both verdicts are exercised


def test_the_export_is_cached_and_reused_by_the_next_start(cache: Path) -> None:
    first = runtime_features("onnxruntime", cache)
    path = cache_path(cache, first.backbone_id)
    stamp = path.stat().st_mtime_ns
    second = runtime_features("openvino", cache)  # both runtimes read the same ONNX file
    assert path.stat().st_mtime_ns == stamp and second.runner is not None
    assert all(p.name.endswith((".onnx", ".onnx.checked")) for p in cache.iterdir())  # no temp files left


def test_a_checked_export_loads_without_a_torch_forward_until_its_bytes_change(tmp_path: Path) -> None:
    model = torch.nn.Conv2d(3, 4, 3, stride=2).eval()
    calls: list[int] = []

    def fn(x: torch.Tensor) -> torch.Tensor:
        calls.append(1)
        return model(x).permute(0, 2, 3, 1)

    first = compile_features("onnxruntime", fn, model, 32, "tiny/size=32", tmp_path)
    probed = len(calls)
    assert probed >= 1  # the first load is checked against torch (and traced by the export)
    compile_features("onnxruntime", fn, model, 32, "tiny/size=32", tmp_path)
    assert len(calls) == probed  # the recorded check stands: no torch forward at the next start
    path = cache_path(tmp_path, "tiny/size=32")
    path.write_bytes(path.read_bytes()[:-1] + b"\0")  # other bytes: the record no longer vouches for them
    again = compile_features("onnxruntime", fn, model, 32, "tiny/size=32", tmp_path)
    assert len(calls) > probed
    x = np.random.default_rng(1).standard_normal((1, 3, 32, 32)).astype(np.float32)
    np.testing.assert_allclose(again(x), first(x), rtol=0, atol=1e-5)


def test_a_corrupt_cached_export_is_rebuilt(tmp_path: Path, torch_features: TimmPatchFeatures) -> None:
    path = cache_path(tmp_path, torch_features.backbone_id)
    path.write_bytes(b"\x08\x07 half an onnx file")
    feats = runtime_features("onnxruntime", tmp_path)
    x = torch.randn(2, 3, INPUT, INPUT)
    np.testing.assert_allclose(feats.extract(x), torch_features.extract(x), rtol=0, atol=1e-3)
    assert path.stat().st_size > 100_000


def test_a_cached_export_of_other_weights_is_caught_by_the_probe_and_rebuilt(
    tmp_path: Path, torch_features: TimmPatchFeatures
) -> None:
    other = runtime_features("onnxruntime", tmp_path / "random", weights="random")
    stale = cache_path(tmp_path / "random", other.backbone_id).read_bytes()
    path = cache_path(tmp_path / "real", torch_features.backbone_id)
    path.parent.mkdir()
    path.write_bytes(stale)  # a valid ONNX graph, but of random weights
    feats = runtime_features("onnxruntime", tmp_path / "real")
    assert path.read_bytes() != stale
    x = torch.randn(1, 3, INPUT, INPUT)
    np.testing.assert_allclose(feats.extract(x), torch_features.extract(x), rtol=0, atol=1e-3)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_a_self_configured_choice_gets_its_own_export_matching_torch(
    runtime: str, cache: Path, torch_features: TimmPatchFeatures
) -> None:
    choice = FeatureChoice((1, 2), 192, 1)
    feats = runtime_features(runtime, cache)
    view = feats.view(choice)
    assert view.runner is not None
    assert cache_path(cache, view.backbone_id).is_file()
    assert cache_path(cache, view.backbone_id) != cache_path(cache, feats.backbone_id)
    x = torch.randn(3, 3, 192, 192)  # any batch size: the export's batch axis is dynamic
    np.testing.assert_allclose(view.extract(x), torch_features.view(choice).extract(x), rtol=0, atol=1e-3)


def test_onnxruntime_is_the_cpu_default_and_torch_stays_on_request(
    real_features: TimmPatchFeatures, torch_features: TimmPatchFeatures
) -> None:
    assert EvidenceSettings().runtime == "onnxruntime" and real_features.runtime == "onnxruntime"
    assert torch_features.runtime == "torch" and torch_features.runner is None
