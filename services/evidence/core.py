"""The evidence stage's logic: score a query's patches against its product's normal patches.

A query image goes through the one preprocessing path, the backbone gives its patch features, and each
patch's distance to the nearest normal patch of the bank is its anomaly; the largest is the image score
(PatchCore's), compared with the product's calibrated threshold. The patch map is upsampled to the model
input and smoothed with a Gaussian as PatchCore does. The map comes back at the query's own size on a fixed scale
(0 to twice the threshold, so the threshold sits mid-scale on every image of a product), with boxes around
the most anomalous regions named in MMAD's localisation words.

`EvidenceService` holds no gRPC: the servicer converts, this class decides. Queries go through the shared
two-step pipeline (services/common/pipeline.py), as the embedding stage's images do: batch N+1 is decoded
and resized (on CUDA: nvjpeg and a uint8 resize on one stream) while the backbone runs batch N (on another),
batched by the injected Batcher. The bank's normal images take the same two steps, synchronously. Bank
writes are serialised and committed to the bank store.
"""

from __future__ import annotations

import asyncio
import dataclasses
import io
import logging
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from services.common.batching import BatcherFactory, MicroBatcher
from services.common.errors import ConfigError, FailedPrecondition, InvalidArgument
from services.common.images import check_sha256, sha256_hex
from services.common.names import check_name
from services.common.pipeline import Pipeline, Prepared
from services.common.values import Box
from services.evidence import selfconfig
from services.evidence.bank import Bank, BankKey, BankStore, PatchIndex, choose_engine, key_of
from services.evidence.calibration import Calibration, calibrate, with_miss_budget
from services.evidence.config import EvidenceSettings
from services.evidence.defects import DefectLibraries
from services.evidence.features import (
    FeatureChoice,
    Geometry,
    PatchFeatures,
    PixelBatch,
    Preprocessor,
    TimmPatchFeatures,
    build_features,
    choose_augment,
    make_preprocessor,
    pose_name,
    poses,
    weights_prefix,
)
from services.evidence.global_score import GaussianModel, descriptor, mean_distance
from services.evidence.position import MIN_MAPS as MIN_POSITION_MAPS
from services.evidence.position import PositionStats, standardised_out_of_sample
from services.mmad.catalogue import region_of

log = logging.getLogger(__name__)

HEATMAP_SCALE = 2.0  # the heat map spans 0 .. HEATMAP_SCALE x threshold
# IVF: the highest-ranked patches of a query, with their neighbours, are searched again exactly. The image score is
# their maximum (smoothed over a cell), and IVF's misses (recall >= 0.99) land there now and then: the same part
# scored 0.54% of its threshold apart through torch and ONNX Runtime features (docs/evidence.md)
PEAK_PATCHES = 2


@dataclass
class EvidenceResult:
    score: float
    threshold: float
    anomalous: bool
    boxes: list[Box]
    width: int
    height: int
    backbone_id: str
    bank_images: int
    calibration: Calibration | None
    compute_ms: float = 0.0
    heatmap_png: bytes | None = None
    heatmap_scale: float = 0.0  # pixel value v maps back to the score v / 255 * heatmap_scale
    overlay_png: bytes | None = None
    anomaly_map: np.ndarray | None = None  # float32 (height, width), only when asked (evaluation)
    summary: str = ""
    local_score: float = 0.0  # the nearest-patch image score (`score` is the combined one)
    global_score: float = 0.0  # the image-level score (0 when the bank has none)
    global_threshold: float = 0.0  # its own threshold (0: no global score)
    fired: str = "none"  # which score is over its threshold: none, local, global or both
    review_threshold: float = 0.0  # the band's lower edge on `score`'s scale (== threshold: no band)
    band: str = "pass"  # pass (score <= review_threshold), review, or fail (score > threshold)


@dataclass
class AddResult:
    added: int
    existing: int
    bank: BankInfo


@dataclass
class BankInfo:
    line_id: str
    dataset: str
    category: str
    images: int
    memory_patches: int
    patches_seen: int
    backbone_id: str
    generation: int
    updated_at: float
    calibration: Calibration | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    self_config: dict[str, Any] | None = None  # the self-configuration's record (selfconfig.choose)
    global_calibration: Calibration | None = None

    @classmethod
    def from_meta(cls, meta: dict[str, Any]) -> BankInfo:
        cal = meta.get("calibration")
        gcal = meta.get("global_calibration")
        return cls(
            meta["line_id"],
            meta["dataset"],
            meta["category"],
            len(meta["images"]),
            int(meta["memory_patches"]),
            int(meta.get("patches_seen", 0)),
            meta["backbone_id"],
            int(meta["generation"]),
            float(meta.get("updated_at", 0.0)),
            Calibration.from_dict(cal) if cal else None,
            self_config=meta.get("self_config"),
            global_calibration=Calibration.from_dict(gcal) if gcal else None,
        )


def mismatch_error(key: BankKey, bank_backbone: str, configured: str) -> ConfigError:
    return ConfigError(
        f"evidence bank for {key.describe()} was built with backbone {bank_backbone!r}, but this stage is "
        f"configured with {configured!r}; delete the bank and add its normal images again, or configure "
        "that backbone"
    )


def smooth_map(patch_dist: np.ndarray, input_size: int, sigma: float) -> np.ndarray:
    """(h, w) patch distances -> (S, S) map at the model input, Gaussian-smoothed (PatchCore's sigma=4).

    The blur is separable (two 1-D passes, reflected borders, kernel radius 4 sigma): the same result as
    a 2-D kernel at a fraction of the cost.
    """
    import torch
    import torch.nn.functional as F

    t = torch.from_numpy(np.ascontiguousarray(patch_dist, dtype=np.float32))[None, None]
    m = F.interpolate(t, size=(input_size, input_size), mode="bilinear", align_corners=False)
    if sigma > 0:
        radius = min(int(4 * sigma + 0.5), input_size - 1)
        x = torch.arange(-radius, radius + 1, dtype=torch.float32)
        g = torch.exp(-(x**2) / (2 * sigma**2))
        g /= g.sum()
        m = F.pad(m, (radius, radius, radius, radius), mode="reflect")
        m = F.conv2d(F.conv2d(m, g.view(1, 1, 1, -1)), g.view(1, 1, -1, 1))
    return m[0, 0].numpy()


def image_score(smoothed: np.ndarray, patch_dist: np.ndarray, mode: str, topk: int) -> float:
    if mode == "max_patch":
        return float(patch_dist.max())
    if mode == "topk_mean":
        flat = patch_dist.ravel()
        k = min(topk, flat.size)
        return float(np.partition(flat, flat.size - k)[-k:].mean())
    return float(smoothed.max())


