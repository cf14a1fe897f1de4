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
