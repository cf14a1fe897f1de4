"""Self-configuration per product: choose the features from the product's normal images alone.

A feature choice fixed on one generator's data is tuned to its own test; a plant onboards products nobody here
saw. So when a bank is built (and again when it has grown by `auto_config_regrow`), part of the normal images
is held out, synthetic anomalies are drawn into them, and a small family of candidates is scored on how well
it separates them from the held-out normals, within the latency budget:

- candidates: backbone blocks (the configured stage outputs, the mid-stage blocks 2+3, the finer blocks 1+2 on
  small inputs), input sizes (`auto_config_sizes`, plus the images' own size when small), pooling; per
  candidate the image score (topk_mean or max_patch) and the global score (mahalanobis or mean_distance) are
  free variants of the same distances;
- cost: one backbone forward per input size feeds every block and pooling candidate of that size; each
  candidate then costs one exact nearest-patch search against a bank of at most `auto_config_patches`
  patches of the kept images;
- synthetic anomalies, several families so that no single one decides: local (a patch from elsewhere in the
  image or from another normal image, a blurred, sharpened or noised patch, a thin scratch, a small intensity
  spot) and global (contrast, blur, decorrelating noise, a zoom that shifts the texture's frequency).

The record (what was tried, each candidate's self-test AUROC and latency, what was skipped and why, the time
the choice took) is stored with the bank and shown by BankStats and `product check`.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from services.common.anomaly_metrics import auroc
from services.evidence.bank import choose_engine, searched_per_query
from services.evidence.config import EvidenceSettings
from services.evidence.features import FeatureChoice, Preprocessor, TimmPatchFeatures, aggregate
from services.evidence.global_score import GaussianModel, descriptor, mean_distance
from services.evidence.position import MIN_MAPS as MIN_POSITION_MAPS
from services.evidence.position import leave_one_out

log = logging.getLogger(__name__)

IMAGE_SCORES = ("topk_mean", "max_patch")
GLOBAL_SCORES = ("mahalanobis", "mean_distance")
HOLD_OUT_SHARE = 0.25
MAX_HELD_OUT = 8  # held-out normals at most (each costs a forward per input size)
MIN_ANOMALIES = 8  # per family group (local, global): fewer make the AUROC too coarse to choose by
MAX_FIT_IMAGES = 12  # the self-test's bank draws on at most this many kept images (forward cost)
TIE = 0.005  # self-test AUROCs closer than this are a tie: the fixed default, then the faster one wins
INDEX_COST = 2.0  # a patch compared through IVF/HNSW against one compared by the flat search (_search_scale)
POSITION_GAIN = 0.02  # position_norm auto: standardised maps must beat raw ones by this much (their tail is wider)


# --- synthetic anomalies (the self-test's own; the foreign benchmark draws different ones) ------------------


def _box(rng: np.random.Generator, h: int, w: int, lo: float = 0.06, hi: float = 0.14) -> tuple[int, int, int, int]:
    side = max(3, int(rng.uniform(lo, hi) * min(h, w)))
    y, x = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
    return y, x, side, side


def _blur(a: np.ndarray, sigma: float) -> np.ndarray:
    from scipy import ndimage

    return ndimage.gaussian_filter(a, (sigma, sigma, 0))


def cut_paste(img: np.ndarray, others: Sequence[np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """A patch from elsewhere in this image or from another normal image, pasted unrotated."""
    h, w = img.shape[:2]
    y, x, ph, pw = _box(rng, h, w)
    src = others[int(rng.integers(len(others)))] if others and rng.random() < 0.5 else img
    sh, sw = src.shape[:2]
    sy, sx = int(rng.integers(0, max(1, sh - ph + 1))), int(rng.integers(0, max(1, sw - pw + 1)))
    out = img.copy()
    patch = src[sy : sy + ph, sx : sx + pw]
    out[y : y + patch.shape[0], x : x + patch.shape[1]] = patch
    return out


def _patch_op(img: np.ndarray, rng: np.random.Generator, op: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    h, w = img.shape[:2]
    y, x, ph, pw = _box(rng, h, w)
    out = img.copy()
    out[y : y + ph, x : x + pw] = op(img[y : y + ph, x : x + pw])
    return out


def blur_patch(img: np.ndarray, others: Sequence[np.ndarray], rng: np.random.Generator) -> np.ndarray:
    return _patch_op(img, rng, lambda p: _blur(p, rng.uniform(1.5, 3.0)))


def sharpen_patch(img: np.ndarray, others: Sequence[np.ndarray], rng: np.random.Generator) -> np.ndarray:
    return _patch_op(img, rng, lambda p: p + rng.uniform(1.5, 3.0) * (p - _blur(p, 1.0)))


def noise_patch(img: np.ndarray, others: Sequence[np.ndarray], rng: np.random.Generator) -> np.ndarray:
    return _patch_op(img, rng, lambda p: p + rng.normal(0, rng.uniform(15, 30), p.shape[:2])[..., None])


def scratch(img: np.ndarray, others: Sequence[np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """A thin straight scratch, brighter or darker than its surroundings."""
    h, w = img.shape[:2]
    length = rng.uniform(0.15, 0.35) * min(h, w)
    y0, x0 = rng.uniform(0.2, 0.8) * h, rng.uniform(0.2, 0.8) * w
    ang = rng.uniform(0, math.pi)
    t = np.linspace(0, length, max(2, int(length * 2)))
    ys = np.clip((y0 + t * math.sin(ang)).astype(int), 0, h - 1)
    xs = np.clip((x0 + t * math.cos(ang)).astype(int), 0, w - 1)
    out = img.copy()
    delta = rng.choice([-1, 1]) * rng.uniform(40, 80)
    width = max(1, min(h, w) // 120)
    for d in range(width):
        out[np.clip(ys + d, 0, h - 1), xs] += delta
    return out


def spot(img: np.ndarray, others: Sequence[np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """A small disc whose intensity is shifted (soft edge)."""
    h, w = img.shape[:2]
    r = rng.uniform(0.02, 0.05) * min(h, w)
    cy, cx = rng.uniform(r, h - r), rng.uniform(r, w - r)
    yy, xx = np.mgrid[:h, :w]
    soft = np.clip(r + 1 - np.hypot(yy - cy, xx - cx), 0, 1)[..., None]
    return img + soft * rng.choice([-1, 1]) * rng.uniform(30, 60)


def contrast(img: np.ndarray, others: Sequence[np.ndarray], rng: np.random.Generator) -> np.ndarray:
    m = img.mean()
    return m + (img - m) * rng.choice([rng.uniform(0.7, 0.85), rng.uniform(1.2, 1.4)])


def blur_all(img: np.ndarray, others: Sequence[np.ndarray], rng: np.random.Generator) -> np.ndarray:
    return _blur(img, rng.uniform(0.8, 1.3))


def decorrelating_noise(img: np.ndarray, others: Sequence[np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """White noise mixed in everywhere: neighbouring pixels are less correlated."""
    return img + rng.normal(0, rng.uniform(0.12, 0.2) * (img.std() + 1.0), img.shape[:2])[..., None]


def zoom(img: np.ndarray, others: Sequence[np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """The texture's frequency shifted: zoomed in or out by 10-18%, back at the image's size."""
    h, w = img.shape[:2]
    f = rng.choice([rng.uniform(1.1, 1.18), 1 / rng.uniform(1.1, 1.18)])
    pil = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
    if f > 1:
        big = pil.resize((round(w * f), round(h * f)), Image.Resampling.BILINEAR)
        y, x = (big.height - h) // 2, (big.width - w) // 2
        return np.asarray(big.crop((x, y, x + w, y + h)), np.float32)
    small = np.asarray(pil.resize((max(1, round(w * f)), max(1, round(h * f))), Image.Resampling.BILINEAR))
    reps = (math.ceil(h / small.shape[0]) + 1, math.ceil(w / small.shape[1]) + 1, 1)
    tiled = np.tile(np.concatenate([small, small[:, ::-1]], 1), reps)  # mirrored tiling: no hard seam per tile
    return tiled[:h, :w].astype(np.float32)


Synth = Callable[[np.ndarray, Sequence[np.ndarray], np.random.Generator], np.ndarray]
LOCAL_SYNTH: dict[str, Synth] = {
    "cut_paste": cut_paste,
    "blur_patch": blur_patch,
    "sharpen_patch": sharpen_patch,
    "noise_patch": noise_patch,
    "scratch": scratch,
    "spot": spot,
}
GLOBAL_SYNTH: dict[str, Synth] = {
    "contrast": contrast,
    "blur": blur_all,
    "noise": decorrelating_noise,
    "zoom": zoom,
}


def synthesize(
    held: Sequence[np.ndarray], others: Sequence[np.ndarray], family: dict[str, Synth], count: int, seed: int
) -> list[tuple[str, Image.Image]]:
    """`count` anomalies cycling through the family and the held-out images: (kind, RGB image) each."""
    rng = np.random.default_rng(seed)
    names = sorted(family)
    out = []
    for j in range(count):
        name = names[j % len(names)]
        a = family[name](held[j % len(held)].astype(np.float32), others, rng)
        out.append((name, Image.fromarray(np.clip(np.round(a), 0, 255).astype(np.uint8))))
    return out


# --- candidates --------------------------------------------------------------------------------------------


def native_size(sizes: Sequence[tuple[int, int]], limit: int) -> int | None:
    """The images' own size rounded up to a multiple of 32, when their larger side is at most `limit`."""
    side = max(max(w, h) for w, h in sizes)
    return 32 * math.ceil(side / 32) if side <= limit else None


