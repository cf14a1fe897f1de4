"""Per-position standardisation: what normal images score at each position sets the scale of a query's distances."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from services.evidence.bank import BankStore
from services.evidence.config import EvidenceSettings
from services.evidence.core import EvidenceService
from services.evidence.features import TimmPatchFeatures
from services.evidence.position import PositionStats, leave_one_out, standardised_out_of_sample
from services.evidence.selfconfig import _local_variant, _search_scale, position_maps
from tests.evidence.conftest import DATASET, Product, small_settings


def _normal_maps(rng: np.random.Generator, n: int, size: int = 20) -> np.ndarray:
    """Distance maps whose borders score high on every normal image (padding, few border neighbours)."""
    yy, xx = np.mgrid[:size, :size]
    inward = np.minimum.reduce([yy, xx, size - 1 - yy, size - 1 - xx])  # cells from the nearest border
    return rng.normal(10.0, 0.5, (n, size, size)) * (1 + 0.6 * np.exp(-inward / 2.0))


def test_an_interior_defect_outranks_every_normal_once_positions_are_standardised() -> None:
    rng = np.random.default_rng(0)
    normals = _normal_maps(rng, 30)
    queries = _normal_maps(rng, 10)
    defects = _normal_maps(rng, 10)
    defects[:, 9:12, 9:12] += 4.0  # a clear interior bump, smaller than the normal border's excess
    raw_normal, raw_defect = queries.max((1, 2)), defects.max((1, 2))
    assert raw_defect.mean() < raw_normal.max()  # raw: the borders hide it
    stats = PositionStats.fit(normals)
    z_normal = np.array([stats.standardise(m).max() for m in queries])
    z_defect = np.array([stats.standardise(m).max() for m in defects])
    assert z_defect.min() > z_normal.max()


def test_leave_one_out_standardises_each_map_by_the_statistics_of_the_others() -> None:
    maps = _normal_maps(np.random.default_rng(1), 8)
    stats, own = standardised_out_of_sample(maps)
    np.testing.assert_allclose(own[3], PositionStats.fit(np.delete(maps, 3, 0)).standardise(maps[3]), rtol=1e-5)
    np.testing.assert_allclose(stats.mean, PositionStats.fit(maps).mean, rtol=1e-6)
    again = PositionStats.from_dict(stats.to_dict())
    np.testing.assert_allclose(again.standardise(maps[0]), stats.standardise(maps[0]), atol=1e-3)


def test_the_self_test_standardises_each_anomaly_without_the_normal_it_was_drawn_on() -> None:
    maps = _normal_maps(np.random.default_rng(2), 12)
    maps[6:] = maps[np.arange(6) % 6]  # anomalies 0..5 drawn on held-out normals 0..5 (here: unchanged copies)
    out = position_maps(maps, 6)
    _, others = leave_one_out(maps[:6])
    np.testing.assert_allclose(out[0], others[0].standardise(maps[0]), rtol=1e-6)
    np.testing.assert_allclose(out[8], others[2].standardise(maps[8]), rtol=1e-6)
    np.testing.assert_allclose(out[8], out[2], rtol=1e-6)  # an unchanged copy scores exactly as its source
    assert position_maps(maps, 2) is maps


def test_a_bank_keeps_its_position_statistics_and_scores_queries_on_their_scale(
    tmp_path: Path, real_features: TimmPatchFeatures, fabric: Product
) -> None:
    s = small_settings(tmp_path, global_score="off", nn_engine="flat", position_norm="on")
    svc = EvidenceService(s, real_features, BankStore(s.bank_store))
    svc.add_normal_images("l", DATASET, "woven_fabric", fabric.normals)
    bank = svc.bank(svc._key("l", DATASET, "woven_fabric"))
    assert bank.position is not None and bank.position.mean.shape == bank.grid
    reloaded = BankStore(s.bank_store).load(bank.key)
    assert reloaded is not None and reloaded.position is not None
    np.testing.assert_allclose(reloaded.position.scale, bank.position.scale, rtol=1e-4)
    defect = fabric.defective[0].image
    r = svc.analyze_sync("l", DATASET, "woven_fabric", defect)
    feats, _ = svc._extract_for(bank, defect)
    raw = bank.index.search(feats.reshape(-1, feats.shape[-1])).reshape(bank.grid)
    assert r.local_score == svc._score_map(bank.position.standardise(raw), bank)[0]
    off = small_settings(tmp_path / "off", global_score="off", nn_engine="flat", position_norm="off")
    plain = EvidenceService(off, real_features, BankStore(off.bank_store))
    plain.add_normal_images("l", DATASET, "woven_fabric", fabric.normals)
    assert plain.bank(plain._key("l", DATASET, "woven_fabric")).position is None


def test_under_auto_standardised_maps_must_beat_raw_ones_clearly_to_be_kept() -> None:
    rng = np.random.default_rng(3)
    normals, defects = _normal_maps(rng, 8), _normal_maps(rng, 8)
    defects[:, 9:12, 9:12] += 4.0  # interior defects the borders hide from raw scores
    maps, labels = np.concatenate([normals, defects]), [0] * 8 + [1] * 8
    assert _local_variant(maps, 8, labels, "auto", 10)[0] == "standardised"
    assert _local_variant(maps, 8, labels, "off", 10)[0] == "raw"
    plain = np.concatenate([normals, normals + 0.5])  # a shift every variant sees alike: raw stays
    assert _local_variant(plain, 8, labels, "auto", 10)[0] == "raw"
    assert _local_variant(plain, 8, labels, "on", 10)[0] == "standardised"


def test_a_bank_within_coreset_keep_all_keeps_every_patch_and_a_bigger_one_takes_the_coreset(
    tmp_path: Path, real_features: TimmPatchFeatures, fabric: Product
) -> None:
    def bank_of(folder: str, keep_all: int) -> tuple[int, int]:
        s = small_settings(tmp_path / folder, global_score="off", coreset_keep_all=keep_all)
        svc = EvidenceService(s, real_features, BankStore(s.bank_store))
        svc.add_normal_images("l", DATASET, "woven_fabric", fabric.normals)
        bank = svc.bank(svc._key("l", DATASET, "woven_fabric"))
        return int(bank.memory.shape[0]), bank.patches_seen

    kept, seen = bank_of("all", 10_000_000)
    assert kept == seen
    sampled, seen = bank_of("coreset", 10)
    assert sampled == round(0.1 * seen) or sampled < 0.2 * seen


def test_the_self_tests_latency_scales_its_search_to_the_bank_it_will_serve() -> None:
    s = EvidenceSettings()
    small = _search_scale(s, 2_000, 4096)  # a tiny bank: exact, never cheaper than what was measured
    kept = _search_scale(s, 40 * 3136, 4096)  # every patch, through IVF
    big = _search_scale(s, 400 * 3136, 4096)  # over coreset_keep_all: the coreset, through IVF
    flat = _search_scale(EvidenceSettings(nn_engine="flat"), 40 * 3136, 4096)
    assert small == 1.0 and kept < flat / 10 and flat == 40 * 3136 / 4096 and big > 0
