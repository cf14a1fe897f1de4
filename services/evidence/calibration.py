"""Two thresholds per product from held-out scores of its normal images: fail above one, review between them.

The scores come from the caller (services/evidence/core.py): k-fold, each normal image scored against a bank
built without its fold, as a new part is scored against the bank (`method` says which; banks saved before
k-fold carry their leave-one-out scores). A bank usually holds tens of images, too few for an empirical 1%
quantile (a conformal quantile needs 1/FAR - 1 = 99), so by default a distribution is fitted: an image score is
a maximum over patches, and maxima follow a Gumbel law (a normal fit misses the right skew: 5% false alarms at
a 1% target on the tuning split).

Why the fitted quantile alone is not enough: the plug-in 99% quantile of a Gumbel fitted to 40 scores calls a
fresh normal image anomalous 1.36% of the time on average even when the scores are exactly Gumbel, because the
false-alarm rate is convex in the fitted parameters and their sampling noise pushes it up. The threshold is
therefore mu + z * beta with the predictive factor z chosen so the *expected* rate over fresh normals is the
target (z = 4.96 instead of 4.60 at n=40, 1%); the fit is location-scale equivariant, so z depends only on
(n, FAR) and is computed once on standard Gumbel samples.

Why not leave-one-out any more (measured on the tuning split, seed 0, 150 more normals per category):
held-out normals scored against the full bank were higher and more spread than the leave-one-out scores
(std ratio 1.12-1.44), because the coreset kept from the other images was chosen around what the left-out
image covered; false alarms were 2.4% at a 1% target (2.5% on the eval seed). A fold's bank is built by the
same coreset procedure without the fold's images, so that bias is gone.

The review band: `review_threshold` (T_low) is the same policy's threshold at `far + review_rate`, so about
`review_rate` of normal parts land between it and `threshold` (T_high) and go to a person; review_rate 0: no
band (review_threshold == threshold).

The miss budget: once an operator has confirmed defects of the product (its defect library), the review threshold
also answers to them: it is lowered, if need be, so that at most `miss_rate` of the confirmed defects score at or
under it (pass, unseen by anyone), but never below the normal scores' threshold at `far + review_max` (the review
load it may cost is bounded). The fail threshold stays the false-alarm budget's alone: lowering it for a defect would
spend false alarms the line did not agree to, while a defect sent to review is seen by a person. So adding good
images can move T_high up (a bank that knows more normal variation scores it lower) without a confirmed defect
going back to pass.

Below `min_fit_images` no fit is trusted and the threshold is the largest score plus a margin (the review
threshold: the largest score itself). Every calibration reports what it did and the false-alarm rate it gives
on its own scores, so nobody reads more precision into it than is there.
"""

from __future__ import annotations

import dataclasses
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
    """A product's thresholds and how they were obtained.

    Attributes:
        threshold: image scores above it fail (T_high, at the false-alarm rate).
        policy: the policy that set it (max_margin when there were too few images for the configured one).
        images: how many held-out normal scores it rests on.
        far_target: the configured false-alarm rate.
        far_in_sample: the share of those scores above the threshold (0 for max_margin, by construction).
        mean, std, max: of the scores.
        note: a sentence for humans about how far to trust it.
        review_threshold: scores above it and up to `threshold` go to review (T_low; == threshold: no band).
        review_target: the share of normal parts the band was set to send to review.
        method: how the normal scores were obtained: kfold or leave-one-out (banks saved before k-fold).
        far_review_threshold: the review threshold the normal scores alone set (0: review_threshold's own).
        miss_target: the share of confirmed defects the review threshold may let pass (the miss budget).
        defects: how many confirmed defects the miss budget rests on (0: none applied).
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
    review_threshold: float = 0.0
    review_target: float = 0.0
    method: str = "kfold"
    far_review_threshold: float = 0.0
    miss_target: float = 0.0
    defects: int = 0

    def __post_init__(self) -> None:
        if not 0 < self.review_threshold <= self.threshold:
            self.review_threshold = self.threshold
        if not 0 < self.far_review_threshold <= self.threshold:
            self.far_review_threshold = self.review_threshold

    def band(self, score: float) -> str:
        """pass (<= review_threshold), review (up to threshold) or fail (> threshold)."""
        return "fail" if score > self.threshold else "review" if score > self.review_threshold else "pass"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Calibration:
        """A stored calibration; one saved before the band and k-fold has no band and was leave-one-out."""
        return cls(**{"method": "leave-one-out", **d})


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


def _threshold(s: np.ndarray, far: float, used: str, margin: float) -> float:
    """The policy's threshold at false-alarm rate `far` (see `calibrate`)."""
    n = int(s.size)
    if used == "gumbel":
        mu, beta = gumbel_fit(s)
        return mu + gumbel_predictive_factor(n, far) * beta
    if used == "normal":
        return float(np.mean(s)) + float(student_t.ppf(1.0 - far, n - 1)) * float(np.std(s, ddof=1)) * math.sqrt(
            1.0 + 1.0 / n
        )
    if used == "quantile":
        rank = math.ceil((n + 1) * (1.0 - far))  # conformal: a fresh normal exceeds it with probability <= far
        return float(np.sort(s)[min(max(rank, 1), n) - 1])
    return float(s.max()) * (1.0 + margin)