def candidates(settings: EvidenceSettings, stage_blocks: Sequence[int], native: int | None) -> list[FeatureChoice]:
    """The family tried: the fixed default first, then blocks x input sizes x pooling (see the module docstring)."""
    default = FeatureChoice(tuple(stage_blocks[i] for i in settings.layers), settings.input_size, settings.pool)
    out = [default]
    stage = default.blocks
    for size in sorted({*settings.auto_config_sizes, *([native] if native else [])}):
        choices = [FeatureChoice(stage, size, 3), FeatureChoice((2, 3), size, 3)]
        if size >= 512:
            choices.append(FeatureChoice((2, 3), size, 1))
        if size <= 320:
            choices.append(FeatureChoice((1, 2), size, 3))
        out += [c for c in choices if c not in out]
    return out


@dataclass
class Outcome:
    """One candidate's self-test: AUROCs of its best image and global score variants, latency, status."""

    choice: FeatureChoice
    auroc_local: float = float("nan")
    auroc_global: float = float("nan")
    image_score: str = "topk_mean"
    global_score: str = "mahalanobis"
    position: str = "raw"  # raw or standardised distances (position_norm)
    latency_ms: float = float("nan")
    seconds: float = 0.0
    status: str = "ok"  # ok, over budget, failed: <why>

    @property
    def auroc(self) -> float:
        return (self.auroc_local + self.auroc_global) / 2

    def to_dict(self) -> dict[str, Any]:
        def r(x: float) -> float | None:
            return None if not math.isfinite(x) else round(float(x), 4)

        return {
            "name": self.choice.name,
            **self.choice.to_dict(),
            "image_score": self.image_score,
            "global_score": self.global_score,
            "position": self.position,
            "auroc": r(self.auroc),
            "auroc_local": r(self.auroc_local),
            "auroc_global": r(self.auroc_global),
            "latency_ms": r(self.latency_ms),
            "seconds": round(self.seconds, 2),
            "status": self.status,
        }