def region_name(cx: float, cy: float, width: int, height: int) -> str:
    """MMAD's 3x3 localisation word for a point of an image of any size."""
    return region_of(cx / width, cy / height, 1)


def find_boxes(
    crop: np.ndarray,
    threshold: float,
    geom: Geometry,
    max_boxes: int,
    min_area: float,
    peak_ratio: float,
    score: float | None = None,
) -> list[Box]:
    """Regions of the (input-resolution) map above the threshold, scaled to the query; else the peak region.

    `score`: the image score the verdict compared with the threshold. When it is not the map's own peak
    (max_patch: the sharpest patch, which the smoothing flattens), the threshold is moved onto the map's
    scale (threshold x peak / score), so boxes are above the threshold exactly when the image is anomalous.
    """
    from scipy import ndimage

    if max_boxes <= 0 or crop.size == 0:
        return []
    peak = float(crop.max())
    if score is not None and score > 0 and peak > 0:
        threshold = threshold * peak / score
    above = peak > threshold
    lo = min(0.0, float(crop.min()))  # a standardised map (position_norm) runs below zero: measure from its floor
    level = threshold if above else lo + (peak - lo) * peak_ratio
    mask = crop >= level
    labels, n = ndimage.label(mask)
    if n == 0:
        return []
    # per-component peak, area and centre from the masked pixels alone (ndimage.maximum sorts the whole map)
    lab = labels[mask]
    rows, cols = np.nonzero(mask)  # the same C order as labels[mask]
    peaks = np.full(n + 1, -np.inf)
    np.maximum.at(peaks, lab, crop[mask])
    peaks = peaks[1:]
    areas = np.bincount(lab, minlength=n + 1)[1:]
    cys = np.bincount(lab, rows, minlength=n + 1)[1:] / areas
    cxs = np.bincount(lab, cols, minlength=n + 1)[1:] / areas
    slices = ndimage.find_objects(labels)
    h, w = crop.shape
    sx, sy = geom.width / w, geom.height / h
    order = np.argsort(-np.asarray(peaks))
    boxes: list[Box] = []
    for j in order:
        share = float(areas[j]) / (h * w)
        if boxes and share < min_area:
            continue
        ys, xs = slices[j]
        cy, cx = cys[j], cxs[j]
        boxes.append(
            Box(
                x0=int(xs.start * sx),
                y0=int(ys.start * sy),
                x1=min(geom.width, int(np.ceil(xs.stop * sx))),
                y1=min(geom.height, int(np.ceil(ys.stop * sy))),
                score=float(peaks[j]),
                region=region_name((cx + 0.5) * sx, (cy + 0.5) * sy, geom.width, geom.height),
                area=share,
                above_threshold=above,
            )
        )
        if len(boxes) >= max_boxes or not above:
            break
    return boxes


def heatmap_image(crop: np.ndarray, scale: float, geom: Geometry) -> Image.Image:
    """The map as 8-bit grey at the query's size: v = score / scale * 255, clipped."""
    v = np.clip(crop / scale * 255.0 if scale > 0 else crop * 0, 0, 255).round().astype(np.uint8)
    img = Image.fromarray(v, mode="L")
    return img if img.size == (geom.width, geom.height) else img.resize((geom.width, geom.height), Image.BILINEAR)


def overlay_image(query: Image.Image, heat: Image.Image, alpha: float = 0.5) -> Image.Image:
    """The heat map in colour over the query, ready to show (an extra image for the Decision Maker)."""
    from matplotlib import colormaps

    lut = (colormaps["jet"](np.arange(256))[:, :3] * 255).astype(np.uint8)
    colour = Image.fromarray(lut[np.asarray(heat)], mode="RGB")
    return Image.blend(query.convert("RGB"), colour, alpha)


def png_bytes(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=3)
    return buf.getvalue()


def on_local_scale(glob: float, glow: float, ghigh: float, low: float, high: float) -> float:
    """The global score mapped onto the local score's scale, piecewise linearly: its review threshold to the local
    review threshold, its threshold to the local threshold, 0 to 0. Monotone, so the combined score's band (pass,
    review, fail) is the worse of the two scores' bands, and above the threshold it is glob x high / ghigh."""
    if glob > ghigh or not 0 < glow < ghigh:
        return glob * high / ghigh
    if glob > glow:
        return low + (glob - glow) * (high - low) / (ghigh - glow)
    return glob * low / glow


def summarize(r: EvidenceResult) -> str:
    """One paragraph of evidence for the Decision Maker's prompt and the trace."""
    ratio = r.score / r.threshold if r.threshold > 0 else float("inf")
    verdict = "ANOMALOUS" if r.anomalous else "normal"
    text = (
        f"Visual evidence (patch features compared with {r.bank_images} normal images of this product): "
        f"anomaly score {r.score:.3g}, {ratio:.2f}x the threshold {r.threshold:.3g}: {verdict}."
    )
    if r.global_threshold > 0:
        fired = {
            "local": "the local (nearest-patch) score fired",
            "global": "the global (whole-image) score fired: the texture differs everywhere, not in one spot",
            "both": "both the local and the global (whole-image) scores fired",
            "none": "neither the local nor the global score fired",
        }[r.fired]
        text += (
            f" Local {r.local_score:.3g} (threshold {r.threshold:.3g}), global {r.global_score:.3g} "
            f"(threshold {r.global_threshold:.3g}): {fired}."
        )
    if r.band == "review":
        text += f" In the review band ({r.review_threshold:.3g} to {r.threshold:.3g}): a person should look."
    if r.boxes and r.anomalous:
        where = "; ".join(f"{b.region} (x {b.x0}-{b.x1}, y {b.y0}-{b.y1}, {b.area:.1%} of the image)" for b in r.boxes)
        text += f" Most anomalous regions: {where}."
    elif r.boxes:
        text += f" Most anomalous spot, below the threshold: {r.boxes[0].region}."
    return text


AUGMENT_MIN_IMAGES = 4  # augment auto: fewer normal images than this bank no extra pose (none to hold out)
AUGMENT_HELD_OUT = 8  # at most this many images test the poses, each held out in turn


