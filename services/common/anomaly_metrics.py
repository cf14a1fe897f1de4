"""Anomaly-detection metrics of the MVTec AD protocol: image AUROC, pixel AUROC, AUPRO.

- `auroc`: area under the ROC curve, ties counted half (the Mann-Whitney statistic), as sklearn computes it.
- `pixel_auroc`: the same over every pixel of every image (masks as labels, maps as scores).
- `aupro`: the per-region overlap curve of the MVTec AD evaluation code: at each threshold, the mean over
  all ground-truth regions (8-connected components of the masks) of the share of the region's pixels above
  it, against the false-positive rate over all normal pixels; integrated up to an FPR of 0.3 and divided
  by 0.3, so a perfect detector scores 1.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

AUPRO_FPR_LIMIT = 0.3


def _curve_points(labels: np.ndarray, scores: np.ndarray, weights: np.ndarray | None = None):
    """Cumulative positives and negatives at each distinct score, highest first (one point per threshold)."""
    order = np.argsort(-scores, kind="mergesort")
    s = scores[order]
    y = labels[order]
    last = np.r_[np.flatnonzero(np.diff(s)), s.size - 1]  # the last index of each run of equal scores
    pos = np.cumsum(y if weights is None else weights[order])[last]
    neg = np.cumsum(~y)[last]
    return pos, neg


def auroc(labels: Sequence[int] | np.ndarray, scores: Sequence[float] | np.ndarray) -> float:
    """Area under the ROC curve of `scores` separating `labels` (1 = anomalous); NaN if a class is missing."""
    y = np.asarray(labels).astype(bool).ravel()
    s = np.asarray(scores, dtype=np.float64).ravel()
    if y.size != s.size:
        raise ValueError(f"{y.size} labels but {s.size} scores")
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    tps, fps = _curve_points(y, s)
    tpr = np.r_[0.0, tps / n_pos]
    fpr = np.r_[0.0, fps / n_neg]
    return float(np.trapezoid(tpr, fpr))


def pixel_auroc(masks: Sequence[np.ndarray], maps: Sequence[np.ndarray]) -> float:
    """AUROC over all pixels of all images; each mask (bool or 0/1) must have its map's shape."""
    _check_pairs(masks, maps)
    y = np.concatenate([np.asarray(m).astype(bool).ravel() for m in masks])
    s = np.concatenate([np.asarray(a, dtype=np.float32).ravel() for a in maps])
    return auroc(y, s)


def _check_pairs(masks: Sequence[np.ndarray], maps: Sequence[np.ndarray]) -> None:
    if len(masks) != len(maps):
        raise ValueError(f"{len(masks)} masks but {len(maps)} maps")
    for i, (m, a) in enumerate(zip(masks, maps, strict=True)):
        if np.shape(m) != np.shape(a):
            raise ValueError(f"image {i}: mask shape {np.shape(m)} differs from map shape {np.shape(a)}")


def pro_curve(masks: Sequence[np.ndarray], maps: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(FPR, PRO) at every distinct threshold, from the highest down, starting at (0, 0)."""
    from scipy import ndimage

    _check_pairs(masks, maps)
    structure = np.ones((3, 3), dtype=int)
    weights, labels, scores = [], [], []
    regions = 0
    for m, a in zip(masks, maps, strict=True):
        gt = np.asarray(m).astype(bool)
        comp, n = ndimage.label(gt, structure=structure)
        w = np.zeros(gt.shape, dtype=np.float64)
        if n:
            sizes = np.bincount(comp.ravel())
            w[gt] = 1.0 / sizes[comp[gt]]
        regions += n
        weights.append(w.ravel())
        labels.append(gt.ravel())
        scores.append(np.asarray(a, dtype=np.float64).ravel())
    y = np.concatenate(labels)
    n_ok = int((~y).sum())
    if regions == 0 or n_ok == 0:
        return np.array([0.0]), np.array([0.0])
    pro_sum, fp = _curve_points(y, np.concatenate(scores), np.concatenate(weights))
    return np.r_[0.0, fp / n_ok], np.r_[0.0, pro_sum / regions]


def aupro(masks: Sequence[np.ndarray], maps: Sequence[np.ndarray], fpr_limit: float = AUPRO_FPR_LIMIT) -> float:
    """Normalised area under the PRO curve up to `fpr_limit`; NaN when there is no defect region or no normal pixel."""
    fpr, pro = pro_curve(masks, maps)
    if fpr.size < 2:
        return float("nan")
    cut = int(np.searchsorted(fpr, fpr_limit, side="right"))
    x, y = fpr[:cut], pro[:cut]
    if cut < fpr.size and x[-1] < fpr_limit:  # interpolate the curve at the limit
        x0, x1, y0, y1 = fpr[cut - 1], fpr[cut], pro[cut - 1], pro[cut]
        y_lim = y0 + (y1 - y0) * (fpr_limit - x0) / (x1 - x0)
        x, y = np.r_[x, fpr_limit], np.r_[y, y_lim]
    return float(np.trapezoid(y, x) / fpr_limit)