@dataclass
class Choice:
    """What the self-configuration decided, and the record that says why."""

    choice: FeatureChoice
    image_score: str
    global_score: str
    record: dict[str, Any] = field(default_factory=dict)
    position: str = "raw"  # raw or standardised distances (position_norm)


def fixed(
    settings: EvidenceSettings, default: FeatureChoice, status: str, note: str, images: int, needs: int = 0
) -> Choice:
    """The fixed configuration, with a record saying why no choice was made."""
    glob = "mahalanobis" if settings.global_score == "auto" else settings.global_score
    position = "standardised" if settings.position_norm == "on" else "raw"
    record = {"status": status, "note": note, "images": images, "needs_more_images": needs, "chosen": default.name}
    record.update({"image_score": settings.image_score, "global_score": glob, "position": position})
    record.update({"candidates": [], "seconds": 0.0})
    return Choice(default, settings.image_score, glob, record, position)


def _pixels(prep: Preprocessor, images: Sequence[Image.Image]) -> Any:
    import torch

    return torch.stack([prep(img)[0] for img in images])


def choose(
    base: TimmPatchFeatures,
    images: Sequence[Image.Image],
    settings: EvidenceSettings,
    family: Sequence[FeatureChoice] | None = None,
) -> Choice:
    """Self-configure from these normal images (RGB); the fixed default when there are too few to hold some out."""
    import faiss

    start = time.perf_counter()
    stage = base.stage_blocks()
    default = FeatureChoice(tuple(stage[i] for i in settings.layers), settings.input_size, settings.pool)
    n = len(images)
    if n < settings.auto_config_min_images:
        need = settings.auto_config_min_images - n
        note = f"{n} normal images: too few to hold some out; {need} more would let it choose"
        return fixed(settings, default, "too few images", note, n, need)
    native = native_size([img.size for img in images], settings.auto_config_native_max)
    family = list(family) if family is not None else candidates(settings, stage, native)
    rng = np.random.default_rng(settings.seed)
    order = rng.permutation(n)
    h = min(MAX_HELD_OUT, max(2, round(n * HOLD_OUT_SHARE)))
    held_idx, fit_idx = sorted(order[:h].tolist()), sorted(order[h:].tolist())
    arrays = [np.asarray(img.convert("RGB"), np.float32) for img in images]
    held = [arrays[i] for i in held_idx]
    others = [arrays[i] for i in fit_idx]
    count = max(h, MIN_ANOMALIES)
    local = synthesize(held, others, LOCAL_SYNTH, count, settings.seed + 1)
    glob = synthesize(held, others, GLOBAL_SYNTH, count, settings.seed + 2)
    queries = [images[i] for i in held_idx] + [img for _, img in local] + [img for _, img in glob]
    labels_local = [0] * h + [1] * count
    labels_global = [0] * h + [1] * count
    fit_images = [images[i] for i in fit_idx[:MAX_FIT_IMAGES]]
    expected_memory = float(n)  # images' worth of patches in the real bank: all of them, or a coreset (below)
    outcomes: list[Outcome] = []
    forward_ms: dict[int, float] = {}
    for size in sorted({c.input_size for c in family}):
        group = [c for c in family if c.input_size == size]
        nblocks = len(base.model.blocks)
        bad = [c for c in group if not c.blocks or min(c.blocks) < 0 or max(c.blocks) >= nblocks]
        outcomes += [Outcome(c, status="failed: ConfigError (no such block)") for c in bad]
        group = [c for c in group if c not in bad]
        if not group:
            continue
        try:
            t0 = time.perf_counter()
            prep = Preprocessor(size, settings.resize_mode, base.mean, base.std, _limits(settings), base.device)
            blocks = sorted({b for c in group for b in c.blocks})
            raw_fit = _forward(base, prep, fit_images, blocks, settings.ingest_batch_size)
            t1 = cpu_clock()
            raw_q = _forward(base, prep, queries, blocks, settings.ingest_batch_size)
            forward_ms[size] = 1000 * (cpu_clock() - t1) / len(queries)
            shared_s = time.perf_counter() - t0
        except Exception as e:  # out of memory, a block the model lacks: every candidate of this size is skipped
            log.warning("self-configuration: input size %d failed: %s", size, e)
            outcomes += [Outcome(c, status=f"failed: {type(e).__name__}") for c in group]
            continue
        for c in group:
            o = Outcome(c)
            t2 = time.perf_counter()
            try:
                fit_f = _aggregate(raw_fit, blocks, c)
                q_f = _aggregate(raw_q, blocks, c)
                mem = fit_f.reshape(-1, fit_f.shape[-1])
                keep = min(settings.auto_config_patches, mem.shape[0])
                mem = mem[np.sort(rng.choice(mem.shape[0], keep, replace=False))]
                index = faiss.IndexFlatL2(mem.shape[1])
                index.add(np.ascontiguousarray(mem, np.float32))
                t3 = cpu_clock()
                d, _ = index.search(np.ascontiguousarray(q_f.reshape(-1, q_f.shape[-1]), np.float32), 1)
                search_ms = 1000 * (cpu_clock() - t3) / len(queries)
                dist = np.sqrt(np.maximum(d[:, 0], 0)).reshape(q_f.shape[:3])
                o.position, o.image_score, o.auroc_local = _local_variant(
                    dist[: h + count], h, labels_local, settings.position_norm, settings.topk_patches
                )
                model = GaussianModel.fit(np.stack([descriptor(f) for f in fit_f]))
                globals_ = {
                    "mahalanobis": [model.score(descriptor(f)) for f in q_f],
                    "mean_distance": [mean_distance(m) for m in dist],
                }
                if settings.global_score in GLOBAL_SCORES:
                    globals_ = {settings.global_score: globals_[settings.global_score]}
                keep_idx = list(range(h)) + list(range(h + count, h + 2 * count))
                o.global_score, o.auroc_global = _best(
                    {k: [v[i] for i in keep_idx] for k, v in globals_.items()}, labels_global
                )
                # the real bank holds every patch or a coreset, on its engine: scale the search to it
                scale = _search_scale(settings, expected_memory * dist[0].size, keep)
                o.latency_ms = forward_ms[size] + search_ms * scale
                if o.latency_ms > settings.latency_budget_ms:
                    o.status = "over budget"
            except Exception as e:  # one candidate failing (memory, a bad block) must not stop the choice
                log.warning("self-configuration: candidate %s failed: %s", c.name, e)
                o.status = f"failed: {type(e).__name__}"
            o.seconds = time.perf_counter() - t2 + shared_s / len(group)
            outcomes.append(o)
    ok = [o for o in outcomes if o.status == "ok"]
    record: dict[str, Any] = {
        "images": n,
        "held_out": h,
        "synthetic_local": count,
        "synthetic_global": count,
        "needs_more_images": 0,
        "latency_budget_ms": settings.latency_budget_ms,
        "candidates": [o.to_dict() for o in outcomes],
    }
    if not ok:
        note = "every candidate failed or was over budget; the fixed configuration is used"
        out = fixed(settings, default, "fixed: no candidate passed", note, n)
        out.record.update({"candidates": record["candidates"], "seconds": round(time.perf_counter() - start, 2)})
        return out
    best_auroc = max(o.auroc for o in ok)
    tied = [o for o in ok if o.auroc >= best_auroc - TIE]
    best = min(tied, key=lambda o: (o.choice != default, o.latency_ms))
    glob_kind = best.global_score if settings.global_score != "off" else "off"
    seconds = time.perf_counter() - start
    record.update(
        {
            "status": "chosen",
            "chosen": best.choice.name,
            "image_score": best.image_score,
            "global_score": glob_kind,
            "position": best.position,
            "auroc": round(best.auroc, 4),
            "latency_ms": round(best.latency_ms, 1),
            "seconds": round(seconds, 2),
            "seconds_per_candidate_per_image": round(seconds / max(len(outcomes), 1) / n, 4),
            "note": (
                f"chosen on {n - h} kept and {h} held-out normal images with {count} local and {count} global "
                f"synthetic anomalies: self-test AUROC {best.auroc:.3f} ({len(ok)} of {len(outcomes)} candidates "
                "within budget)"
            ),
        }
    )
    return Choice(best.choice, best.image_score, glob_kind, record, best.position)


