"""A threshold per product from the leave-one-out scores of its normal images, at a configured false-alarm rate.

Each normal image is scored against the bank without its own patches, as a new normal image would be. A
bank usually holds tens of images, too few for an empirical 1% quantile, so by default a distribution is
fitted: an image score is a maximum over patches, and maxima follow a Gumbel law. Below `min_fit_images`
no fit is trusted and the threshold is the largest score plus a margin. Every calibration reports what it
did and the false-alarm rate it gives on its own scores, so nobody reads more precision into it than is there.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from statistics import NormalDist
from typing import Any

import numpy as np

EULER_GAMMA = 0.5772156649015329


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


def gumbel_quantile(scores: np.ndarray, q: float) -> float:
    """The q-quantile of a Gumbel (maximum) law fitted to scores by the method of moments."""
    beta = float(np.std(scores, ddof=1)) * math.sqrt(6) / math.pi
    mu = float(np.mean(scores)) - EULER_GAMMA * beta
    return mu - beta * math.log(-math.log(q))


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
        thr = gumbel_quantile(s, 1.0 - far)
    elif used == "normal" and std > 0:
        thr = float(np.mean(s)) + NormalDist().inv_cdf(1.0 - far) * std
    elif used == "quantile":
        thr = float(np.quantile(s, 1.0 - far, method="higher"))
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
        honest = n >= math.ceil(1.0 / far)
        note = f"empirical {1 - far:.1%} quantile of {n} scores" + ("" if honest else f" (needs {math.ceil(1 / far)})")
    else:
        note = f"{used} fit to {n} leave-one-out scores; in-sample false alarms {in_sample:.1%} (target {far:.1%})"
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