def calibrate(
    scores: np.ndarray | list[float],
    far: float,
    policy: str = "gumbel",
    margin: float = 0.1,
    min_fit_images: int = 8,
    review_rate: float = 0.0,
    method: str = "kfold",
) -> Calibration:
    """Thresholds at false-alarm rate `far` (fail) and `far + review_rate` (review) from held-out normal scores.

    Args:
        scores: held-out image scores of the normal images (at least 2).
        far: target share of normal images that fail.
        policy: gumbel, normal, quantile or max_margin (see EvidenceSettings.threshold_policy).
        margin: max_margin's relative margin above the largest score.
        min_fit_images: fewer scores than this use max_margin whatever the policy.
        review_rate: target share of normal images in the review band (0: no band).
        method: how the scores were obtained (kfold or leave-one-out), recorded and said in the note.
    """
    s = np.asarray(scores, dtype=np.float64).ravel()
    if s.size < 2:
        raise ValueError(f"calibration needs at least 2 held-out scores, got {s.size}")
    if not np.all(np.isfinite(s)):
        raise ValueError("calibration scores hold NaN or infinite values")
    if not 0 <= review_rate < 1 - far:
        raise ValueError(f"review_rate must be in [0, {1 - far:g}), got {review_rate}")
    n = int(s.size)
    std = float(np.std(s, ddof=1))
    used = policy if n >= min_fit_images else "max_margin"
    if used in ("gumbel", "normal") and std <= 0:
        used = "max_margin"
    floor = max(float(s.max()) * 1e-6, 1e-12)  # a positive threshold even for a degenerate bank
    thr = max(_threshold(s, far, used, margin), floor)
    if review_rate <= 0:
        low = thr
    elif used == "max_margin":
        low = max(float(s.max()), floor)  # too few to estimate a rate: review what no normal image reached
    else:
        low = max(_threshold(s, far + review_rate, used, margin), floor)
    in_sample = float(np.mean(s > thr))
    scored = f"{n} {'k-fold' if method == 'kfold' else method} scores"
    if used == "max_margin":
        note = (
            f"{n} normal images: too few to estimate a {far:.1%} false-alarm rate; threshold = largest normal "
            f"score + {margin:.0%}"
        )
    elif used == "quantile":
        needs = math.ceil(1.0 / far) - 1
        note = f"conformal {1 - far:.1%} quantile of {scored}" + (
            "" if n >= needs else f" (needs {needs}: with {n} it is the largest, about {1 / (n + 1):.1%} false alarms)"
        )
    else:
        note = (
            f"{used} fit to {scored}, corrected for their number to an expected {far:.1%} false alarms on fresh "
            f"normal images; in-sample {in_sample:.1%}"
        )
    if review_rate > 0:
        note += f"; review band from {low:.4g} (about {review_rate:.1%} of normal parts)"
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
        review_threshold=float(min(low, thr)),
        review_target=float(review_rate),
        method=method,
    )


def with_miss_budget(cal: Calibration, defect_scores: list[float], miss_rate: float, floor: float) -> Calibration:
    """`cal` with its review threshold lowered so at most `miss_rate` of the confirmed defects pass (module docstring).

    Args:
        cal: the normal scores' calibration (its `far_review_threshold` is where the review threshold starts).
        defect_scores: the confirmed defects' scores against the bank as it stands (not in it: a fresh part's score).
        miss_rate: the share of them that may score at or under the review threshold.
        floor: the review threshold never goes under this (the normal scores' threshold at far + review_max).
    """
    if not 0 <= miss_rate < 1:
        raise ValueError(f"miss_rate must be in [0, 1), got {miss_rate}")
    d = np.sort(np.asarray(defect_scores, dtype=np.float64).ravel())
    start = cal.far_review_threshold
    if not d.size:
        return dataclasses.replace(cal, review_threshold=start, miss_target=miss_rate, defects=0)
    allowed = math.floor(miss_rate * d.size)  # this many of the lowest may pass
    cut = float(d[allowed]) * (1.0 - 1e-6)  # just under it: the band is score > review_threshold
    low = min(cal.threshold, max(min(start, cut), min(floor, start)))
    out = dataclasses.replace(cal, review_threshold=low, miss_target=miss_rate, defects=int(d.size))
    passing = int(np.sum(d <= low))
    out.note = cal.note.split("; miss budget")[0] + (
        f"; miss budget: {passing} of {d.size} confirmed defects at or under the review threshold {low:.4g} "
        f"(allowed {miss_rate:.0%}{', held at the review-load floor' if low > cut else ''})"
    )
    return out