def cpu_clock() -> float:
    """Seconds of this process's CPU time per compute thread: the latency an unloaded machine would see.

    Wall time on a shared machine swings several-fold with other processes' load (the 2-core CI machine ran
    one 160 px candidate at 45 ms and at 2,500 ms per image in the same hour), which would make the budget
    choose by the neighbours' load rather than by the candidate's cost.
    """
    import torch

    return time.process_time() / max(1, torch.get_num_threads())


def _limits(settings: EvidenceSettings) -> Any:
    from services.common.images import ImageLimits

    return ImageLimits(settings.max_image_bytes, settings.max_image_pixels, section="evidence")


def _forward(
    base: TimmPatchFeatures, prep: Preprocessor, images: Sequence[Image.Image], blocks: list[int], batch: int
) -> list[list[Any]]:
    """The tapped blocks' maps of every image, one forward per batch: [block][image batch] tensors."""
    import torch

    out: list[list[Any]] = [[] for _ in blocks]
    with torch.inference_mode():
        for s in range(0, len(images), batch):
            maps = base.forward_blocks(_pixels(prep, images[s : s + batch]), blocks)
            for j, m in enumerate(maps):
                out[j].append(m.float().cpu())
    return out


def _aggregate(raw: list[list[Any]], blocks: list[int], c: FeatureChoice) -> np.ndarray:
    """A candidate's (n, h, w, D) patch features from the shared forward's maps."""
    import torch

    with torch.inference_mode():
        parts = [aggregate([raw[blocks.index(b)][k] for b in c.blocks], c.pool, 0) for k in range(len(raw[0]))]
        return torch.cat(parts).numpy()


