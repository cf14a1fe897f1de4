"""Image-level anomaly scores for global defects: a texture that changed a little everywhere.

A nearest-patch score sees what no normal patch resembles; when every patch moved a little (less contrast,
less correlation, another frequency), each still finds a near neighbour and the image scores normal. Two
image-level scores, both calibrated on the same normal images with leave-one-out scores:

- `mahalanobis`: the image's descriptor (per-channel mean and standard deviation of its patch features) against
  a Gaussian of the normal images' descriptors, standardised per dimension and shrunk toward the identity
  (Ledoit-Wolf): with 40 images and a few hundred dimensions the sample covariance alone is singular;
- `mean_distance`: the mean nearest-patch distance over the whole image (where the local score takes the
  largest ones).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

GLOBAL_KINDS = ("mahalanobis", "mean_distance")


def descriptor(feats: np.ndarray) -> np.ndarray:
    """(h, w, D) patch features -> (2D,) per-channel mean and standard deviation."""
    x = np.asarray(feats, np.float32).reshape(-1, feats.shape[-1])
    return np.concatenate([x.mean(0), x.std(0)])


def ledoit_wolf(x: np.ndarray) -> np.ndarray:
    """Ledoit-Wolf shrinkage covariance of rows `x` (n, d), shrunk toward a scaled identity."""
    n, d = x.shape
    xc = x - x.mean(0)
    s = xc.T @ xc / n
    mu = float(np.trace(s)) / d
    delta = float(((s - mu * np.eye(d)) ** 2).sum()) / d
    sq = (xc * xc).sum(1)
    quad = np.einsum("ij,jk,ik->i", xc, s, xc)
    beta = float(np.sum(sq**2 - 2 * quad + (s**2).sum())) / (n * n * d)
    shrink = 1.0 if delta <= 0 else min(beta, delta) / delta
    return shrink * mu * np.eye(d) + (1 - shrink) * s


@dataclass
class GaussianModel:
    """The normal images' descriptors as a Gaussian: centre, per-dimension scale, precision (standardised)."""

    mean: np.ndarray
    scale: np.ndarray
    precision: np.ndarray

    @classmethod
    def fit(cls, descriptors: np.ndarray) -> GaussianModel:
        x = np.asarray(descriptors, np.float64)
        mean = x.mean(0)
        scale = x.std(0) + 1e-6 * (float(np.abs(x).mean()) + 1e-12)
        z = (x - mean) / scale
        cov = ledoit_wolf(z) if x.shape[0] > 1 else np.eye(x.shape[1])
        return cls(mean, scale, np.linalg.pinv(cov + 1e-6 * np.eye(cov.shape[0])))

    def score(self, desc: np.ndarray) -> float:
        z = (np.asarray(desc, np.float64) - self.mean) / self.scale
        return float(np.sqrt(max(float(z @ self.precision @ z), 0.0)))


def mahalanobis_loo(descriptors: np.ndarray) -> list[float]:
    """Each image's Mahalanobis score against a Gaussian fitted without it."""
    x = np.asarray(descriptors, np.float64)
    idx = np.arange(x.shape[0])
    return [GaussianModel.fit(x[idx != i]).score(x[i]) for i in idx]


def mean_distance(patch_dist: np.ndarray) -> float:
    return float(np.mean(patch_dist))
