"""A foreign-data test set: grey crops of real texture photographs (scikit-image's `skimage.data`), defects drawn in.

Nobody on the team drew these images: brick, grass and gravel are 512x512 grey photographs shipped offline by
scikit-image. Each texture is a product. Normal images are 250x250 grey crops (a random window of 224-256
px, scaled to 250, optionally mirrored, with a little brightness jitter and sensor noise); defective ones are
held-out crops with one defect drawn in.

The split is frozen here, before any tuning (commit "Foreign set: split frozen before tuning"):

- regions: the tuning split crops only the top half of every photograph (rows 0-255), the evaluation split
  only the bottom half (rows 256-511), so the two share no pixel of any source photo;
- seeds: tuning 0, evaluation 1000 (the generator bench's convention);
- sizes: 40 normal images onboarded per product, 24 held-out normals, 16 local and 16 global defects.

The defects are deliberately NOT the functions the stage's self-configuration draws
(services/evidence/selfconfig.py), or the self-test would grade itself:

- local (with a mask): `rotated_patch` (a blob of the texture from elsewhere, turned 90 degrees: the weave
  breaks), `swirl` (skimage's swirl warp in a small disc), `smudge` (a grey-level median over a blob), `stain`
  (a soft multiplicative darkening or lightening);
- global (the whole image): `decorrelate` (each pixel swapped with a random neighbour within 1 px: the texture
  is less correlated everywhere), `gamma` (a tone curve), `jitter` (a smooth random displacement field of
  about a pixel), `unsharp` (a mild unsharp mask).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

TEXTURES = ("brick", "grass", "gravel")
SIZE = 250
WINDOW = (224, 256)  # crop side before scaling to SIZE
SPLIT_ROWS = {"tuning": (0, 256), "eval": (256, 512)}
FOREIGN_SPLITS: dict[str, dict[str, Any]] = {
    "tuning": {"seed": 0, "rows": SPLIT_ROWS["tuning"], "normals": 40, "held_out": 24, "local": 16, "global": 16},
    "eval": {"seed": 1000, "rows": SPLIT_ROWS["eval"], "normals": 40, "held_out": 24, "local": 16, "global": 16},
}
DATASET = "Foreign"


@dataclass
class ForeignImage:
    """One image: grey pixels (uint8, SIZE x SIZE), its label and defect, the defect's mask (all False if none)."""

    pixels: np.ndarray
    kind: str  # normal, local, global
    defect: str
    mask: np.ndarray
    window: tuple[int, int, int]  # (row, col, side) of the crop in its photograph

    def image(self) -> Image.Image:
        return Image.fromarray(self.pixels, mode="L").convert("RGB")


@dataclass
class ForeignProduct:
    texture: str
    normals: list[ForeignImage]  # onboarded
    queries: list[ForeignImage]  # held-out normals, then local, then global defects


def photograph(texture: str) -> np.ndarray:
    """The source photograph, float32 grey in [0, 255]."""
    import skimage.data

    img = np.asarray(getattr(skimage.data, texture)(), dtype=np.float32)
    if img.ndim == 3:
        img = img[..., :3].mean(-1)
    return img


def _rng(seed: int, texture: str, kind: str, index: int) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(texture.encode()), zlib.crc32(kind.encode()), index])


def crop(photo: np.ndarray, rows: tuple[int, int], rng: np.random.Generator) -> tuple[np.ndarray, tuple[int, int, int]]:
    """A random window inside `rows` of the photograph, scaled to SIZE, maybe mirrored, jittered: float32."""
    side = int(rng.integers(WINDOW[0], WINDOW[1] + 1))
    r0 = int(rng.integers(rows[0], rows[1] - side + 1))
    c0 = int(rng.integers(0, photo.shape[1] - side + 1))
    win = photo[r0 : r0 + side, c0 : c0 + side]
    out = np.asarray(Image.fromarray(win, mode="F").resize((SIZE, SIZE), Image.BILINEAR), np.float32)
    if rng.random() < 0.5:
        out = out[:, ::-1]
    out = out * rng.uniform(0.97, 1.03) + rng.normal(0, 1.5, out.shape)
    return np.ascontiguousarray(out, np.float32), (r0, c0, side)


