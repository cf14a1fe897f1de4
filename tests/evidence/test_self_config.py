"""Self-configuration per product from normal images, the global score and the combined verdict."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from services.common.images import encode_png
from services.evidence.bank import BankStore
from services.evidence.core import EvidenceService
from services.evidence.features import FeatureChoice, TimmPatchFeatures
from services.evidence.global_score import GaussianModel, mahalanobis_loo
from services.evidence.selfconfig import choose
from tests.evidence.conftest import INPUT, Product, small_settings

Make = Callable[..., EvidenceService]
AUTO = {"auto_config": True, "auto_config_sizes": [INPUT], "auto_config_native_max": 0}
DEFAULT = FeatureChoice((2, 4), INPUT, 3)  # EfficientNet-Lite0 feature levels 2 and 3 are blocks 2 and 4


def _images(product: Product) -> list[Image.Image]:
    import io

    return [Image.open(io.BytesIO(d)).convert("RGB") for d in product.normals]


def test_the_choice_is_within_budget_and_records_every_candidates_self_test(
    tmp_path: Path, real_features: TimmPatchFeatures, fabric: Product
) -> None:
    settings = small_settings(tmp_path, **AUTO)
    family = [DEFAULT, FeatureChoice((2, 3), INPUT, 3), FeatureChoice((2, 3), INPUT, 1)]
    c = choose(real_features, _images(fabric), settings, family)
    r = c.record
    assert r["status"] == "chosen" and c.choice in family and r["chosen"] == c.choice.name
    assert [x["name"] for x in r["candidates"]] == [f.name for f in family]
    for x in r["candidates"]:
        assert x["status"] == "ok" and 0 <= x["auroc_local"] <= 1 and 0 <= x["auroc_global"] <= 1
        assert 0 < x["latency_ms"] <= settings.latency_budget_ms
    best = max(x["auroc"] for x in r["candidates"])
    assert r["auroc"] >= best - 0.005 and r["seconds"] > 0 and r["seconds_per_candidate_per_image"] > 0
    assert c.image_score in ("topk_mean", "max_patch") and c.global_score in ("mahalanobis", "mean_distance")


def test_candidates_over_the_latency_budget_are_named_and_not_chosen(
    tmp_path: Path, real_features: TimmPatchFeatures, fabric: Product
) -> None:
    settings = small_settings(tmp_path, **AUTO, latency_budget_ms=0.001)
    c = choose(real_features, _images(fabric), settings, [DEFAULT, FeatureChoice((2, 3), INPUT, 3)])
    assert {x["status"] for x in c.record["candidates"]} == {"over budget"}
    assert c.record["status"] == "fixed: no candidate passed" and c.choice == DEFAULT


def test_a_failing_candidate_is_skipped_and_named_and_the_choice_goes_on(
    tmp_path: Path, real_features: TimmPatchFeatures, fabric: Product
) -> None:
    settings = small_settings(tmp_path, **AUTO)
    broken = FeatureChoice((2, 99), INPUT, 3)  # a block the backbone does not have
    c = choose(real_features, _images(fabric), settings, [broken, DEFAULT])
    status = {x["name"]: x["status"] for x in c.record["candidates"]}
    assert status[broken.name].startswith("failed: ") and status[DEFAULT.name] == "ok"
    assert c.record["status"] == "chosen" and c.choice == DEFAULT


def test_fewer_than_eight_images_get_the_fixed_default_and_say_how_many_more(
    make_service: Make, fabric: Product
) -> None:
    service = make_service(**AUTO)
    info = service.add_normal_images("l", "Synthetic", "fabric", fabric.normals[:5]).bank
    assert info.self_config["status"] == "too few images" and info.self_config["needs_more_images"] == 3
    assert "3 more" in info.self_config["note"] and info.backbone_id == service.backbone_id
    # reaching eight images makes the choice (the kept images are read again in the chosen features)
    info = service.add_normal_images("l", "Synthetic", "fabric", fabric.normals[5:8]).bank
    assert info.self_config["status"] == "chosen" and info.images == 8
    assert info.backbone_id.split("/", 1)[0] == service.backbone_id.split("/", 1)[0]


def test_a_self_configured_bank_is_served_after_a_restart_and_names_its_features(
    tmp_path: Path, make_service: Make, fabric: Product, real_features: TimmPatchFeatures
) -> None:
    service = make_service(**AUTO)
    info = service.add_normal_images("l", "Synthetic", "fabric", fabric.normals).bank
    chosen = info.self_config["chosen"]
    if chosen == DEFAULT.name:  # the fixed default keeps the stage's own backbone id
        assert info.backbone_id == service.backbone_id
    else:
        blocks, size, pool = chosen.split("/")
        assert all(part in info.backbone_id for part in (blocks, size, pool))
    settings = small_settings(tmp_path, **AUTO)
    again = EvidenceService(settings, real_features, BankStore(settings.bank_store))
    r = again.analyze_sync("l", "Synthetic", "fabric", fabric.defective[0].image)
    assert r.backbone_id == info.backbone_id and r.score > 0


def test_the_off_switch_keeps_the_fixed_configuration(make_service: Make, fabric: Product) -> None:
    service = make_service(auto_config=False)
    info = service.add_normal_images("l", "Synthetic", "fabric", fabric.normals).bank
    assert info.self_config["status"] == "off" and info.self_config["candidates"] == []
    assert info.backbone_id == service.backbone_id


def test_the_verdict_fires_when_either_score_is_over_its_own_threshold(make_service: Make, fabric: Product) -> None:
    service = make_service(global_score="mahalanobis", global_min_images=2)  # 8 images: under the default 20
    info = service.add_normal_images("l", "Synthetic", "fabric", fabric.normals).bank
    assert info.global_calibration is not None
    assert info.calibration.far_target == info.global_calibration.far_target == 0.005  # half of 1% each
    faded = Image.open(__import__("io").BytesIO(fabric.held_out[0])).convert("RGB")
    faded = Image.fromarray((np.asarray(faded, np.float32) * 0.5 + 64).astype(np.uint8))
    for image in [*fabric.held_out, fabric.defective[0].image, encode_png(faded)]:
        r = service.analyze_sync("l", "Synthetic", "fabric", image)
        local_fired, global_fired = r.local_score > r.threshold, r.global_score > r.global_threshold
        assert r.anomalous == (local_fired or global_fired)
        assert (
            r.fired
            == {(0, 0): "none", (1, 0): "local", (0, 1): "global", (1, 1): "both"}[
                (int(local_fired), int(global_fired))
            ]
        )
        assert r.score >= r.local_score and r.fired in r.summary.replace("neither", "none")


def test_the_global_score_turned_off_leaves_the_local_score_alone(make_service: Make, fabric: Product) -> None:
    service = make_service(global_score="off")
    info = service.add_normal_images("l", "Synthetic", "fabric", fabric.normals).bank
    assert info.global_calibration is None and info.calibration.far_target == 0.01
    r = service.analyze_sync("l", "Synthetic", "fabric", fabric.defective[0].image)
    assert r.score == r.local_score and r.global_threshold == 0


def test_mahalanobis_scores_a_shifted_descriptor_far_above_normal_ones() -> None:
    rng = np.random.default_rng(0)
    normal = rng.normal(0, 1, (20, 50))
    model = GaussianModel.fit(normal)
    loo = mahalanobis_loo(normal)
    assert len(loo) == 20 and model.score(normal[0] + 3.0) > 2 * max(loo)
