"""A threshold per product from the leave-one-out scores of its normal images, at a configured false-alarm rate.

Each normal image is scored against the bank without its own patches, as a new normal image would be. A
bank usually holds tens of images, too few for an empirical 1% quantile (a conformal quantile needs
1/FAR - 1 = 99), so by default a distribution is fitted: an image score is a maximum over patches, and
maxima follow a Gumbel law (a normal fit misses the right skew: 5% false alarms at a 1% target on the
tuning split).

Why the fitted quantile alone was not enough: the plug-in 99% quantile of a Gumbel fitted to 40 scores
calls a fresh normal image anomalous 1.36% of the time on average even when the scores are exactly Gumbel,
because the false-alarm rate is convex in the fitted parameters and their sampling noise pushes it up.
The threshold is therefore mu + z * beta with the predictive factor z chosen so the *expected* rate over
fresh normals is the target (z = 4.96 instead of 4.60 at n=40, 1%); the fit is location-scale equivariant,
so z depends only on (n, FAR) and is computed once on standard Gumbel samples.

Leave-one-out against held-out, measured on the tuning split (seed 0, 448 px, coreset 0.1, 150 more normal
images per category from the generator): held-out normals scored against the full bank are not lower than
the leave-one-out scores, as one might expect from a bank one image larger, but higher and more spread
(held-out minus LOO mean, std ratio: round_part +0.3, 1.12; printed_board +0.7, 1.27; woven_fabric +0.3,
1.44 on 40). The coreset is one reason: the patches kept from the other images were chosen around what the
left-out image covered. So the finite-sample factor alone leaves false alarms above the target there (10 of
420 held-out normals, 2.4%, against 11 before it); widening beta by that std ratio (x1.25) gave 3 of 420 on
the same images, but it is not configured: it was found on the images it would be judged by.

Below `min_fit_images` no fit is trusted and the threshold is the largest score plus a margin. Every
calibration reports what it did and the false-alarm rate it gives on its own scores, so nobody reads more
precision into it than is there.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import Any

import numpy as np
from scipy.stats import t as student_t

EULER_GAMMA = 0.5772156649015329
PREDICTIVE_DRAWS = 20_000  # Monte Carlo samples behind a predictive factor (E[FAR] within ~1% of itself)
PREDICTIVE_SEED = 0


@dataclass
class Calibration:
    """A product's threshold and how it was obtained.

    Attributes:
        threshold: image scores above it are anomalous.
        policy: the policy that set it (max_margin when there were too few images for the configured one).
        images: how many leave-one-out scores it rests on.
        far_target: the configured false-alarm rate.
        far_in_sample: the share of those scores above the threshold (0 for max_margin, by construction).
        mean, std, max: of the scores.
        note: a sentence for humans about how far to trust it.
    """

    threshold: float
    policy: str
    images: int
    far_target: float
    far_in_sample: float
    mean: float
    std: float
    max: float
    note: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Calibration:
        return cls(**d)


def gumbel_fit(scores: np.ndarray) -> tuple[float, float]:
    """Location and scale of a Gumbel (maximum) law fitted to scores by the method of moments."""
    beta = float(np.std(scores, ddof=1)) * math.sqrt(6) / math.pi
    return float(np.mean(scores)) - EULER_GAMMA * beta, beta


def gumbel_quantile(scores: np.ndarray, q: float) -> float:
    """The q-quantile of a Gumbel (maximum) law fitted to scores by the method of moments."""
    mu, beta = gumbel_fit(scores)
    return mu - beta * math.log(-math.log(q))


@lru_cache(maxsize=256)
def gumbel_predictive_factor(n: int, far: float, draws: int = PREDICTIVE_DRAWS) -> float:
    """z such that mu + z * beta, fitted to n Gumbel scores, calls a fresh normal image anomalous with probability far.

    The plug-in quantile -log(-log(1 - far)) is too low on average: its false-alarm rate is convex in the fitted
    parameters, so their sampling noise raises it (n=40 at 1%: 1.36%). The fitted (mu, beta) are location-scale
    equivariant, so the false-alarm rate of mu + z * beta does not depend on the true law's parameters and z is
    found once per (n, far) on standard Gumbel samples (seeded: the same z every time).
    """
    x = np.random.default_rng(PREDICTIVE_SEED).gumbel(size=(draws, n))
    beta = x.std(axis=1, ddof=1) * math.sqrt(6) / math.pi
    mu = x.mean(axis=1) - EULER_GAMMA * beta

    def expected_far(z: float) -> float:
        return float(np.mean(-np.expm1(-np.exp(-(mu + z * beta)))))

    lo = -math.log(-math.log(1.0 - far))  # the plug-in factor: never above the target's
    hi = lo + 1.0
    while expected_far(hi) > far:
        hi += 1.0
    for _ in range(40):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if expected_far(mid) > far else (lo, mid)
    return hi


def calibrate(
    scores: np.ndarray | list[float],
    far: float,
    policy: str = "gumbel",
    margin: float = 0.1,
    min_fit_images: int = 8,
) -> Calibration:
    """Threshold at false-alarm rate `far` from leave-one-out normal scores (at least 2).

    Args:
        scores: leave-one-out image scores of the normal images.
        far: target share of normal images called anomalous.
        policy: gumbel, normal, quantile or max_margin (see EvidenceSettings.threshold_policy).
        margin: max_margin's relative margin above the largest score.
        min_fit_images: fewer scores than this use max_margin whatever the policy.
    """
    s = np.asarray(scores, dtype=np.float64).ravel()
    if s.size < 2:
        raise ValueError(f"calibration needs at least 2 leave-one-out scores, got {s.size}")
    if not np.all(np.isfinite(s)):
        raise ValueError("calibration scores hold NaN or infinite values")
    n = int(s.size)
    used = policy if n >= min_fit_images else "max_margin"
    std = float(np.std(s, ddof=1))
    if used == "gumbel" and std > 0:
        mu, beta = gumbel_fit(s)
        thr = mu + gumbel_predictive_factor(n, far) * beta
    elif used == "normal" and std > 0:
        thr = float(np.mean(s)) + float(student_t.ppf(1.0 - far, n - 1)) * std * math.sqrt(1.0 + 1.0 / n)
    elif used == "quantile":
        rank = math.ceil((n + 1) * (1.0 - far))  # conformal: a fresh normal exceeds it with probability <= far
        thr = float(np.sort(s)[min(rank, n) - 1])
    else:
        used = "max_margin"
        thr = float(s.max()) * (1.0 + margin)
    thr = max(thr, float(s.max()) * 1e-6, 1e-12)  # a positive threshold even for a degenerate bank
    in_sample = float(np.mean(s > thr))
    if used == "max_margin":
        note = (
            f"{n} normal images: too few to estimate a {far:.1%} false-alarm rate; threshold = largest normal "
            f"score + {margin:.0%}"
        )
    elif used == "quantile":
        needs = math.ceil(1.0 / far) - 1
        note = f"conformal {1 - far:.1%} quantile of {n} scores" + (
            "" if n >= needs else f" (needs {needs}: with {n} it is the largest, about {1 / (n + 1):.1%} false alarms)"
        )
    else:
        note = (
            f"{used} fit to {n} leave-one-out scores, corrected for their number to an expected {far:.1%} false "
            f"alarms on fresh normal images; in-sample {in_sample:.1%}"
        )
    return Calibration(
        threshold=float(thr),
        policy=used,
        images=n,
        far_target=far,
        far_in_sample=in_sample,
        mean=float(s.mean()),
        std=std,
        max=float(s.max()),
        note=note,
    )