def _blob(rng: np.random.Generator, lo: int = 14, hi: int = 30) -> tuple[np.ndarray, np.ndarray]:
    """An irregular blob's soft weight (0..1) and hard mask, away from the border."""
    from scipy import ndimage

    r = rng.uniform(lo, hi) / 2
    cy, cx = rng.uniform(r + 20, SIZE - r - 20, 2)
    yy, xx = np.mgrid[:SIZE, :SIZE]
    ang = np.arctan2(yy - cy, xx - cx)
    wobble = 1 + 0.25 * np.sin(3 * ang + rng.uniform(0, 6.3)) + 0.15 * np.sin(5 * ang + rng.uniform(0, 6.3))
    inside = (np.hypot(yy - cy, xx - cx) / (r * wobble)) < 1
    soft = ndimage.gaussian_filter(inside.astype(np.float32), 1.5)
    return soft, soft > 0.5


# --- local defects (masked) ----------------------------------------------------------------------------------


def rotated_patch(img: np.ndarray, photo: np.ndarray, rows: tuple[int, int], rng: np.random.Generator):
    """A blob of the same texture from elsewhere in the split's region, turned 90 degrees."""
    soft, mask = _blob(rng, 18, 34)
    other, _ = crop(photo, rows, rng)
    donor = np.rot90(other, int(rng.choice([1, 3])))
    return img * (1 - soft) + donor * soft, mask


def swirl(img: np.ndarray, photo: np.ndarray, rows: tuple[int, int], rng: np.random.Generator):
    """skimage's swirl warp in a small disc."""
    from skimage.transform import swirl as sk_swirl

    radius = rng.uniform(12, 20)
    cy, cx = rng.uniform(radius + 20, SIZE - radius - 20, 2)
    out = sk_swirl(
        img,
        center=(cx, cy),
        strength=rng.uniform(2.5, 4) * rng.choice([-1, 1]),
        radius=radius,
        preserve_range=True,
        mode="reflect",
    )
    yy, xx = np.mgrid[:SIZE, :SIZE]
    return out.astype(np.float32), np.hypot(yy - cy, xx - cx) < radius * 0.8


def smudge(img: np.ndarray, photo: np.ndarray, rows: tuple[int, int], rng: np.random.Generator):
    """A grey-level median filter over a blob (the weave's detail is smeared)."""
    from scipy import ndimage

    soft, mask = _blob(rng, 16, 30)
    med = ndimage.median_filter(img, size=int(rng.integers(5, 8)))
    return img * (1 - soft) + med * soft, mask


def stain(img: np.ndarray, photo: np.ndarray, rows: tuple[int, int], rng: np.random.Generator):
    """A soft multiplicative darkening or lightening of a blob."""
    soft, mask = _blob(rng, 14, 28)
    factor = 1 + rng.choice([-1, 1]) * rng.uniform(0.18, 0.3)
    return img * (1 + (factor - 1) * soft), mask


# --- global defects (whole image) ----------------------------------------------------------------------------


def decorrelate(img: np.ndarray, photo: np.ndarray, rows: tuple[int, int], rng: np.random.Generator):
    """A share of the pixels swapped with a random neighbour within one pixel: less correlated everywhere."""
    share = rng.uniform(0.35, 0.6)
    yy, xx = np.mgrid[:SIZE, :SIZE]
    pick = rng.random((SIZE, SIZE)) < share
    ny = np.clip(yy + rng.integers(-1, 2, (SIZE, SIZE)), 0, SIZE - 1)
    nx = np.clip(xx + rng.integers(-1, 2, (SIZE, SIZE)), 0, SIZE - 1)
    out = img.copy()
    out[pick] = img[ny[pick], nx[pick]]
    return out, np.ones((SIZE, SIZE), bool)


