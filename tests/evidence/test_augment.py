"""augment auto: each product's own normal images decide which turned and flipped poses its bank holds; and a
bank too small for the global score's Gaussian gives the nearest-patch score the whole false-alarm budget."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from PIL import Image

from services.common.images import encode_png
from services.evidence.core import EvidenceService
from services.evidence.features import choose_augment, poses
from services.mmad.synth import render_normal
from tests.evidence.conftest import DATASET, SIZE

Make = Callable[..., EvidenceService]
LINE = "line-aug"


def _round_parts(n: int, seed: int = 3) -> list[bytes]:
    rng = np.random.default_rng(seed)
    return [encode_png(render_normal("round_part", rng, SIZE)) for _ in range(n)]


def _one_way_up(n: int, seed: int = 5) -> list[np.ndarray]:
    """A part that always arrives the same way up: a bright bar along the top edge, a dark block bottom left."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        img = np.full((SIZE, SIZE, 3), 0.45, np.float32) + rng.normal(0, 0.02, (SIZE, SIZE, 3)).astype(np.float32)
        img[4:22, 8:120] = 0.95
        img[80:120, 6:40] = 0.05
        out.append(np.clip(img * 255, 0, 255).astype(np.uint8))
    return out


def _png(arr: np.ndarray) -> bytes:
    return encode_png(Image.fromarray(np.ascontiguousarray(arr)))


def _ratios(group_ok: float, others: float) -> dict[tuple[bool, int], np.ndarray]:
    """Scores of two held-out images in every extra pose: the quarter turns at group_ok times their own score."""
    return {p: np.array([10.0, 20.0]) * (group_ok if not p[0] else others) for p in poses("dihedral")[1:]}


def test_choose_augment_takes_the_largest_group_whose_every_pose_scores_like_the_image_itself() -> None:
    own = np.array([10.0, 20.0])
    assert choose_augment(own, _ratios(1.02, 1.05), 1.1)[0] == "dihedral"
    assert choose_augment(own, _ratios(1.02, 1.6), 1.1)[0] == "rot90"  # mirrored, it is not a normal view
    half_turn_only = {p: own * (1.0 if p == (False, 2) else 2.0) for p in poses("dihedral")[1:]}
    assert choose_augment(own, half_turn_only, 1.1)[0] == "rot180"  # a screw: either end first, never mirrored
    group, ratios = choose_augment(own, _ratios(1.5, 1.5), 1.1)
    assert group == "none" and ratios["rot90"] == 1.5 and ratios["flip+rot0"] == 1.5


def test_a_round_part_seen_at_any_angle_is_banked_in_every_pose(make_service: Make) -> None:
    svc = make_service(augment="auto")  # the stage's default
    info = svc.add_normal_images(LINE, DATASET, "round_part", _round_parts(8)).bank
    bank = svc.bank(svc._key(LINE, DATASET, "round_part"))
    assert bank.scoring["augment"] == "dihedral", info.self_config
    assert info.patches_seen == 8 * 8 * bank.patches_per_image  # every image in its eight poses
    assert "poses: dihedral" in (info.self_config or {})["note"]
    # images added later join in the bank's own poses
    added = svc.add_normal_images(LINE, DATASET, "round_part", _round_parts(2, seed=11)).bank
    assert added.patches_seen == 10 * 8 * bank.patches_per_image


def test_a_part_that_arrives_one_way_up_is_banked_as_it_is(make_service: Make) -> None:
    svc = make_service(augment="auto")
    info = svc.add_normal_images(LINE, DATASET, "plate", [_png(a) for a in _one_way_up(8)]).bank
    bank = svc.bank(svc._key(LINE, DATASET, "plate"))
    assert bank.scoring["augment"] == "none", info.self_config
    assert info.patches_seen == 8 * bank.patches_per_image
    assert max((info.self_config or {})["pose_ratios"].values()) > svc.settings.augment_tolerance
    # so the part turned upside down is still found anomalous
    upright = _one_way_up(1, seed=9)[0]
    assert not svc.analyze_sync(LINE, DATASET, "plate", _png(upright)).anomalous
    assert svc.analyze_sync(LINE, DATASET, "plate", _png(np.rot90(upright, 2))).anomalous


def test_a_bank_of_more_images_than_augment_max_images_is_banked_as_it_is(make_service: Make) -> None:
    svc = make_service(augment="auto", augment_max_images=6)
    info = svc.add_normal_images(LINE, DATASET, "round_part", _round_parts(8)).bank
    assert "over augment_max_images 6" in (info.self_config or {})["note"]
    assert info.patches_seen == 8 * svc.bank(svc._key(LINE, DATASET, "round_part")).patches_per_image


def test_the_default_is_auto_and_a_fixed_augment_setting_is_kept_without_testing_poses(make_service: Make) -> None:
    from services.evidence.config import EvidenceSettings

    assert EvidenceSettings().augment == "auto" and EvidenceSettings().global_min_images == 20
    svc = make_service(augment="none")
    info = svc.add_normal_images(LINE, DATASET, "round_part", _round_parts(8)).bank
    bank = svc.bank(svc._key(LINE, DATASET, "round_part"))
    assert bank.scoring["augment"] == "none" and "pose_ratios" not in (info.self_config or {})
    assert info.patches_seen == 8 * bank.patches_per_image


def test_a_bank_below_global_min_images_gives_the_global_score_a_small_share_and_the_local_one_the_rest(
    make_service: Make,
) -> None:
    images = _round_parts(8)
    small = make_service(augment="none", global_score="mahalanobis").add_normal_images(LINE, DATASET, "rp", images)
    assert small.bank.calibration is not None and small.bank.global_calibration is not None
    assert small.bank.calibration.far_target == pytest.approx(0.009)
    assert small.bank.global_calibration.far_target == pytest.approx(0.001)
    fitted = make_service(augment="none", global_score="mahalanobis", global_min_images=2)
    info = fitted.add_normal_images(LINE + "-2", DATASET, "rp", images).bank
    assert info.global_calibration is not None and info.calibration is not None
    assert info.calibration.far_target == info.global_calibration.far_target == 0.005  # half the budget each
