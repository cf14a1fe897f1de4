"""Banks of normal patches, one per (line, dataset, category): greedy coreset, nearest-patch index, persistence.

A bank keeps a coreset of its normal images' patches (PatchCore's greedy k-center selection, grown
incrementally: new patches start at their distance to the coreset they join, so only what the bank does
not yet cover gets picked). Every coreset patch remembers the image it came from, and patches are kept
sorted by that image, so a leave-one-out search excludes one image as a contiguous id range.

Banks persist in a store (a folder or any fsspec URL): per bank, `meta.json` plus arrays named by
generation. Arrays are written first and `meta.json` last, so a crash never leaves a bank pointing at
half-written data; in cluster mode every replica reads the same store and reloads a bank whose
generation changed. The backbone id is recorded, so a bank is never searched with other features.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import fsspec
import numpy as np

from services.evidence.calibration import Calibration
from services.evidence.position import PositionStats

log = logging.getLogger(__name__)

BANK_FORMAT = 1
TORCH_QUERY_CHUNK = 2048
TORCH_MEMORY_CHUNK = 262_144
IVF_PROBES = 2000  # patches searched exactly and through IVF when an IVF index is built (its recall check)
CORESET_CHUNK = 8192  # patches per greedy pass (five images at 320 px): projected to 128 dims they are 4 MB,
# which each of the pass's picks reads once; at 16,384 (8 MB) the pass fell out of cache and ran 4x slower here


@dataclass(frozen=True)
class BankKey:
    line_id: str
    dataset: str
    category: str

    def describe(self) -> str:
        return f"line {self.line_id!r}, dataset {self.dataset!r}, category {self.category!r}"

    def folder(self) -> str:
        """A path-safe folder name (names may hold any character but '/')."""
        return hashlib.sha256(f"{self.line_id}/{self.dataset}/{self.category}".encode()).hexdigest()[:24]


# --- greedy coreset --------------------------------------------------------------------------------------


def greedy_coreset(
    x: np.ndarray,
    n: int,
    start: np.ndarray | None = None,
    projection: int = 128,
    seed: int = 0,
    device: Any = None,
) -> np.ndarray:
    """Indices of `n` rows of `x` picked by greedy k-center (each pick is the row farthest from those picked).

    Args:
        x: (N, D) patches.
        n: how many to pick (at most N).
        start: (N,) each row's distance to an existing coreset it will join; None starts from a seeded row.
        projection: pick on a random projection to this many dims (Johnson-Lindenstrauss; 0 or >= D: none).
        seed: seeds the projection and the first pick.
        device: torch device for the distance updates (the GPU when there is one).
    """
    import torch

    total = x.shape[0]
    n = min(n, total)
    if n <= 0:
        return np.zeros(0, dtype=np.int64)
    gen = torch.Generator().manual_seed(seed)
    t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    if projection and projection < t.shape[1]:
        proj = torch.randn(t.shape[1], projection, generator=gen) / projection**0.5
        t = t @ proj
    t = t.to(device or "cpu")
    sq = (t * t).sum(1)
    if start is None:
        mind = torch.full((total,), float("inf"), device=t.device)
        first = int(torch.randint(total, (1,), generator=gen))
    else:
        mind = torch.from_numpy(np.asarray(start, dtype=np.float32) ** 2).to(t.device)
        first = int(torch.argmax(mind))
    picked = torch.empty(n, dtype=torch.long)
    cur = first
    for i in range(n):
        picked[i] = cur
        d = sq - 2.0 * (t @ t[cur]) + sq[cur]
        mind = torch.minimum(mind, d.clamp_min_(0))
        mind[cur] = -1.0
        cur = int(torch.argmax(mind))
    return picked.numpy()


# --- nearest-patch index ---------------------------------------------------------------------------------


class PatchIndex:
    """Nearest-patch search over a bank's memory: Faiss flat (exact), HNSW, IVF, or exact torch on the device.

    Distances are Euclidean (not squared). `exclude` = (start, stop) leaves out one image's patches.

    IVF (big banks on the CPU) is checked when built: `probe` patches (the bank's own images' patches, the
    queries it will see; by default a sample of the memory) are searched exactly and through IVF, and nprobe
    doubles from `ivf[0]` until the share of probes whose two nearest distances equal the exact ones reaches
    `ivf[1]` (the second makes a probe that is itself a memory patch a leave-one-out query; at nprobe = nlist
    IVF is exact).
    `recall` and `nprobe` say what the check found.
    """

    def __init__(
        self,
        memory: np.ndarray,
        engine: str,
        hnsw: tuple[int, int, int] = (32, 80, 64),
        device: Any = None,
        ivf: tuple[int, float] = (8, 0.99),
        probe: np.ndarray | None = None,
    ):
        self.engine = engine
        self.size = int(memory.shape[0])
        self.dim = int(memory.shape[1])
        self.recall = 1.0
        self.nprobe = 0
        self.hnsw_m = self.ef_search = 0  # set for HNSW
        self._exact: tuple[Any, Any] | None = None  # IVF: the memory and its squared norms as tensors (exact())
        if engine == "torch":
            import torch

            self.device = device or torch.device("cpu")
            self.memory = torch.from_numpy(np.ascontiguousarray(memory, dtype=np.float32)).to(self.device)
            self.memory_sq = (self.memory * self.memory).sum(1)
            return
        import faiss

        data = np.ascontiguousarray(memory, dtype=np.float32)
        if engine == "hnsw":
            m, ef_construction, self.ef_search = hnsw
            self.hnsw_m = m
            self.index = faiss.IndexHNSWFlat(self.dim, m)
            self.index.hnsw.efConstruction = ef_construction
        elif engine == "flat":
            self.index = faiss.IndexFlatL2(self.dim)
        elif engine == "ivf":
            self._build_ivf(data, *ivf, probe)
            return
        else:
            raise ValueError(f"unknown nearest-patch engine {engine!r}")
        self.index.add(data)

    def _build_ivf(self, data: np.ndarray, nprobe: int, min_recall: float, probe: np.ndarray | None) -> None:
        """IVF-Flat with ~4 sqrt(N) lists (at least 39 training points each), nprobe raised until recall holds."""
        import faiss

        n = data.shape[0]
        self._memory = data  # the bank's own array (no copy): exact() reads it
        nlist = ivf_lists(n)
        self.index = faiss.IndexIVFFlat(faiss.IndexFlatL2(self.dim), self.dim, nlist)
        self.index.cp.niter = 10  # k-means iterations: the recall check below guards the result, not the fit
        self.index.train(data)
        self.index.add(data)
        if probe is None:
            probe = data[np.random.default_rng(0).choice(n, min(n, IVF_PROBES), replace=False)]
        q = np.ascontiguousarray(probe, dtype=np.float32)
        k = min(2, n)  # a probe that is itself a memory patch is checked on its nearest other patch
        exact = faiss.IndexFlatL2(self.dim)
        exact.add(data)
        want, want_ids = exact.search(q, k)
        # flat search over a batch computes |x|^2 + |y|^2 - 2xy (BLAS); IVF sums squares: they differ by rounding
        # of the order of the squared norms, so a match is the same patch, or a distance equal within that
        atol = 1e-5 * float(np.mean(np.sum(q * q, axis=1)))
        self.nprobe = max(1, min(nprobe, nlist))
        while True:
            got, ids = self.index.search(q, k, params=faiss.SearchParametersIVF(nprobe=self.nprobe))
            same = (ids == want_ids) | np.isclose(got, want, rtol=1e-4, atol=atol)
            self.recall = float(np.mean(same.all(1)))
            if self.recall >= min_recall or self.nprobe >= nlist:
                break
            self.nprobe = min(nlist, 2 * self.nprobe)
        log.info("IVF over %d patches: nlist %d, nprobe %d, recall@1 %.4f", n, nlist, self.nprobe, self.recall)

    def distances_per_query(self, rows: int) -> float:
        """About how many patches one query is compared with when `rows` of the memory are searchable."""
        nlist = int(self.index.nlist) if self.engine == "ivf" else None  # the index's own lists, not a new bank's
        return searched_per_query(self.engine, rows, self.nprobe, self.hnsw_m, self.ef_search, nlist)

    def search(
        self, queries: np.ndarray, exclude: tuple[int, int] | None = None, keep: np.ndarray | None = None
    ) -> np.ndarray:
        """(Q, D) queries -> (Q,) distance to the nearest memory patch (outside `exclude`; only rows where the
        boolean `keep` is true, for IVF and HNSW: Faiss's flat search leaves BLAS when filtered, so a filtered
        exact search copies the kept rows into an index of their own instead). inf where the search found no
        row: a filter can leave none in the lists IVF probes."""
        q = np.ascontiguousarray(queries, dtype=np.float32)
        if keep is not None and self.engine not in ("ivf", "hnsw"):
            raise ValueError("a row filter is for the IVF and HNSW engines")
        if self.engine == "torch":
            return self._search_torch(q, exclude)
        import faiss

        params = None
        bitmap = None
        if keep is not None:
            bitmap = np.packbits(np.asarray(keep, bool), bitorder="little")  # faiss reads bit i of byte i >> 3
            sel = faiss.IDSelectorBitmap(self.size, faiss.swig_ptr(bitmap))
            params = (
                faiss.SearchParametersHNSW(efSearch=self.ef_search, sel=sel)
                if self.engine == "hnsw"
                else faiss.SearchParametersIVF(nprobe=self.nprobe, sel=sel)
            )
        elif exclude is not None:
            sel = faiss.IDSelectorNot(faiss.IDSelectorRange(int(exclude[0]), int(exclude[1])))
            params = (
                faiss.SearchParametersHNSW(efSearch=self.ef_search, sel=sel)
                if self.engine == "hnsw"
                else faiss.SearchParametersIVF(nprobe=self.nprobe, sel=sel)
                if self.engine == "ivf"
                else faiss.SearchParameters(sel=sel)
            )
        elif self.engine == "hnsw":
            params = faiss.SearchParametersHNSW(efSearch=self.ef_search)
        elif self.engine == "ivf":
            params = faiss.SearchParametersIVF(nprobe=self.nprobe)
        dist, ids = self.index.search(q, 1, params=params)
        del bitmap  # the selector points into it: alive until the search is done
        out = np.sqrt(np.maximum(dist[:, 0], 0.0))
        out[ids[:, 0] < 0] = np.inf  # nothing searchable where it looked (a filter left no row in the probed lists)
        return out

    def exact(self, queries: np.ndarray) -> np.ndarray:
        """(Q, D) queries -> (Q,) exact nearest-patch distances for a few queries (IVF: one matrix product with the
        memory, faster than probing every list; other engines: their own search, HNSW left approximate). The
        patches that decide a score are measured this way (PEAK_PATCHES in core.py)."""
        if self.engine != "ivf":
            return self.search(queries)
        import torch  # its thread pool: NumPy's OpenBLAS threads would spin against the backbone's and Faiss's

        if self._exact is None:
            memory = torch.from_numpy(self._memory)  # shares the array
            self._exact = (memory, (memory * memory).sum(1))
        memory, memory_sq = self._exact
        with torch.inference_mode():
            q = torch.from_numpy(np.ascontiguousarray(queries, dtype=np.float32))
            d = torch.addmm(memory_sq[None, :], q, memory.T, alpha=-2.0).min(1).values
            return (d + (q * q).sum(1)).clamp_min(0).sqrt().numpy()

    def _search_torch(self, q: np.ndarray, exclude: tuple[int, int] | None) -> np.ndarray:
        import torch

        out = []
        with torch.inference_mode():
            for qs in range(0, q.shape[0], TORCH_QUERY_CHUNK):
                qt = torch.from_numpy(q[qs : qs + TORCH_QUERY_CHUNK]).to(self.device)
                qsq = (qt * qt).sum(1, keepdim=True)
                best = torch.full((qt.shape[0],), float("inf"), device=self.device)
                for ms in range(0, self.size, TORCH_MEMORY_CHUNK):
                    mem = self.memory[ms : ms + TORCH_MEMORY_CHUNK]
                    d = qsq - 2.0 * (qt @ mem.T) + self.memory_sq[ms : ms + TORCH_MEMORY_CHUNK]
                    if exclude is not None:
                        a, b = max(exclude[0] - ms, 0), min(exclude[1] - ms, mem.shape[0])
                        if a < b:
                            d[:, a:b] = float("inf")
                    best = torch.minimum(best, d.min(1).values)
                out.append(best.clamp_min(0).sqrt().cpu())
        return torch.cat(out).numpy() if out else np.zeros(0, np.float32)


def ivf_lists(patches: int) -> int:
    """IVF's list count for a bank of this many patches: ~4 sqrt(N), at least 39 training points each."""
    return max(1, min(int(4 * np.sqrt(patches)), patches // 39))


def searched_per_query(
    engine: str, patches: int, nprobe: int, hnsw_m: int, ef_search: int, nlist: int | None = None
) -> float:
    """About how many patches one query patch is compared with in a bank of this many patches on this engine
    (IVF: over `nlist` lists, by default the count a bank of this size gets)."""
    if engine == "ivf":
        nlist = nlist or ivf_lists(patches)
        return nlist + patches * min(nprobe, nlist) / nlist
    if engine == "hnsw":
        return float(min(patches, 2 * ef_search * hnsw_m))
    return float(patches)


def choose_engine(
    configured: str, patches: int, hnsw_min_patches: int, device: Any, ivf_min_patches: int | None = None
) -> str:
    """auto: exact torch search on a GPU; on the CPU, Faiss flat for small banks, IVF from ivf_min_patches and
    HNSW from hnsw_min_patches (None: no IVF step)."""
    if configured != "auto":
        return configured
    if device is not None and getattr(device, "type", "cpu") == "cuda":
        return "torch"
    if patches >= hnsw_min_patches:
        return "hnsw"
    return "ivf" if ivf_min_patches is not None and patches >= ivf_min_patches else "flat"


# --- the bank --------------------------------------------------------------------------------------------


@dataclass
class Bank:
    """One product's normal patches.

    Attributes:
        images: sha256 of each normal image, in the order added (an image's owner id is its position).
        memory: (M, D) float32 coreset patches, sorted by owner.
        owners: (M,) int32 owner image of each coreset patch.
        features: (n_images * patches_per_image, D) float16 patches of each image in its own pose, kept
            so that calibration scores held-out images and removal rebuilds coresets without a backbone forward
            (2 bytes x D per patch: 95 MB for 100 images of 3,136 152-d patches).
        patches_seen: patches offered to the coreset (every pose of every image).
        calibration_scores: the held-out image scores behind `calibration` (k-fold; leave-one-out in banks
            saved before k-fold).
    """

    key: BankKey
    backbone_id: str
    dim: int
    grid: tuple[int, int]
    images: list[str] = field(default_factory=list)
    memory: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))
    owners: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))
    features: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float16))
    patches_seen: int = 0
    calibration: Calibration | None = None
    calibration_scores: list[float] = field(default_factory=list)
    generation: int = 0
    updated_at: float = 0.0
    index: PatchIndex | None = None
    # self-configuration: the features chosen (None: the stage's configured ones), the image and global scores,
    # the choice's record, and how many images it was made on (it is made again when the bank grows enough)
    feature_choice: dict[str, Any] | None = None
    scoring: dict[str, str] = field(default_factory=dict)
    self_config: dict[str, Any] | None = None
    auto_images: int = 0
    global_calibration: Calibration | None = None
    global_calibration_scores: list[float] = field(default_factory=list)
    global_model: Any = None  # fitted from `features` when needed, never stored
    position: PositionStats | None = None  # what normal images score at each grid position (position_norm)

    @property
    def patches_per_image(self) -> int:
        return self.grid[0] * self.grid[1]

    def owner_range(self, owner: int) -> tuple[int, int]:
        """The rows of `memory` that came from image `owner` (contiguous: memory is sorted by owner)."""
        a, b = np.searchsorted(self.owners, [owner, owner + 1])
        return int(a), int(b)

    def image_features(self, owner: int) -> np.ndarray:
        p = self.patches_per_image
        return self.features[owner * p : (owner + 1) * p].astype(np.float32)

    def append(
        self,
        shas: list[str],
        feats: list[np.ndarray],
        ratio: float,
        projection: int,
        seed: int,
        device: Any = None,
    ) -> None:
        """Add images: feats[i] is (poses, h, w, D) for shas[i] (pose 0 is the image itself). Grows the coreset."""
        if not shas:
            return
        first_owner = len(self.images)
        flat = np.concatenate([f.reshape(-1, self.dim) for f in feats]).astype(np.float32)
        per_image = [f.shape[0] * self.patches_per_image for f in feats]
        new_owner = np.repeat(np.arange(first_owner, first_owner + len(shas), dtype=np.int32), per_image)
        if ratio < 1:
            picked = self._coreset(flat, ratio, projection, seed + first_owner, device)
        else:
            picked = np.arange(flat.shape[0])
        memory = np.concatenate([self.memory.reshape(-1, self.dim), flat[picked]])
        owners = np.concatenate([self.owners, new_owner[picked]])
        order = np.argsort(owners, kind="stable")
        self.memory, self.owners = np.ascontiguousarray(memory[order]), owners[order]
        own_pose = np.concatenate([f[0].reshape(-1, self.dim) for f in feats]).astype(np.float16)
        self.features = np.concatenate([self.features.reshape(-1, self.dim), own_pose])
        self.images.extend(shas)
        self.patches_seen += int(flat.shape[0])
        self.index = None

    def remove(self, shas: set[str], projection: int, seed: int, device: Any = None) -> int:
        """Drop these images' patches, then refill the coreset from the remaining images' own patches.

        A coreset patch of a dropped image may have been the only cover of a region that other images
        share (k-center skips what is already covered); without a refill, normal images would score high
        there. So as many rows as were dropped are picked again, greedily, from what the pruned memory
        covers worst. Returns how many images were dropped.
        """
        gone = np.array([sha in shas for sha in self.images], dtype=bool)
        if not gone.any():
            return 0
        renumber = np.cumsum(~gone) - 1
        kept_rows = ~gone[self.owners]
        dropped_rows = int((~kept_rows).sum())
        self.memory = np.ascontiguousarray(self.memory[kept_rows])
        self.owners = renumber[self.owners[kept_rows]].astype(np.int32)
        self.features = self.features[np.repeat(~gone, self.patches_per_image)]
        self.images = [sha for sha, g in zip(self.images, gone, strict=True) if not g]
        self.index = None
        remaining = self.features.astype(np.float32)
        if dropped_rows and remaining.shape[0]:
            ratio = min(1.0, dropped_rows / remaining.shape[0])
            picked = self._coreset(remaining, ratio, projection, seed, device)
            owners = np.concatenate([self.owners, (picked // self.patches_per_image).astype(np.int32)])
            order = np.argsort(owners, kind="stable")
            self.memory = np.ascontiguousarray(np.concatenate([self.memory, remaining[picked]])[order])
            self.owners = owners[order]
        return int(gone.sum())

    def _coreset(self, flat: np.ndarray, ratio: float, projection: int, seed: int, device: Any) -> np.ndarray:
        """Rows of `flat` to keep: greedy k-center in chunks, each grown from the bank and the chunks before it.

        Chunks bound the greedy's cost (quadratic in the rows it sees) to a linear one in the patches added;
        each chunk starts from its rows' distances to everything kept so far, so what is already
        covered is not picked again.
        """
        bank_index = self.index
        if bank_index is None and self.memory.shape[0]:
            bank_index = PatchIndex(self.memory, "flat")
        parts: list[np.ndarray] = []
        for s in range(0, flat.shape[0], CORESET_CHUNK):
            x = flat[s : s + CORESET_CHUNK]
            dists = [bank_index.search(x)] if bank_index is not None else []
            if parts:
                dists.append(PatchIndex(flat[np.concatenate(parts)], "flat").search(x))
            start = np.minimum.reduce(dists) if dists else None
            n = max(1, round(ratio * x.shape[0]))
            parts.append(s + greedy_coreset(x, n, start, projection, seed + s, device))
        return np.sort(np.concatenate(parts))

    def rows_of(self, owners: np.ndarray) -> np.ndarray:
        """Which rows of the memory came from these images (boolean, one per row): calibration's fold banks.

        Every memory row remembers its image (`owners`), so a bank without a fold is a mask, O(M), with no
        coreset run again. It is not the bank a rebuild without the fold would hold: the coreset was picked with
        the fold's images in it. Measured on the generator's tuning split (40-image banks), held-out images
        scored a little lower than against rebuilt fold banks (thresholds 3-9% lower) and fresh normals failed
        at 1.25% (2 of 160) against the configured 1%. At coreset_ratio 1 both hold every patch of the other
        images (this one with every evidence.augment pose too).
        """
        chosen = np.zeros(len(self.images), dtype=bool)
        chosen[np.asarray(owners, np.int64)] = True
        return chosen[self.owners]

    def build_index(
        self, engine: str, hnsw: tuple[int, int, int], device: Any = None, ivf: tuple[int, float] = (8, 0.99)
    ) -> PatchIndex:
        """The bank's search index; IVF's recall is checked on a sample of the bank's own images' patches."""
        probe = None
        if engine == "ivf" and len(self.features):
            rows = np.random.default_rng(0).choice(len(self.features), min(len(self.features), IVF_PROBES), False)
            probe = np.asarray(self.features[np.sort(rows)], np.float32)
        self.index = PatchIndex(self.memory, engine, hnsw, device, ivf, probe)
        return self.index

    def meta(self) -> dict[str, Any]:
        return {
            "format": BANK_FORMAT,
            "line_id": self.key.line_id,
            "dataset": self.key.dataset,
            "category": self.key.category,
            "backbone_id": self.backbone_id,
            "dim": self.dim,
            "grid": list(self.grid),
            "images": self.images,
            "memory_patches": int(self.memory.shape[0]),
            "patches_seen": self.patches_seen,
            "calibration": self.calibration.to_dict() if self.calibration else None,
            "calibration_scores": self.calibration_scores,
            "generation": self.generation,
            "updated_at": self.updated_at,
            "feature_choice": self.feature_choice,
            "scoring": self.scoring,
            "self_config": self.self_config,
            "auto_images": self.auto_images,
            "global_calibration": self.global_calibration.to_dict() if self.global_calibration else None,
            "global_calibration_scores": self.global_calibration_scores,
            "position_stats": self.position.to_dict() if self.position is not None else None,
        }


def key_of(meta: dict[str, Any]) -> BankKey:
    return BankKey(meta["line_id"], meta["dataset"], meta["category"])


class BankStore:
    """Banks under a folder or fsspec URL: `<root>/<bank folder>/meta.json` and `g<generation>-<array>.npy`."""

    ARRAYS = ("memory", "owners", "features")

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")
        self.fs, self.root = fsspec.core.url_to_fs(self.url)
        self.fs.makedirs(self.root, exist_ok=True)

    def probe(self) -> None:
        """List the store's root: raises when the store is unreachable."""
        self.fs.ls(self.root, detail=False)

    def _dir(self, key: BankKey) -> str:
        return f"{self.root}/{key.folder()}"

    def folder(self, key: BankKey) -> str:
        """The bank's folder in the store (what lives beside a bank, its defect library, goes under it)."""
        return self._dir(key)

    def read_meta(self, key: BankKey) -> dict[str, Any] | None:
        path = f"{self._dir(key)}/meta.json"
        try:
            with self.fs.open(path, "rb") as f:
                return json.loads(f.read())
        except FileNotFoundError:
            return None

    def list_metas(self) -> list[dict[str, Any]]:
        out = []
        try:
            entries = self.fs.ls(self.root, detail=False)
        except FileNotFoundError:
            return []
        for entry in sorted(entries):
            path = f"{entry.rstrip('/')}/meta.json"
            try:
                with self.fs.open(path, "rb") as f:
                    out.append(json.loads(f.read()))
            except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
                continue
            except ValueError as e:
                log.warning("evidence bank %s is unreadable (%s); skipped", path, e)
        return out

    def _array_path(self, key: BankKey, generation: int, name: str) -> str:
        return f"{self._dir(key)}/g{generation}-{name}.npy"

    def load(self, key: BankKey) -> Bank | None:
        """The bank as last committed, or None. Retries once if a writer replaced it while we read."""
        for attempt in range(2):
            meta = self.read_meta(key)
            if meta is None:
                return None
            try:
                arrays = {}
                for name in self.ARRAYS:
                    with self.fs.open(self._array_path(key, meta["generation"], name), "rb") as f:
                        arrays[name] = np.load(io.BytesIO(f.read()), allow_pickle=False)
            except FileNotFoundError:
                if attempt == 0:
                    continue
                raise
            cal = meta.get("calibration")
            return Bank(
                key=key_of(meta),
                backbone_id=meta["backbone_id"],
                dim=int(meta["dim"]),
                grid=(int(meta["grid"][0]), int(meta["grid"][1])),
                images=list(meta["images"]),
                memory=arrays["memory"],
                owners=arrays["owners"],
                features=arrays["features"],
                patches_seen=int(meta.get("patches_seen", 0)),
                calibration=Calibration.from_dict(cal) if cal else None,
                calibration_scores=list(meta.get("calibration_scores", meta.get("loo_scores", []))),
                generation=int(meta["generation"]),
                updated_at=float(meta.get("updated_at", 0.0)),
                feature_choice=meta.get("feature_choice"),
                scoring=dict(meta.get("scoring") or {}),
                self_config=meta.get("self_config"),
                auto_images=int(meta.get("auto_images", 0)),
                global_calibration=Calibration.from_dict(gcal) if (gcal := meta.get("global_calibration")) else None,
                global_calibration_scores=list(
                    meta.get("global_calibration_scores", meta.get("global_loo_scores", []))
                ),
                position=PositionStats.from_dict(ps) if (ps := meta.get("position_stats")) else None,
            )
        return None

    def put_images(self, key: BankKey, images: dict[str, bytes]) -> None:
        """Keep the encoded normal images (by sha256): a later self-configuration re-reads them in new features."""
        folder = f"{self._dir(key)}/images"
        self.fs.makedirs(folder, exist_ok=True)
        for sha, data in images.items():
            with self.fs.open(f"{folder}/{sha}", "wb") as f:
                f.write(data)

    def get_images(self, key: BankKey, shas: list[str]) -> list[bytes] | None:
        """The kept encoded images, in order; None when any is missing (a bank built before they were kept)."""
        out = []
        for sha in shas:
            try:
                with self.fs.open(f"{self._dir(key)}/images/{sha}", "rb") as f:
                    out.append(f.read())
            except FileNotFoundError:
                return None
        return out

    def drop_images(self, key: BankKey, shas: set[str]) -> None:
        for sha in shas:
            path = f"{self._dir(key)}/images/{sha}"
            if self.fs.exists(path):
                self.fs.rm(path)

    def save(self, bank: Bank) -> None:
        """Commit the bank as a new generation: arrays first, then meta.json (the commit), then old arrays go."""
        key = bank.key
        previous = bank.generation
        current = self.read_meta(key)
        bank.generation = max(previous, current["generation"] if current else 0) + 1
        bank.updated_at = time.time()
        self.fs.makedirs(self._dir(key), exist_ok=True)
        for name in self.ARRAYS:
            buf = io.BytesIO()
            np.save(buf, getattr(bank, name), allow_pickle=False)
            with self.fs.open(self._array_path(key, bank.generation, name), "wb") as f:
                f.write(buf.getvalue())
        tmp, final = f"{self._dir(key)}/meta.json.tmp", f"{self._dir(key)}/meta.json"
        with self.fs.open(tmp, "wb") as f:
            f.write(json.dumps(bank.meta()).encode())
        self.fs.mv(tmp, final)
        for path in self.fs.ls(self._dir(key), detail=False):
            name = path.rsplit("/", 1)[-1]
            if name.startswith("g") and name.endswith(".npy") and not name.startswith(f"g{bank.generation}-"):
                self.fs.rm(path)

    def delete(self, key: BankKey) -> bool:
        path = self._dir(key)
        if not self.fs.exists(path):
            return False
        self.fs.rm(path, recursive=True)
        return True