def gamma(img: np.ndarray, photo: np.ndarray, rows: tuple[int, int], rng: np.random.Generator):
    """A tone curve on the whole image."""
    g = rng.choice([rng.uniform(0.7, 0.8), rng.uniform(1.25, 1.4)])
    return 255.0 * (np.clip(img, 0, 255) / 255.0) ** g, np.ones((SIZE, SIZE), bool)


def jitter(img: np.ndarray, photo: np.ndarray, rows: tuple[int, int], rng: np.random.Generator):
    """A smooth random displacement field of about a pixel over the whole image."""
    from scipy import ndimage

    amp = rng.uniform(1.0, 1.8)
    dy, dx = (ndimage.gaussian_filter(rng.normal(0, 1, (SIZE, SIZE)), 3) for _ in range(2))
    dy, dx = dy / (dy.std() + 1e-6) * amp, dx / (dx.std() + 1e-6) * amp
    yy, xx = np.mgrid[:SIZE, :SIZE].astype(np.float32)
    out = ndimage.map_coordinates(img, [yy + dy, xx + dx], order=1, mode="reflect")
    return out.astype(np.float32), np.ones((SIZE, SIZE), bool)


def unsharp(img: np.ndarray, photo: np.ndarray, rows: tuple[int, int], rng: np.random.Generator):
    """A mild unsharp mask over the whole image."""
    from scipy import ndimage

    amount = rng.uniform(0.6, 1.0)
    return img + amount * (img - ndimage.gaussian_filter(img, 1.5)), np.ones((SIZE, SIZE), bool)


Defect = Callable[[np.ndarray, np.ndarray, tuple[int, int], np.random.Generator], tuple[np.ndarray, np.ndarray]]
LOCAL: dict[str, Defect] = {"rotated_patch": rotated_patch, "swirl": swirl, "smudge": smudge, "stain": stain}
GLOBAL: dict[str, Defect] = {"decorrelate": decorrelate, "gamma": gamma, "jitter": jitter, "unsharp": unsharp}


def _finish(pixels: np.ndarray) -> np.ndarray:
    return np.clip(np.round(pixels), 0, 255).astype(np.uint8)


def make_image(texture: str, split: str, kind: str, index: int, photo: np.ndarray | None = None) -> ForeignImage:
    """One image of the split, determined by (split seed, texture, kind, index) alone.

    kind: normal (onboarded), held_out (a held-out normal), local or global (a defect cycling through the family).
    """
    spec = FOREIGN_SPLITS[split]
    photo = photograph(texture) if photo is None else photo
    rng = _rng(spec["seed"], texture, kind, index)
    img, window = crop(photo, spec["rows"], rng)
    none = np.zeros((SIZE, SIZE), bool)
    if kind in ("normal", "held_out"):
        return ForeignImage(_finish(img), "normal", "", none, window)
    family = LOCAL if kind == "local" else GLOBAL
    name = sorted(family)[index % len(family)]
    out, mask = family[name](img, photo, spec["rows"], rng)
    return ForeignImage(_finish(out), kind, name, mask if kind == "local" else np.ones_like(mask), window)


def product(texture: str, split: str, scale: float = 1.0) -> ForeignProduct:
    """A texture's onboarded normals and its queries in the split; `scale` shrinks the query counts (tuning runs)."""
    spec = FOREIGN_SPLITS[split]
    photo = photograph(texture)

    def n(key: str) -> int:
        return max(2, round(spec[key] * scale))

    normals = [make_image(texture, split, "normal", i, photo) for i in range(spec["normals"])]
    queries = [make_image(texture, split, "held_out", i, photo) for i in range(n("held_out"))]
    queries += [make_image(texture, split, "local", i, photo) for i in range(n("local"))]
    queries += [make_image(texture, split, "global", i, photo) for i in range(n("global"))]
    return ForeignProduct(texture, normals, queries)


# --- evaluation through the stage --------------------------------------------------------------------------

LINE = "bench"


