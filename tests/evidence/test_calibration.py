"""Per-product thresholds (fail and review) from held-out normal scores, honest about small samples."""

from __future__ import annotations

from statistics import NormalDist

import numpy as np
import pytest

from services.evidence.calibration import (
    Calibration,
    calibrate,
    gumbel_predictive_factor,
    gumbel_quantile,
    with_miss_budget,
)
from services.evidence.core import on_local_scale


def fresh_far_gumbel(thr: float, mu: float, beta: float) -> float:
    """The exact share of fresh Gumbel(mu, beta) scores above thr."""
    return float(-np.expm1(-np.exp(-(thr - mu) / beta)))


@pytest.mark.parametrize(("n", "far"), [(40, 0.01), (20, 0.05), (100, 0.01)])
def test_gumbel_threshold_gives_the_asked_false_alarm_rate_on_fresh_normal_scores(n: int, far: float) -> None:
    rng = np.random.default_rng(0)
    rates = [fresh_far_gumbel(calibrate(rng.gumbel(10.0, 1.5, size=n), far).threshold, 10.0, 1.5) for _ in range(2000)]
    assert float(np.mean(rates)) == pytest.approx(far, rel=0.12)


def test_the_plug_in_gumbel_quantile_alone_would_raise_false_alarms_from_few_scores() -> None:
    rng = np.random.default_rng(1)
    banks = [rng.gumbel(0.0, 1.0, size=40) for _ in range(2000)]
    plug_in = np.mean([fresh_far_gumbel(gumbel_quantile(b, 0.99), 0.0, 1.0) for b in banks])
    assert plug_in > 0.012 and gumbel_predictive_factor(40, 0.01) > -np.log(-np.log(0.99))


def test_normal_threshold_gives_the_asked_false_alarm_rate_on_fresh_normal_scores() -> None:
    rng = np.random.default_rng(2)
    rates = []
    for _ in range(2000):
        thr = calibrate(rng.normal(5.0, 2.0, size=40), 0.01, policy="normal").threshold
        rates.append(1.0 - NormalDist(5.0, 2.0).cdf(thr))
    assert float(np.mean(rates)) == pytest.approx(0.01, rel=0.12)


def test_gumbel_quantile_matches_the_closed_form_for_a_large_sample() -> None:
    rng = np.random.default_rng(1)
    scores = rng.gumbel(5.0, 2.0, size=200_000)
    expected = 5.0 - 2.0 * np.log(-np.log(0.99))
    assert gumbel_quantile(scores, 0.99) == pytest.approx(expected, rel=0.01)


def test_few_images_fall_back_to_the_largest_score_plus_a_margin_and_say_so() -> None:
    cal = calibrate([1.0, 2.0, 4.0], far=0.01, policy="gumbel", margin=0.25, min_fit_images=8)
    assert cal.policy == "max_margin" and cal.threshold == pytest.approx(5.0)
    assert cal.far_in_sample == 0.0 and "too few" in cal.note and cal.images == 3


def test_every_policy_reports_its_in_sample_false_alarm_rate() -> None:
    scores = np.linspace(1.0, 2.0, 100)
    for policy in ("gumbel", "normal", "quantile"):
        cal = calibrate(scores, far=0.1, policy=policy)
        assert cal.policy == policy
        assert cal.far_in_sample == pytest.approx(np.mean(scores > cal.threshold))
        assert 0.0 <= cal.far_in_sample <= 0.15
    assert calibrate(scores, far=0.1, policy="quantile").threshold == pytest.approx(1.909, abs=0.002)


def test_a_quantile_from_too_few_images_says_how_many_it_needs() -> None:
    cal = calibrate(np.linspace(1, 2, 20), far=0.01, policy="quantile")
    assert "needs 99" in cal.note


def test_identical_scores_still_give_a_threshold_above_them() -> None:
    cal = calibrate([2.0] * 10, far=0.01)
    assert cal.policy == "max_margin" and cal.threshold > 2.0


@pytest.mark.parametrize("scores", [[1.0], [1.0, float("nan")]])
def test_calibration_refuses_what_it_cannot_use(scores: list[float]) -> None:
    with pytest.raises(ValueError):
        calibrate(scores, far=0.01)


def test_the_review_threshold_sits_below_the_fail_threshold_at_the_review_budget() -> None:
    rng = np.random.default_rng(3)
    scores = rng.gumbel(10.0, 1.5, size=40)
    cal = calibrate(scores, far=0.01, review_rate=0.05)
    wider = calibrate(scores, far=0.06)  # the same fit at false alarms + review: the band's lower edge
    assert cal.review_threshold == pytest.approx(wider.threshold) and cal.review_threshold < cal.threshold
    assert cal.review_target == 0.05 and "review band" in cal.note and cal.method == "kfold"


