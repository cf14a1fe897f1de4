"""McNemar (exact and chi-square), Wilson intervals, chance intervals against known values."""

from __future__ import annotations

import math
import random

import pytest

from services.evaluation.stats import (
    balanced_chance_interval,
    chance_interval,
    mcnemar,
    wilson_interval,
)


def test_mcnemar_exact_matches_the_binomial_tail() -> None:
    assert mcnemar(0, 5).p_value == pytest.approx(2 / 32)
    assert mcnemar(1, 10).p_value == pytest.approx(2 * (1 + 11) / 2**11)
    assert mcnemar(3, 3).p_value == 1.0
    assert mcnemar(0, 0).method == "none" and mcnemar(0, 0).p_value == 1.0
    assert mcnemar(12, 13).method == "exact"


def test_mcnemar_large_counts_use_chi_square_with_continuity_correction() -> None:
    r = mcnemar(10, 30)
    assert r.method == "chi2"
    assert r.statistic == pytest.approx(19**2 / 40)
    # chi-square(1) survival = two-sided normal tail at sqrt(stat)
    z = math.sqrt(r.statistic)
    assert r.p_value == pytest.approx(2 * (1 - 0.5 * (1 + math.erf(z / math.sqrt(2)))))
    assert r.p_value == pytest.approx(0.002663, abs=2e-6)
    assert mcnemar(30, 10).p_value == r.p_value


def test_wilson_interval_known_values() -> None:
    lo, hi = wilson_interval(50, 100)
    assert (lo, hi) == (pytest.approx(0.4038, abs=1e-4), pytest.approx(0.5962, abs=1e-4))
    lo, hi = wilson_interval(0, 10)
    assert lo == pytest.approx(0.0, abs=1e-12) and hi == pytest.approx(0.2775, abs=1e-4)
    assert wilson_interval(0, 0) == (0.0, 1.0)


# (successes, n, confidence) -> the interval the hand-written Wilson formula gave before scipy computed it.
OLD_WILSON = {
    (0, 1, 0.95): (0.0, 0.7934506856227626),
    (1, 1, 0.95): (0.20654931437723745, 1.0),
    (3, 10, 0.95): (0.10779126740630102, 0.6032218525388546),
    (3, 10, 0.99): (0.07956631652306578, 0.6799753207988973),
    (97, 100, 0.95): (0.9154806357094724, 0.9897454759759611),
    (1, 3, 0.99): (0.040426629296084704, 0.855783984952333),
    (410, 1000, 0.95): (0.3799172576460708, 0.4407715588813291),
}
# (b, c) -> (statistic, p-value, method) from the hand-written McNemar before scipy computed it.
OLD_MCNEMAR = {
    (0, 1): (0.0, 1.0, "exact"),
    (1, 10): (1.0, 0.01171875, "exact"),
    (12, 13): (12.0, 1.0, "exact"),
    (2, 20): (2.0, 0.00012111663818359375, "exact"),
    (26, 0): (24.03846153846154, 9.443043861123432e-07, "chi2"),
    (100, 80): (2.0055555555555555, 0.15672386794511878, "chi2"),
    (7, 19): (4.653846153846154, 0.030984050098456638, "chi2"),
}


@pytest.mark.parametrize(("case", "old"), OLD_WILSON.items())
def test_scipy_wilson_interval_equals_the_hand_written_one(
    case: tuple[int, int, float], old: tuple[float, float]
) -> None:
    lo, hi = wilson_interval(*case)
    assert (lo, hi) == (pytest.approx(old[0], abs=1e-12), pytest.approx(old[1], abs=1e-12))
    assert isinstance(lo, float) and isinstance(hi, float)  # plain floats for JSON reports


@pytest.mark.parametrize(("counts", "old"), OLD_MCNEMAR.items())
def test_scipy_mcnemar_equals_the_hand_written_one(counts: tuple[int, int], old: tuple[float, float, str]) -> None:
    r = mcnemar(*counts)
    assert (r.statistic, r.p_value, r.method) == (pytest.approx(old[0]), pytest.approx(old[1], rel=1e-9), old[2])
    assert isinstance(r.p_value, float)


def test_chance_interval_holds_a_simulated_guesser_nearly_always() -> None:
    rng = random.Random(0)
    probs = [0.5] * 40 + [0.25] * 160
    lo, hi = chance_interval(probs, 0.99)
    assert lo < sum(probs) / len(probs) < hi
    inside = 0
    for _ in range(500):
        acc = sum(rng.random() < p for p in probs) / len(probs)
        inside += lo <= acc <= hi
    assert inside >= 490
    blo, bhi = balanced_chance_interval([0.5] * 30, [0.5] * 30)
    assert blo < 0.5 < bhi and bhi - blo < 0.5