def position_maps(dist: np.ndarray, normals: int) -> np.ndarray:
    """The stage's position_norm on the self-test (services/evidence/position.py): each held-out normal's map
    standardised by the other held-out normals' per-position statistics, and each anomaly's by those of the
    normals other than the one it was drawn on (anomaly j is drawn on held-out image j mod normals: statistics
    that include its own source would flatten it everywhere but the defect). Raw when too few to estimate."""
    if normals < MIN_POSITION_MAPS:
        return dist
    _, others = leave_one_out(dist[:normals])
    return np.stack([others[i % normals].standardise(m) for i, m in enumerate(dist)])


def _search_scale(settings: EvidenceSettings, patches: float, measured: int) -> float:
    """How much longer than the measured exact search over `measured` patches the real bank's search takes: its
    memory (every patch, or the coreset over coreset_keep_all) on the engine it will be served with. IVF doubles
    its nprobe when the recall check asks (the common case measured), so twice the configured nprobe is assumed;
    a patch compared through inverted lists costs about twice one compared by the flat BLAS search (evidence_nn at
    100k patches: IVF 21x faster than flat while comparing about 40x fewer)."""
    rows = int(patches if patches <= settings.coreset_keep_all else patches * settings.coreset_ratio)
    engine = choose_engine(settings.nn_engine, rows, settings.hnsw_min_patches, None, settings.ivf_min_patches)
    per_query = searched_per_query(engine, rows, 2 * settings.ivf_nprobe, settings.hnsw_m, settings.hnsw_ef_search)
    return max(1.0, per_query / measured) if engine == "flat" else INDEX_COST * per_query / measured