def test_scores_around_both_thresholds_pass_go_to_review_or_fail() -> None:
    cal = calibrate(np.random.default_rng(4).gumbel(10.0, 1.5, size=40), far=0.01, review_rate=0.05)
    low, high = cal.review_threshold, cal.threshold
    assert [cal.band(x) for x in (low - 1e-3, low, low + 1e-3, high, high + 1e-3)] == [
        "pass",
        "pass",
        "review",
        "review",
        "fail",
    ]


def test_a_review_rate_of_zero_means_no_band() -> None:
    cal = calibrate(np.random.default_rng(5).gumbel(10.0, 1.5, size=40), far=0.01, review_rate=0.0)
    assert cal.review_threshold == cal.threshold
    assert {cal.band(x) for x in np.linspace(0, 2 * cal.threshold, 101)} == {"pass", "fail"}


def test_too_few_images_send_what_no_normal_image_reached_to_review() -> None:
    cal = calibrate([1.0, 2.0, 4.0], far=0.01, margin=0.25, review_rate=0.05)
    assert (cal.review_threshold, cal.threshold) == pytest.approx((4.0, 5.0))


def test_a_calibration_saved_before_the_band_loads_as_leave_one_out_without_a_band() -> None:
    old = calibrate(np.linspace(1, 2, 20), far=0.01).to_dict()
    for key in ("review_threshold", "review_target", "method"):
        old.pop(key)
    cal = Calibration.from_dict(old)
    assert cal.method == "leave-one-out" and cal.review_threshold == cal.threshold


def test_the_global_score_maps_onto_the_local_scale_through_both_thresholds() -> None:
    low, high, glow, ghigh = 8.0, 10.0, 3.0, 4.0
    assert on_local_scale(glow, glow, ghigh, low, high) == pytest.approx(low)
    assert on_local_scale(ghigh, glow, ghigh, low, high) == pytest.approx(high)
    assert on_local_scale(3.5, glow, ghigh, low, high) == pytest.approx(9.0)
    assert on_local_scale(8.0, glow, ghigh, low, high) == pytest.approx(20.0)  # above: the old linear scale
    mapped = [on_local_scale(g, glow, ghigh, low, high) for g in np.linspace(0, 10, 201)]
    assert np.all(np.diff(mapped) >= 0)
    assert on_local_scale(2.0, 4.0, 4.0, 10.0, 10.0) == pytest.approx(5.0)  # no band: linear


def normal_calibration() -> Calibration:
    return calibrate(np.random.default_rng(3).gumbel(30.0, 2.0, size=40), 0.01, review_rate=0.05)


def test_the_miss_budget_lowers_the_review_threshold_under_the_confirmed_defects() -> None:
    cal = normal_calibration()
    defects = [cal.review_threshold - 1.0, cal.threshold + 5.0, cal.threshold + 9.0]
    out = with_miss_budget(cal, defects, miss_rate=0.0, floor=0.0)
    assert out.band(defects[0]) == "review" and out.threshold == cal.threshold
    assert out.defects == 3 and out.far_review_threshold == cal.review_threshold


def test_the_miss_budget_never_raises_the_review_threshold_nor_passes_its_floor() -> None:
    cal = normal_calibration()
    high = with_miss_budget(cal, [cal.threshold + 10.0], miss_rate=0.1, floor=0.0)
    assert high.review_threshold == cal.review_threshold
    floor = cal.review_threshold - 2.0
    low = with_miss_budget(cal, [floor - 5.0, cal.threshold + 1.0], miss_rate=0.0, floor=floor)
    assert low.review_threshold == floor and "review-load floor" in low.note


def test_the_miss_budget_lets_its_share_of_confirmed_defects_pass() -> None:
    cal = normal_calibration()
    below = [cal.review_threshold - 3.0 - i for i in range(10)]  # all ten would pass at the normal band
    out = with_miss_budget(cal, below, miss_rate=0.2, floor=0.0)
    assert sum(out.band(d) == "pass" for d in below) == 2


def test_no_confirmed_defects_restore_the_normal_review_threshold() -> None:
    cal = normal_calibration()
    lowered = with_miss_budget(cal, [cal.review_threshold - 4.0], miss_rate=0.0, floor=0.0)
    assert with_miss_budget(lowered, [], miss_rate=0.0, floor=0.0).review_threshold == cal.review_threshold