def self_config_summary(record: dict[str, Any] | None) -> dict[str, Any]:
    """The choice and why: each candidate's self-test AUROC (local, global) and latency, and what was skipped."""
    if not record:
        return {}
    keys = (
        "status",
        "chosen",
        "image_score",
        "global_score",
        "position",
        "augment",
        "auroc",
        "latency_ms",
        "seconds",
        "note",
    )
    out = {k: record[k] for k in keys if k in record}
    out["candidates"] = {
        c["name"]: {
            k: c[k]
            for k in ("auroc", "auroc_local", "auroc_global", "position", "latency_ms", "status", "seconds")
            if k in c
        }
        for c in record.get("candidates", [])
    }
    return out


def _kind_auroc(kinds: list[str], scores: list[float], kind: str) -> float:
    """Image AUROC of one defect kind against the held-out normals."""
    from services.common.anomaly_metrics import auroc

    idx = [i for i, k in enumerate(kinds) if k in ("normal", kind)]
    return round(auroc([int(kinds[i] == kind) for i in idx], [scores[i] for i in idx]), 4)


def evaluate(settings: Any, split: str, textures: tuple[str, ...] = TEXTURES, scale: float = 1.0) -> dict[str, Any]:
    """Onboard each texture's normals through the evidence stage, analyze its queries; metrics per product.

    Image AUROC is reported separately for local and for global defects (each against the held-out normals);
    pixel AUROC and AUPRO over the held-out normals and the local defects (a global defect's mask is the whole
    image). Verdicts: balanced accuracy over normals and defects, and false alarms on the held-out normals.
    """
    import time

    from services.common.anomaly_metrics import aupro, pixel_auroc
    from services.common.images import encode_png
    from services.evidence.core import EvidenceService

    service = EvidenceService.from_settings(settings)
    per: dict[str, Any] = {}
    for texture in textures:
        p = product(texture, split, scale)
        start = time.perf_counter()
        service.add_normal_images(LINE, DATASET, texture, [encode_png(im.image()) for im in p.normals])
        onboard_s = time.perf_counter() - start
        info = service.stats(LINE, DATASET, texture)[0]
        scores, maps, verdicts = [], [], []
        start = time.perf_counter()
        for q in p.queries:
            r = service.analyze_sync(LINE, DATASET, texture, q.image(), keep_map=True)
            scores.append(r.score)
            maps.append(r.anomaly_map)
            verdicts.append(r.anomalous)
        analyze_ms = 1000 * (time.perf_counter() - start) / len(p.queries)
        kinds = [q.kind for q in p.queries]
        normal = [i for i, k in enumerate(kinds) if k == "normal"]

        loc = normal + [i for i, k in enumerate(kinds) if k == "local"]
        bad = [i for i, k in enumerate(kinds) if k != "normal"]
        far = float(np.mean([verdicts[i] for i in normal]))
        recall = float(np.mean([verdicts[i] for i in bad]))
        per[texture] = {
            "image_auroc_local": _kind_auroc(kinds, scores, "local"),
            "image_auroc_global": _kind_auroc(kinds, scores, "global"),
            "pixel_auroc": round(pixel_auroc([p.queries[i].mask for i in loc], [maps[i] for i in loc]), 4),
            "aupro": round(aupro([p.queries[i].mask for i in loc], [maps[i] for i in loc]), 4),
            "balanced_accuracy": round((1 - far + recall) / 2, 4),
            "far_measured": round(far, 4),
            "onboard_s": round(onboard_s, 1),
            "analyze_ms_per_image": round(analyze_ms, 1),
            "backbone_id": info.backbone_id,
            "self_config": self_config_summary(info.self_config),
        }
    keys = ("image_auroc_local", "image_auroc_global", "pixel_auroc", "aupro", "balanced_accuracy", "far_measured")
    mean = {k: round(float(np.mean([v[k] for v in per.values()])), 4) for k in keys}
    return {
        "split": split,
        **{k: FOREIGN_SPLITS[split][k] for k in ("seed", "normals", "held_out")},
        "mean": mean,
        "far_configured": settings.false_alarm_rate,
        "per_product": per,
    }