class EvidenceService:
    """Analyze queries against per-product banks of normal patches; add normal images; list and delete banks.

    Args:
        settings: the evidence section.
        features: the patch-feature source (its backbone_id must match every bank in the store).
        store: where banks persist (shared by every replica in cluster mode).
        batcher_factory: how concurrent queries share backbone calls (a Serve replica passes `@serve.batch`'s).
        decode_on_device: force the tensor path (nvjpeg and a uint8 resize on CUDA) on or off for encoded
            images; default: evidence.gpu_decode on CUDA. Bank and queries always take the same path.

    Raises ConfigError at construction when a stored bank was built with another backbone.
    """

    def __init__(
        self,
        settings: EvidenceSettings,
        features: PatchFeatures,
        store: BankStore,
        batcher_factory: BatcherFactory = MicroBatcher,
        decode_on_device: bool | None = None,
    ) -> None:
        self.settings = settings
        self._batcher_factory = batcher_factory
        self.features = features
        self.store = store
        self.backbone_id = features.backbone_id
        self.preprocess = make_preprocessor(settings, features)
        self.streams = features.streams
        on_cuda = getattr(features.device, "type", "cpu") == "cuda"
        self.tensor_path = (settings.gpu_decode and on_cuda) if decode_on_device is None else decode_on_device
        self.input_size = features.input_size
        self.hnsw = (settings.hnsw_m, settings.hnsw_ef_construction, settings.hnsw_ef_search)
        self._banks: dict[BankKey, Bank] = {}
        self._checked: dict[BankKey, float] = {}
        self._cache_lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._pool = ThreadPoolExecutor(settings.preprocess_workers, thread_name_prefix="evidence-pre")
        self._pipeline: Pipeline | None = None
        # self-configuration needs single blocks of a timm CNN; other sources keep the fixed configuration
        self.default_choice: FeatureChoice | None = None
        if isinstance(features, TimmPatchFeatures) and features.block_taps:
            stage = features.stage_blocks()
            self.default_choice = FeatureChoice(
                tuple(stage[i] for i in features.layers), self.input_size, features.pool
            )
        self._views: dict[str, tuple[PatchFeatures, Preprocessor]] = {self.backbone_id: (features, self.preprocess)}
        self._views_lock = threading.Lock()
        for meta in store.list_metas():
            if not self._compatible(meta):
                raise mismatch_error(key_of(meta), meta.get("backbone_id", "?"), self.backbone_id)
        self.defects = DefectLibraries(self)  # each product's confirmed defects, beside its bank

    @classmethod
    def from_settings(
        cls,
        settings: EvidenceSettings,
        embedding: Any = None,
        batcher_factory: BatcherFactory = MicroBatcher,
        decode_on_device: bool | None = None,
    ) -> EvidenceService:
        """Build the feature source and open the bank store; ConfigError names what is wrong.

        `batcher_factory`: how concurrent queries share backbone calls (a Serve replica passes `@serve.batch`'s).
        """
        features = build_features(settings, embedding)
        return cls(settings, features, BankStore(settings.bank_store), batcher_factory, decode_on_device)

    # --- features --------------------------------------------------------------------------------------
    def prepare_batch(self, items: list[tuple[bytes | Image.Image, str]]) -> Prepared[PixelBatch]:
        """The pipeline's first step: (image, field) items -> one pixel batch on the backbone's device."""
        return self.preprocess.batch(items, self.tensor_path, self._pool)

    def run_batch(self, batch: PixelBatch) -> list[tuple[np.ndarray, Geometry]]:
        """The second step: a prepared batch -> each image's (h, w, D) patch grid and its Geometry."""
        if not len(batch.geoms):
            return []
        with self.streams.running([batch.ready], [batch.pixels]):
            feats = self.features.extract(batch.pixels)
        return list(zip(feats, batch.geoms, strict=True))

    def features_batch(self, pixels: list[Any], features: PatchFeatures | None = None) -> list[np.ndarray]:
        """Normalised CHW tensors (already on the backbone's device) -> one (h, w, D) patch grid each."""
        import torch

        with self.streams.running():
            out = (features or self.features).extract(torch.stack(pixels))
        return list(out)

    # --- per-product features (self-configuration) -----------------------------------------------------
    def _compatible(self, meta: dict[str, Any]) -> bool:
        """A stored bank this stage can serve: its own features, or a self-configured choice on the same model."""
        bid = meta.get("backbone_id", "")
        if bid == self.backbone_id:
            return True
        return (
            self.default_choice is not None
            and meta.get("feature_choice") is not None
            and weights_prefix(bid) == weights_prefix(self.backbone_id)
        )

    def view_for(self, choice: FeatureChoice | None) -> tuple[PatchFeatures, Preprocessor]:
        """The features and preprocessing of a choice (the stage's own for the fixed default or None)."""
        if choice is None or choice == self.default_choice:
            return self.features, self.preprocess
        assert isinstance(self.features, TimmPatchFeatures)
        with self._views_lock:
            for feats, prep in self._views.values():
                if getattr(feats, "choice", None) == choice:
                    return feats, prep
            feats = self.features.view(choice)
            prep = make_preprocessor(self.settings, feats)
            self._views[feats.backbone_id] = (feats, prep)
            return feats, prep

    def bank_view(self, bank: Bank) -> tuple[PatchFeatures, Preprocessor]:
        if bank.backbone_id == self.backbone_id or bank.feature_choice is None:
            return self.features, self.preprocess
        return self.view_for(FeatureChoice.from_dict(bank.feature_choice))

    def bank_poses(self, bank: Bank | None) -> list[tuple[bool, int]]:
        """The poses a bank's normal images are banked in: its own choice (augment auto), else the setting's."""
        chosen = (bank.scoring.get("augment") if bank is not None and bank.scoring else None) or self.settings.augment
        return poses("none" if chosen == "auto" else chosen)

    def _bank_features(
        self, pixels: list[Any], features: PatchFeatures | None = None, pose_list: list[tuple[bool, int]] | None = None
    ) -> list[np.ndarray]:
        """Each normal image in every pose of pose_list -> (poses, h, w, D) each (default: the image as it is)."""
        import torch

        pose_list = pose_list or [(False, 0)]
        stacked = []
        for px in pixels:
            for flip, turns in pose_list:
                x = torch.flip(px, dims=[2]) if flip else px
                stacked.append(torch.rot90(x, turns, dims=[1, 2]) if turns else x)
        out: list[np.ndarray] = []
        step = self.settings.ingest_batch_size
        for s in range(0, len(stacked), step):
            out.extend(self.features_batch(stacked[s : s + step], features))
        k = len(pose_list)
        return [np.stack(out[i * k : (i + 1) * k]) for i in range(len(pixels))]

    def _features_of(
        self,
        pil: list[Image.Image],
        fields: list[str],
        features: PatchFeatures,
        prep: Preprocessor,
        pose_list: list[tuple[bool, int]],
    ) -> list[np.ndarray]:
        """Decoded normal images in these poses -> (poses, h, w, D) each, ingest_batch_size images at a time."""
        feats: list[np.ndarray] = []
        step = self.settings.ingest_batch_size
        for s0 in range(0, len(pil), step):
            batch = prep.batch([(img, f) for img, f in zip(pil[s0 : s0 + step], fields[s0 : s0 + step], strict=True)])
            with self.streams.running([batch.payload.ready], [batch.payload.pixels]):
                feats += self._bank_features(list(batch.payload.pixels), features, pose_list)
        return feats

    def _choose_augment(
        self,
        bank: Bank,
        pil: list[Image.Image],
        fields: list[str],
        own: list[np.ndarray],
        features: PatchFeatures,
        prep: Preprocessor,
    ) -> tuple[str, dict[str, Any]]:
        """augment auto: which poses this product's normal images are seen in (features.choose_augment).

        Up to AUGMENT_HELD_OUT images spread over the bank are held out in turn; each is scored as it is and in
        every other pose of the dihedral group against at most auto_config_patches own-pose patches of all the
        other images (exact search), with the bank's image score. Cost, whatever the bank's size: 7 backbone
        forwards per held-out image and a search of its 8 grids.
        """
        s = self.settings
        if s.augment != "auto":
            return s.augment, {}
        n = len(own)
        if n < AUGMENT_MIN_IMAGES:
            note = f"poses: none ({n} normal images: too few to test poses; needs {AUGMENT_MIN_IMAGES})"
            return "none", {"augment": "none", "note": note}
        if n > s.augment_max_images:
            note = f"poses: none ({n} normal images, over augment_max_images {s.augment_max_images})"
            return "none", {"augment": "none", "note": note}
        held = np.unique(np.linspace(0, n - 1, min(AUGMENT_HELD_OUT, n)).round().astype(int)).tolist()
        rng = np.random.default_rng(s.seed)
        extra = poses("dihedral")[1:]
        posed = self._features_of([pil[i] for i in held], [fields[i] for i in held], features, prep, extra)
        own_scores = np.zeros(len(held))
        posed_scores = {p: np.zeros(len(held)) for p in extra}
        for j, i in enumerate(held):  # each held-out image against every other image, as it is
            ref = np.concatenate([own[o][0].reshape(-1, bank.dim) for o in range(n) if o != i]).astype(np.float32)
            if ref.shape[0] > s.auto_config_patches:
                ref = ref[np.sort(rng.choice(ref.shape[0], s.auto_config_patches, replace=False))]
            index = PatchIndex(ref, "flat")

            def score(grid: np.ndarray, index: PatchIndex = index) -> float:
                dist = index.search(grid.reshape(-1, bank.dim)).reshape(grid.shape[:2])
                return self._image_score(dist, bank)[0]

            own_scores[j] = score(own[i][0])
            for k, p in enumerate(extra):
                posed_scores[p][j] = score(posed[j][k])
        group, ratios = choose_augment(own_scores, posed_scores, s.augment_tolerance)
        worst = max(ratios.items(), key=lambda kv: kv[1])
        note = (
            f"poses: {group} ({len(held)} held-out images score {ratios[pose_name(extra[0])]:.2f}x their own pose "
            f"turned a quarter, at worst {worst[1]:.2f}x ({worst[0]}); tolerance {s.augment_tolerance:g}x)"
        )
        return group, {"augment": group, "pose_ratios": ratios, "note": note}

    # --- banks -----------------------------------------------------------------------------------------
    def _key(self, line_id: str, dataset: str, category: str) -> BankKey:
        line_id = check_name(line_id or self.settings.default_line, "line_id")
        return BankKey(line_id, check_name(dataset, "dataset"), check_name(category, "category"))

    def _engine(self, bank: Bank) -> str:
        device = getattr(self.features, "device", None)
        s = self.settings
        return choose_engine(s.nn_engine, bank.memory.shape[0], s.hnsw_min_patches, device, s.ivf_min_patches)

    def _index(self, bank: Bank) -> None:
        ivf = (self.settings.ivf_nprobe, self.settings.ivf_min_recall)
        bank.build_index(self._engine(bank), self.hnsw, getattr(self.features, "device", None), ivf)

    def bank(self, key: BankKey) -> Bank:
        """The bank for key, reloaded when another replica committed a newer generation; FailedPrecondition if none."""
        now = time.monotonic()
        with self._cache_lock:
            cached = self._banks.get(key)
            fresh = cached is not None and now - self._checked.get(key, 0.0) < self.settings.reload_check_s
        if fresh and cached is not None:
            return cached
        meta = self.store.read_meta(key)
        if meta is None:
            with self._cache_lock:
                self._banks.pop(key, None)
            raise FailedPrecondition(
                f"no evidence bank for {key.describe()}: add normal images of this product first "
                "(AddNormalImages, `echo-iad product add` or `echo-iad memory build`)"
            )
        if cached is None or meta["generation"] != cached.generation:
            if not self._compatible(meta):
                raise FailedPrecondition(mismatch_error(key, meta["backbone_id"], self.backbone_id).message)
            loaded = self.store.load(key)
            if loaded is None:
                raise FailedPrecondition(f"the evidence bank for {key.describe()} was deleted meanwhile")
            self._index(loaded)
            cached = loaded
        with self._cache_lock:
            self._banks[key] = cached
            self._checked[key] = now
        return cached

    def _fresh_bank(self, key: BankKey) -> Bank | None:
        """The cached bank when it was checked within reload_check_s and can score (no I/O: the event loop may ask),
        else None (then `_ready_bank` on a thread reloads it, or says what is missing)."""
        with self._cache_lock:
            cached = self._banks.get(key)
            if cached is None or time.monotonic() - self._checked.get(key, 0.0) >= self.settings.reload_check_s:
                return None
        ready = len(cached.images) >= self.settings.min_images and cached.calibration is not None
        return cached if ready else None

    def _ready_bank(self, key: BankKey) -> Bank:
        bank = self.bank(key)
        if len(bank.images) < self.settings.min_images or bank.calibration is None:
            raise FailedPrecondition(
                f"the evidence bank for {key.describe()} holds {len(bank.images)} normal image(s); add at least "
                f"{self.settings.min_images - len(bank.images)} more (a threshold needs held-out scores)"
            )
        return bank

    def add_normal_images(self, line_id: str, dataset: str, category: str, images: list[bytes]) -> AddResult:
        """Add normal images to the product's bank (idempotent by content hash) and recalibrate its threshold."""
        key = self._key(line_id, dataset, category)
        if not images:
            raise InvalidArgument("is empty: send normal images of the product", field="images")
        if len(images) > self.settings.max_images_per_request:
            raise InvalidArgument(
                f"holds {len(images)} images; send at most {self.settings.max_images_per_request} per request",
                field="images",
            )
        shas = [sha256_hex(d) for d in images]
        with self._write_lock:
            current = self.store.load(key)  # the committed state, which another replica may have moved on
            if current is not None and not self._compatible(current.meta()):
                raise FailedPrecondition(mismatch_error(key, current.backbone_id, self.backbone_id).message)
            known = set(current.images) if current else set()
            fresh: dict[str, int] = {}
            for i, sha in enumerate(shas):
                if sha not in known and sha not in fresh:
                    fresh[sha] = i
            if not fresh:
                assert current is not None
                return AddResult(0, len(images), self._info(current))
            total = len(known) + len(fresh)
            kept = self._kept_images(key, current) if self._should_choose(current, total) else None
            if kept is not None:
                datas = kept + [images[i] for i in fresh.values()]
                fields = [f"bank image {j}" for j in range(len(kept))] + [f"images[{i}]" for i in fresh.values()]
                bank = self._build(key, (current.images if current else []) + list(fresh), datas, fields)
            else:
                bank = self._append(key, current, fresh, images)
            self.store.put_images(key, {sha: images[i] for sha, i in fresh.items()})
            self._commit(bank)
        return AddResult(len(fresh), len(images) - len(fresh), self._info(bank))

    def _should_choose(self, current: Bank | None, total: int) -> bool:
        """Whether this addition (re)builds the bank with a fresh choice: a new bank, one that had too few images
        to choose, or one grown to auto_config_regrow times the images it chose on."""
        if current is None:
            return True
        if not self.settings.auto_config or self.default_choice is None:
            return False
        record = current.self_config or {}
        if record.get("status") == "too few images":
            return total >= self.settings.auto_config_min_images
        return current.auto_images > 0 and total >= self.settings.auto_config_regrow * current.auto_images

    def _kept_images(self, key: BankKey, current: Bank | None) -> list[bytes] | None:
        """The bank's kept encoded images (none for a new bank); None when they are not all kept."""
        return [] if current is None else self.store.get_images(key, current.images)

    def _choose(self, pil: list[Image.Image]) -> selfconfig.Choice:
        s = self.settings
        if self.default_choice is None:
            glob = "off" if s.global_score == "off" else "mahalanobis"
            return selfconfig.Choice(
                FeatureChoice((), self.input_size, s.pool),
                s.image_score,
                glob,
                {
                    "status": "fixed",
                    "note": f"evidence.source {s.source!r}: the fixed configuration",
                    "images": len(pil),
                },
                "standardised" if s.position_norm == "on" else "raw",
            )
        if not s.auto_config:
            return selfconfig.fixed(s, self.default_choice, "off", "evidence.auto_config is off", len(pil))
        return selfconfig.choose(self.features, pil, s)  # type: ignore[arg-type]

    def _build(self, key: BankKey, shas: list[str], datas: list[bytes], fields: list[str]) -> Bank:
        """A bank built from scratch in the features the self-configuration chooses on these images."""
        pil = [self._decoded(d, f) for d, f in zip(datas, fields, strict=True)]
        choice = self._choose(pil)
        features, prep = self.view_for(choice.choice if self.default_choice is not None else None)
        feats = self._features_of(pil, fields, features, prep, [(False, 0)])
        grid = feats[0].shape[1:3]
        bank = Bank(key, features.backbone_id, int(feats[0].shape[-1]), (int(grid[0]), int(grid[1])))
        if features is not self.features:
            bank.feature_choice = choice.choice.to_dict()
        bank.scoring = {
            "image_score": choice.image_score,
            "global_score": choice.global_score,
            "position": choice.position,
        }
        augment, record = self._choose_augment(bank, pil, fields, feats, features, prep)
        bank.scoring["augment"] = augment
        if extra := poses(augment)[1:]:
            more = self._features_of(pil, fields, features, prep, extra)
            feats = [np.concatenate([f, m]) for f, m in zip(feats, more, strict=True)]
        bank.self_config = choice.record
        if record:
            bank.self_config = {**choice.record, "augment": record["augment"], "pose_ratios": record.get("pose_ratios")}
            bank.self_config["note"] = "; ".join(x for x in (choice.record.get("note", ""), record["note"]) if x)
        bank.auto_images = len(shas) if choice.record.get("status") == "chosen" else 0
        s = self.settings
        ratio = self.coreset_ratio(bank, feats)
        bank.append(shas, feats, ratio, s.coreset_projection, s.seed, getattr(features, "device", None))
        return bank

    def _decoded(self, data: bytes, field_name: str) -> Image.Image:
        from services.common.images import decode

        return decode(data, self.preprocess.limits, field=field_name)

    def _append(self, key: BankKey, current: Bank | None, fresh: dict[str, int], images: list[bytes]) -> Bank:
        """Add images to the bank in its own features (the coreset grows from their distances to it)."""
        assert current is not None
        features, prep = self.bank_view(current)
        prepared = prep.batch([(images[i], f"images[{i}]") for i in fresh.values()], self.tensor_path, self._pool)
        for e in prepared.errors:
            if e is not None:
                raise e
        batch = prepared.payload
        with self.streams.running([batch.ready], [batch.pixels]):
            feats = self._bank_features(list(batch.pixels), features, self.bank_poses(current))
        with self._cache_lock:
            cached = self._banks.get(key)
        same = cached is not None and cached.generation == current.generation
        bank = dataclasses.replace(current, images=list(current.images), index=cached.index if same else None)
        if bank.index is None:
            self._index(bank)
        s = self.settings
        device = getattr(features, "device", None)
        bank.append(list(fresh), feats, self.coreset_ratio(bank, feats), s.coreset_projection, s.seed, device)
        return bank

    def coreset_ratio(self, bank: Bank, feats: list[np.ndarray]) -> float:
        """1 (every patch) while the bank's patches stay within coreset_keep_all, else coreset_ratio."""
        total = bank.patches_seen + sum(int(np.prod(f.shape[:-1])) for f in feats)
        return 1.0 if total <= self.settings.coreset_keep_all else self.settings.coreset_ratio

    def calibration_scores(self, bank: Bank) -> tuple[list[float], list[float], PositionStats | None]:
        """k-fold held-out local and global scores of the (sampled) normal images (global: [] when the bank has none),
        and the per-position statistics of their distance maps (position_norm; each local score here standardised
        by the other maps' statistics, services/evidence/position.py).

        Image i is in fold i mod k (folds spread over the order images were added). Each fold's sampled images
        are scored against the bank's own memory less every patch that came from the fold's images
        (`Bank.rows_of`: the memory knows each patch's image, so no coreset runs again and no backbone forward),
        through the index the bank serves with (IVF or HNSW, the fold's rows filtered out: the search a new
        part's patches get, approximate as theirs is) or exactly (Faiss flat on the kept rows, or torch on a
        GPU), and the global Gaussian is fitted without the fold too. The masked bank is not a rebuild without
        the fold (its coreset was picked with the fold in it; `Bank.rows_of` says what that measured); at
        coreset_ratio 1 the two are the same.

        Cost, with n images of p patches, k folds, coreset ratio r, each fold bank holding the memory rows of
        R = min(n (k-1)/k, calibration_max_patches / (r p)) images (M = r R p patches) and c images scored
        (max_calibration_images, fewer when c p M' would pass calibration_max_distances, never below
        2 min_fit_images), M' the patches a query is compared with (M exact; L + M P / L through an IVF of L
        lists probing P): O(k n r p) to mask the memory and c p M' distances (D each); memory O(M D) at a
        time. Linear in n up to the caps, then flat: at the defaults (k 5, 100k patches, 5e9 distances) at
        most 5e9 distances, whatever the bank's size and coreset ratio. (Fold banks built by a fresh coreset
        each cost k greedy coresets of R p patches on top: about 4x the build's own.)
        """
        s = self.settings
        n, p = len(bank.images), bank.patches_per_image
        k = min(s.calibration_folds, n)
        fold = np.arange(n) % k
        rows = max(bank.memory.shape[0] / n, 1.0)  # memory patches per image
        cap = max(2, int(s.calibration_max_patches // rows))  # images whose memory rows a fold bank may hold
        fold_memory = min(n - n // k, cap) * rows  # patches a fold bank holds, about
        served = bank.index if bank.index is not None and bank.index.engine in ("ivf", "hnsw") else None
        per_query = served.distances_per_query(int(fold_memory)) if served is not None else fold_memory
        searchable = int(s.calibration_max_distances // max(p * per_query, 1.0))
        count = min(n, s.max_calibration_images, max(searchable, 2 * s.min_fit_images))
        scored = np.unique(np.linspace(0, n - 1, count).round().astype(int))
        kind = self._global_kind(bank)
        descs = self._descriptors(bank) if kind == "mahalanobis" and n > 2 else None
        device = getattr(self.features, "device", None)
        engine = "torch" if getattr(device, "type", "cpu") == "cuda" else "flat"
        maps: dict[int, np.ndarray] = {}
        glob: dict[int, float] = {}
        for f in range(k):
            held = scored[fold[scored] == f]
            if not held.size:
                continue
            others = np.flatnonzero(fold != f)
            if others.size > cap:  # an even spread of the other folds' images within the patch cap
                others = others[np.unique(np.linspace(0, others.size - 1, cap).round().astype(int))]
            keep = bank.rows_of(others)
            model = GaussianModel.fit(descs[fold != f]) if descs is not None else None
            held_feats = np.concatenate([bank.image_features(o) for o in held.tolist()])  # one search: big blocks
            dists = served.search(held_feats, keep=keep) if served is not None else np.full(len(held_feats), np.inf)
            missed = ~np.isfinite(dists)  # every patch without the served index, or where its filter found none
            if missed.any():
                dists[missed] = PatchIndex(bank.memory[keep], engine, device=device).search(held_feats[missed])
            dists = dists.reshape(len(held), -1)
            for o, dist in zip(held.tolist(), dists, strict=True):
                maps[o] = dist.reshape(bank.grid)
                if kind == "mean_distance":
                    glob[o] = mean_distance(dist)
                elif model is not None:
                    glob[o] = model.score(descs[o])
        order = sorted(maps)
        position, ready = None, [maps[o] for o in order]
        if self._standardises(bank) and len(order) >= MIN_POSITION_MAPS:  # each map by the others' statistics
            position, ready = standardised_out_of_sample(np.stack(ready))
        local = [self._score_map(m, bank)[0] for m in ready]
        return local, [glob[o] for o in order] if glob else [], position

    def _standardises(self, bank: Bank) -> bool:
        """Whether the bank's local scores standardise positions: its self-configuration's choice, else the setting."""
        chosen = bank.scoring.get("position") if bank.scoring else None
        return chosen == "standardised" if chosen else self.settings.position_norm == "on"

    def _global_kind(self, bank: Bank) -> str:
        kind = bank.scoring.get("global_score") if bank.scoring else None
        if kind is None:  # a bank from before global scores: the configured one (auto: mahalanobis)
            kind = "mahalanobis" if self.settings.global_score == "auto" else self.settings.global_score
        return kind

    def _descriptors(self, bank: Bank) -> np.ndarray:
        p, dim = bank.patches_per_image, bank.dim
        feats = bank.features.reshape(-1, p, dim)
        return np.stack([descriptor(f.reshape(bank.grid[0], bank.grid[1], dim)) for f in feats])

    def _global_model(self, bank: Bank) -> GaussianModel:
        if bank.global_model is None:
            bank.global_model = GaussianModel.fit(self._descriptors(bank))
        return bank.global_model

    def global_share(self, bank: Bank) -> float:
        """The global score's share of the false-alarm and review budgets (the local score has the rest): half, or
        global_small_share below global_min_images (a Gaussian fitted on folds of a few images is kept for gross
        changes, e.g. another product, and costs the local score little of its budget)."""
        return 0.5 if len(bank.images) >= self.settings.global_min_images else self.settings.global_small_share

    def recalibrate(self, bank: Bank) -> None:
        """Thresholds from k-fold held-out scores: the local score's, and the global score's when the bank has one;
        with both, each gets its share of the false-alarm and review budgets (global_share; the worse of the two
        decides)."""
        s = self.settings
        bank.global_model = None
        if len(bank.images) < 2:
            bank.calibration, bank.calibration_scores = None, []
            bank.global_calibration, bank.global_calibration_scores = None, []
            bank.position = None
            return
        bank.calibration_scores, bank.global_calibration_scores, bank.position = self.calibration_scores(bank)
        glob = self.global_share(bank) if bank.global_calibration_scores else 0.0
        folds = f" ({min(s.calibration_folds, len(bank.images))} folds, each scored by a bank built without it)"

        def fit(scores: list[float], share: float) -> Calibration:
            cal = calibrate(
                scores,
                s.false_alarm_rate * share,
                s.threshold_policy,
                s.margin,
                s.min_fit_images,
                s.review_rate * share,
                method="kfold",
            )
            cal.note += folds
            return cal

        bank.calibration = fit(bank.calibration_scores, 1.0 - glob)
        bank.global_calibration = fit(bank.global_calibration_scores, glob) if glob else None
        self.apply_miss_budget(bank)

    def apply_miss_budget(self, bank: Bank) -> None:
        """The review threshold answers to the product's confirmed defects too (calibration.with_miss_budget): a
        defect an operator confirmed is not let back to pass when good images move the thresholds. Its floor is
        the normal scores' threshold at false_alarm_rate + review_max (the review load it may cost)."""
        cal, s = bank.calibration, self.settings
        if cal is None or len(bank.calibration_scores) < 2:
            return
        glob = self.global_share(bank) if bank.global_calibration is not None else 0.0
        wide = max(s.review_max * (1.0 - glob), cal.review_target)
        floor = calibrate(
            bank.calibration_scores, cal.far_target, s.threshold_policy, s.margin, s.min_fit_images, wide
        ).review_threshold
        bank.calibration = with_miss_budget(cal, self.confirmed_defect_scores(bank), s.miss_rate, floor)

    def confirmed_defect_scores(self, bank: Bank) -> list[float]:
        """Each confirmed defect's local score against the bank as it stands, from its box's kept patch features
        (no backbone forward; the box holds the image's top patches, so this is at most the image's own score:
        the miss budget errs toward review). [] without a library in the bank's current feature view."""
        lib = self.defects.store.load(bank.key)
        if lib is None or not lib.entries or lib.backbone_id != bank.backbone_id or bank.index is None:
            return []
        mode = (bank.scoring.get("image_score") if bank.scoring else None) or self.settings.image_score
        mode = "max_patch" if mode == "max" else mode  # no smoothed map of a box's patches
        out = []
        for a, b in (e.rows for e in lib.entries):
            dist = np.asarray(bank.index.search(np.ascontiguousarray(lib.patches[a:b], np.float32)), np.float64)
            if bank.position is not None:
                dist = bank.position.standardise_anywhere(dist)
            out.append(image_score(dist, dist.ravel(), mode, self.settings.topk_patches))
        return out

    def refit_review(self, key: BankKey) -> None:
        """After the product's defect library changed (the caller holds the write lock): the review threshold follows
        the confirmed defects, and the bank is saved as a new generation when it moved, so every replica follows."""
        try:
            bank = self.bank(key)
        except FailedPrecondition:  # no bank (deleted meanwhile): nothing to follow
            return
        cal = bank.calibration
        if cal is None:
            return
        self.apply_miss_budget(bank)
        assert bank.calibration is not None
        if (bank.calibration.review_threshold, bank.calibration.defects) != (cal.review_threshold, cal.defects):
            self.store.save(bank)
            with self._cache_lock:
                self._banks[key] = bank
                self._checked[key] = time.monotonic()

    def _info(self, bank: Bank) -> BankInfo:
        return BankInfo.from_meta(bank.meta())

    def stats(self, line_id: str = "", dataset: str = "", category: str = "") -> list[BankInfo]:
        """Every bank, optionally filtered by line, dataset and category (empty filters match all)."""
        for value, name in ((line_id, "line_id"), (dataset, "dataset"), (category, "category")):
            check_name(value, name, required=False)
        out = []
        for meta in self.store.list_metas():
            if line_id and meta["line_id"] != line_id:
                continue
            if dataset and meta["dataset"] != dataset:
                continue
            if category and meta["category"] != category:
                continue
            out.append(BankInfo.from_meta(meta))
        return sorted(out, key=lambda b: (b.line_id, b.dataset, b.category))

    def delete_bank(self, line_id: str, dataset: str, category: str, shas: Sequence[str] = ()) -> int:
        """Delete a product's bank, or only these images from it (it recalibrates); returns the images removed.

        A normal image taken out of the memory (say it showed a defect after all) must stop counting as
        normal here too, or the expert would keep passing that defect.
        """
        key = self._key(line_id, dataset, category)
        for i, sha in enumerate(shas):
            check_sha256(sha, field=f"sha256[{i}]")
        with self._write_lock:
            if shas:
                return self._remove_images(key, set(shas))
            meta = self.store.read_meta(key)
            self._forget(key)
        return len(meta["images"]) if meta else 0

    def _remove_images(self, key: BankKey, shas: set[str]) -> int:
        current = self.store.load(key)
        if current is None:
            return 0
        bank = dataclasses.replace(current, images=list(current.images), index=None)
        s = self.settings
        removed = bank.remove(shas, s.coreset_projection, s.seed, getattr(self.features, "device", None))
        if not removed:
            return 0
        if bank.images:
            self._commit(bank)
        else:  # nothing normal is left: no bank, as if never built
            self._forget(key)
        return removed

    def _commit(self, bank: Bank) -> None:
        """Index, recalibrate and save a changed bank (under the write lock), and serve it from now on."""
        self._index(bank)
        self.recalibrate(bank)
        self.store.save(bank)
        with self._cache_lock:
            self._banks[bank.key] = bank
            self._checked[bank.key] = time.monotonic()

    def _forget(self, key: BankKey) -> None:
        self.store.delete(key)
        with self._cache_lock:
            self._banks.pop(key, None)
            self._checked.pop(key, None)

    # --- scoring ---------------------------------------------------------------------------------------
    def _image_score(self, patch_dist: np.ndarray, bank: Bank | None = None) -> tuple[float, np.ndarray]:
        """A query's (h, w) nearest-patch distances -> its local score and smoothed map, on the bank's scale."""
        if bank is not None and bank.position is not None:
            patch_dist = bank.position.standardise(patch_dist)
        return self._score_map(patch_dist, bank)

    def _score_map(self, patch_dist: np.ndarray, bank: Bank | None = None) -> tuple[float, np.ndarray]:
        s = self.settings
        size = self.input_size
        if bank is not None and bank.feature_choice is not None:
            size = int(bank.feature_choice["input_size"])
        mode = (bank.scoring.get("image_score") if bank is not None and bank.scoring else None) or s.image_score
        smoothed = smooth_map(patch_dist, size, s.smoothing_sigma)
        return image_score(smoothed, patch_dist, mode, s.topk_patches), smoothed

    def score(
        self,
        bank: Bank,
        feats: np.ndarray,
        geom: Geometry,
        query: Image.Image | None = None,
        return_heatmap: bool = False,
        return_overlay: bool = False,
        max_boxes: int = 0,
        threshold: float = 0.0,
        keep_map: bool = False,
    ) -> EvidenceResult:
        """A query's (h, w, D) patch grid against the bank -> score, verdict, boxes, heat map."""
        assert bank.index is not None and bank.calibration is not None
        flat = feats.reshape(-1, feats.shape[-1])
        dist = bank.index.search(flat).reshape(feats.shape[:2])
        if bank.index.engine == "ivf":
            self._exact_peak(bank, flat, dist)
        local, smoothed = self._image_score(dist, bank)
        cal = bank.calibration
        thr = threshold if threshold > 0 else cal.threshold
        low = thr * cal.review_threshold / cal.threshold  # a threshold in the request moves the band with it
        glob, gthr = 0.0, 0.0
        score = local
        if bank.global_calibration is not None:
            kind = self._global_kind(bank)
            glob = mean_distance(dist) if kind == "mean_distance" else self._global_model(bank).score(descriptor(feats))
            gthr = bank.global_calibration.threshold
            glow = bank.global_calibration.review_threshold
            # one score on the local thresholds' scale: over each of them exactly when either score is over its own.
            # A global score in its pass band leaves the local one alone: mapped up, its normal spread would rank
            # normal parts above a subtle local defect (foreign tuning split, grass: local AUROC 0.85 alone, 0.65
            # with it); the bands are the same either way
            if glob > glow:
                score = max(local, on_local_scale(glob, glow, gthr, low, thr))
        fired = {(False, False): "none", (True, False): "local", (False, True): "global", (True, True): "both"}[
            (local > thr, gthr > 0 and glob > gthr)
        ]
        x0, y0, x1, y1 = geom.box
        crop = smoothed[y0:y1, x0:x1]
        s = self.settings
        boxes = find_boxes(crop, thr, geom, max_boxes or s.max_boxes, s.box_min_area, s.box_peak_ratio, local)
        result = EvidenceResult(
            score=score,
            threshold=thr,
            anomalous=score > thr,
            local_score=local,
            global_score=glob,
            global_threshold=gthr,
            fired=fired,
            review_threshold=low,
            band="fail" if score > thr else "review" if score > low else "pass",
            boxes=boxes,
            width=geom.width,
            height=geom.height,
            backbone_id=bank.backbone_id,
            bank_images=len(bank.images),
            calibration=bank.calibration,
            heatmap_scale=HEATMAP_SCALE * thr,
        )
        if return_heatmap or return_overlay:
            heat = heatmap_image(crop, result.heatmap_scale, geom)
            if return_heatmap:
                result.heatmap_png = png_bytes(heat)
            if return_overlay and query is not None:
                result.overlay_png = png_bytes(overlay_image(query, heat))
        if keep_map:
            t = Image.fromarray(crop.astype(np.float32), mode="F")
            result.anomaly_map = np.asarray(t.resize((geom.width, geom.height), Image.BILINEAR), np.float32)
        result.summary = summarize(result)
        return result

    @staticmethod
    def _exact_peak(bank: Bank, flat: np.ndarray, dist: np.ndarray) -> None:
        """Re-measure exactly, in place, the PEAK_PATCHES highest-ranked patches of `dist` (standardised when the
        bank standardises) and their eight neighbours: an approximate distance is never below the exact one, so
        the peak that sets the score is exact unless every re-measured patch fell under an unmeasured one."""
        assert bank.index is not None
        rank = bank.position.standardise(dist) if bank.position is not None else dist
        h, w = dist.shape
        top = np.argpartition(rank.ravel(), -min(PEAK_PATCHES, rank.size))[-PEAK_PATCHES:]
        ys, xs = np.divmod(top, w)
        near = {
            (y + dy) * w + (x + dx)
            for y, x in zip(ys.tolist(), xs.tolist(), strict=True)
            for dy in (-1, 0, 1)
            for dx in (-1, 0, 1)
            if 0 <= y + dy < h and 0 <= x + dx < w
        }
        cells = np.fromiter(sorted(near), dtype=np.int64)
        np.put(dist, cells, bank.index.exact(flat[cells]))

    def _check_request(self, max_boxes: int, threshold: float) -> None:
        if max_boxes < 0 or max_boxes > 100:
            raise InvalidArgument(f"is {max_boxes}; it must be between 0 (default) and 100", field="options.max_boxes")
        if threshold < 0 or not np.isfinite(threshold):
            raise InvalidArgument(f"is {threshold}; it must be 0 (calibrated) or positive", field="options.threshold")

    def analyze_sync(
        self,
        line_id: str,
        dataset: str,
        category: str,
        image: bytes | Image.Image,
        return_heatmap: bool = False,
        return_overlay: bool = False,
        max_boxes: int = 0,
        threshold: float = 0.0,
        keep_map: bool = False,
    ) -> EvidenceResult:
        """One query, synchronously (evaluation and benchmarks); `analyze` is the batched async path."""
        self._check_request(max_boxes, threshold)
        bank = self._ready_bank(self._key(line_id, dataset, category))
        start = time.perf_counter()
        feats, geom = self._extract_for(bank, image)
        query = _as_image(image) if return_overlay else None
        r = self.score(bank, feats, geom, query, return_heatmap, return_overlay, max_boxes, threshold, keep_map)
        r.compute_ms = (time.perf_counter() - start) * 1000.0
        return r

    async def analyze(
        self,
        line_id: str,
        dataset: str,
        category: str,
        image: bytes,
        return_heatmap: bool = False,
        return_overlay: bool = False,
        max_boxes: int = 0,
        threshold: float = 0.0,
    ) -> EvidenceResult:
        """One query through the pipeline (concurrent requests share decode batches and backbone calls)."""
        self._check_request(max_boxes, threshold)
        key = self._key(line_id, dataset, category)
        bank = self._fresh_bank(key) or await asyncio.to_thread(self._ready_bank, key)
        start = time.perf_counter()
        if bank.backbone_id == self.backbone_id:
            feats, geom = await self.extract(image)
        else:  # a self-configured product: its own features, outside the shared batches of the stage's default
            feats, geom = await asyncio.to_thread(self._extract_for, bank, image)
        query = _as_image(image) if return_overlay else None
        r = await asyncio.to_thread(
            self.score, bank, feats, geom, query, return_heatmap, return_overlay, max_boxes, threshold
        )
        r.compute_ms = (time.perf_counter() - start) * 1000.0
        return r

    def _extract_for(self, bank: Bank, image: bytes | Image.Image) -> tuple[np.ndarray, Geometry]:
        """One image's patch grid in the features of this bank, synchronously."""
        if bank.backbone_id == self.backbone_id:
            prepared = self.prepare_batch([(image, "image")])
            if prepared.errors[0] is not None:
                raise prepared.errors[0]
            return self.run_batch(prepared.payload)[0]
        features, prep = self.bank_view(bank)
        prepared = prep.batch([(image, "image")], self.tensor_path, self._pool)
        if prepared.errors[0] is not None:
            raise prepared.errors[0]
        batch = prepared.payload
        with self.streams.running([batch.ready], [batch.pixels]):
            return features.extract(batch.pixels)[0], batch.geoms[0]

    async def extract(self, image: bytes, field: str = "image") -> tuple[np.ndarray, Geometry]:
        """One image's patch grid and Geometry through the pipeline; INVALID_ARGUMENT names `field` if it is bad."""
        return (await self.pipeline.submit_many([(image, field)]))[0].value

    @property
    def pipeline(self) -> Pipeline:
        """Decode and resize batch N+1 while the backbone runs batch N (built on first use)."""
        if self._pipeline is None:
            s = self.settings
            self._pipeline = Pipeline(
                self.prepare_batch,
                self.run_batch,
                batcher_factory=self._batcher_factory,
                max_batch_size=s.max_batch_size,
                max_wait_ms=s.max_wait_ms,
                stage="evidence",
                depth=s.pipeline_depth,
                fill="time",
            )
        return self._pipeline

    async def close(self) -> None:
        if self._pipeline is not None:
            await self._pipeline.close()
        self._pool.shutdown(wait=False)


def _as_image(image: bytes | Image.Image) -> Image.Image:
    return image if isinstance(image, Image.Image) else Image.open(io.BytesIO(image)).convert("RGB")