def _local_variant(
    dist: np.ndarray, normals: int, labels: list[int], position_norm: str, topk: int
) -> tuple[str, str, float]:
    """(position, image score, AUROC): the best local score variant of one candidate's distance maps. Under
    position_norm auto, standardised maps are kept only when they beat raw ones by POSITION_GAIN."""
    variants = {"raw": dist} if position_norm != "on" else {}
    if position_norm != "off" and normals >= MIN_POSITION_MAPS:
        variants["standardised"] = position_maps(dist, normals)
    if not variants:  # on, with too few held-out normals to estimate: raw
        variants["raw"] = dist
    best: dict[str, tuple[str, float]] = {
        k: _best({s: [_image_score(m, s, topk) for m in maps] for s in IMAGE_SCORES}, labels)
        for k, maps in variants.items()
    }
    pick = "raw" if "raw" in best else "standardised"
    if "standardised" in best and (pick == "standardised" or best["standardised"][1] > best["raw"][1] + POSITION_GAIN):
        pick = "standardised"
    return pick, *best[pick]


def _image_score(dist: np.ndarray, mode: str, topk: int) -> float:
    flat = dist.ravel()
    if mode == "max_patch":
        return float(flat.max())
    k = min(topk, flat.size)
    return float(np.partition(flat, flat.size - k)[-k:].mean())


def _best(variants: dict[str, list[float]], labels: list[int]) -> tuple[str, float]:
    """The variant with the highest AUROC (the first listed on a tie)."""
    scored = [(auroc(labels, v), k) for k, v in variants.items()]
    best = max(scored, key=lambda t: t[0])
    return best[1], float(best[0])
