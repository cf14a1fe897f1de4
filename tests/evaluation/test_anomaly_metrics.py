"""Image AUROC, pixel AUROC and AUPRO against cases computed by hand."""

from __future__ import annotations

import numpy as np
import pytest

from services.common.anomaly_metrics import aupro, auroc, pixel_auroc, pro_curve


def test_auroc_counts_the_pairs_ranked_correctly() -> None:
    # pairs (anomalous, normal): (0.35 > 0.1) yes, (0.35 > 0.4) no, (0.8 > both) yes, yes -> 3 of 4
    assert auroc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.75)


def test_auroc_counts_a_tie_as_half() -> None:
    assert auroc([0, 1, 0, 1], [0.5, 0.5, 0.1, 0.9]) == pytest.approx((1 + 0.5 + 1 + 1) / 4)


def test_auroc_is_nan_without_both_classes() -> None:
    assert np.isnan(auroc([1, 1], [0.2, 0.3]))


def test_pixel_auroc_pools_every_pixel_of_every_image() -> None:
    masks = [np.array([[1, 0], [0, 0]]), np.zeros((2, 2))]
    maps = [np.array([[0.9, 0.2], [0.95, 0.1]]), np.array([[0.3, 0.0], [0.05, 0.2]])]
    # the one anomalous pixel (0.9) beats 6 of the 7 normal pixels (not 0.95)
    assert pixel_auroc(masks, maps) == pytest.approx(6 / 7)


def test_aupro_integrates_the_region_overlap_up_to_an_fpr_of_0_3() -> None:
    # one region of 2 pixels, 4 normal pixels. Thresholds from the top:
    # 0.9: PRO 1/2, FPR 0;  0.8: PRO 1/2, FPR 1/4;  0.2: PRO 1, FPR 1/4;  0.1: PRO 1, FPR 1.
    # Area up to 0.3: 0.25 * 0.5 + 0.05 * 1 = 0.175; normalised by 0.3.
    mask = np.array([[1, 1, 0, 0, 0, 0]])
    amap = np.array([[0.9, 0.2, 0.8, 0.1, 0.1, 0.1]])
    assert aupro([mask], [amap]) == pytest.approx(0.175 / 0.3)


def test_aupro_interpolates_the_curve_at_the_fpr_limit() -> None:
    # one threshold lifts both: the curve runs straight from (0, 0) to (1, 1); area up to 0.3 is 0.045
    assert aupro([np.array([[1, 0]])], [np.array([[0.5, 0.5]])]) == pytest.approx(0.045 / 0.3)


def test_every_region_weighs_the_same_whatever_its_size() -> None:
    mask = np.array([[1, 0, 1, 1, 1, 0, 0, 0]])  # regions of 1 and 3 pixels
    amap = np.array([[0.9, 0.0, 0.1, 0.1, 0.1, 0.0, 0.0, 0.0]])
    fpr, pro = pro_curve([mask], [amap])
    assert (fpr[1], pro[1]) == (0.0, 0.5)  # at 0.9 the small region is found: half the regions, a quarter of pixels


def test_regions_are_8_connected() -> None:
    mask = np.array([[1, 0], [0, 1]])  # diagonal neighbours: one region
    _, pro = pro_curve([mask], [np.array([[0.9, 0.0], [0.0, 0.1]])])
    assert pro[1] == pytest.approx(0.5)


def test_a_perfect_map_scores_one_and_a_map_without_regions_is_nan() -> None:
    masks = [np.array([[1, 1], [0, 0]]), np.zeros((2, 2))]
    assert aupro(masks, [m.astype(float) for m in masks]) == pytest.approx(1.0)
    assert np.isnan(aupro([np.zeros((2, 2))], [np.ones((2, 2))]))


def test_mismatched_shapes_are_refused() -> None:
    with pytest.raises(ValueError, match="image 0: mask shape"):
        pixel_auroc([np.zeros((2, 2))], [np.zeros((3, 3))])
