"""Small statistics the harness needs; scipy computes the textbook ones.

- `wilson_interval`: a binomial confidence interval for an accuracy (scipy's binomtest, Wilson method).
- `mcnemar`: the paired test for two runs answering the same questions: exact
  binomial on the discordant pairs when they are few, chi-square with continuity
  correction otherwise (scipy's binomtest and chi2).
- `chance_interval`, `balanced_chance_interval`: where a guesser lands (no library has these).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist

from scipy.stats import binomtest, chi2

EXACT_MCNEMAR_MAX = 25
"""Up to this many discordant pairs McNemar uses the exact binomial test (the usual rule of thumb)."""


def z_value(confidence: float) -> float:
    """Two-sided normal quantile, e.g. 1.96 for 0.95."""
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    return NormalDist().inv_cdf(0.5 + confidence / 2)


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion; (0, 1) when n is 0.

    Wilson rather than the normal approximation because it stays inside [0, 1] and behaves at
    p near 0 or 1, which is where a small synthetic set puts the oracle and weak baselines.
    """
    if n <= 0:
        return 0.0, 1.0
    ci = binomtest(successes, n).proportion_ci(confidence_level=confidence, method="wilson")
    return float(ci.low), float(ci.high)


def chance_interval(probabilities: Sequence[float], confidence: float = 0.99) -> tuple[float, float]:
    """Where a guesser's accuracy should land: questions answered right with the given probabilities.

    The number right is Poisson-binomial (each question has its own option count); we use its mean and
    variance with a normal approximation, widened by half a question for continuity.
    """
    n = len(probabilities)
    if n == 0:
        return 0.0, 1.0
    mean = sum(probabilities) / n
    sd = math.sqrt(sum(p * (1 - p) for p in probabilities)) / n
    half = z_value(confidence) * sd + 0.5 / n
    return max(0.0, mean - half), min(1.0, mean + half)


def balanced_chance_interval(
    p_normal: Sequence[float], p_anomalous: Sequence[float], confidence: float = 0.99
) -> tuple[float, float]:
    """Chance interval for balanced accuracy, (acc on normals + acc on anomalous) / 2."""
    if not p_normal or not p_anomalous:
        return chance_interval([*p_normal, *p_anomalous], confidence)
    mean = (sum(p_normal) / len(p_normal) + sum(p_anomalous) / len(p_anomalous)) / 2
    var = (
        sum(p * (1 - p) for p in p_normal) / len(p_normal) ** 2
        + sum(p * (1 - p) for p in p_anomalous) / len(p_anomalous) ** 2
    )
    half = z_value(confidence) * math.sqrt(var) / 2 + 0.25 * (1 / len(p_normal) + 1 / len(p_anomalous))
    return max(0.0, mean - half), min(1.0, mean + half)


@dataclass(frozen=True)
class McNemarResult:
    """b: A right and B wrong; c: A wrong and B right; p_value two-sided; method 'exact', 'chi2' or 'none'."""

    b: int
    c: int
    statistic: float
    p_value: float
    method: str


def mcnemar(b: int, c: int, *, exact_max: int = EXACT_MCNEMAR_MAX) -> McNemarResult:
    """McNemar's test on the discordant pair counts of two paired runs.

    Args:
        b: questions run A answered right and run B wrong.
        c: questions run A answered wrong and run B right.
        exact_max: up to this many discordant pairs, the exact two-sided binomial test (p = 0.5) is used;
            above it, chi-square with Edwards' continuity correction, (|b - c| - 1)^2 / (b + c), one dof.
    """
    if b < 0 or c < 0:
        raise ValueError(f"counts must be non-negative, got b={b}, c={c}")
    n = b + c
    if n == 0:
        return McNemarResult(b, c, 0.0, 1.0, "none")
    if n <= exact_max:
        k = min(b, c)
        return McNemarResult(b, c, float(k), float(binomtest(k, n, 0.5).pvalue), "exact")
    stat = (abs(b - c) - 1) ** 2 / n
    return McNemarResult(b, c, stat, float(chi2.sf(stat, df=1)), "chi2")
