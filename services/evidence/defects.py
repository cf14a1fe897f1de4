"""A product's defect library: operator-confirmed defects, each with its type, box and the patch features of that box.

An operator who confirms "defect: crack" on a part teaches the product what a crack looks like. The library keeps,
per entry, the image's content id, the type, the box and the box's patch features in the bank's own feature view
(with each patch's distance to the normal bank, which says which patches are the defect and which the background
around it). It answers Defect Classification without an MLLM: a query box's descriptor against every entry's, the
k nearest vote, weighted by closeness.

The library lives beside its product's bank in the bank store (`<bank folder>/defects/`): the entries' arrays are
written under a new generation first, `library.json` last (the commit, by rename), so a crash never leaves entries
pointing at half-written data. The encoded images are kept too, so the features can be made again when the bank
changes its feature view (a self-configuration's new choice). Plain numpy here; the stage extracts the features.
"""

from __future__ import annotations

import asyncio
import io
import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from services.common.errors import FailedPrecondition, InvalidArgument
from services.common.images import check_sha256, sha256_hex
from services.common.names import check_defect_type as check_type
from services.common.names import check_name
from services.common.names import defect_type_key as type_key
from services.common.values import Box
from services.evidence.bank import Bank, BankKey, BankStore
from services.evidence.features import Geometry

if TYPE_CHECKING:
    from services.evidence.core import EvidenceService

LIBRARY_FORMAT = 1


def check_box(box: Box, width: int, height: int, field_name: str = "box") -> Box:
    """A box inside the image with an area, or INVALID_ARGUMENT naming the field."""
    if not (0 <= box.x0 < box.x1 <= width and 0 <= box.y0 < box.y1 <= height):
        raise InvalidArgument(
            f"({box.x0}, {box.y0})-({box.x1}, {box.y1}) is not a box inside the {width}x{height} image: it needs "
            "0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height",
            field=field_name,
        )
    return box


def box_patches(feats: np.ndarray, geom: Geometry, box: Box, input_size: int) -> np.ndarray:
    """The (n, D) patch features under an image-pixel box: every patch of the (h, w, D) grid the box overlaps."""
    h, w = feats.shape[:2]
    gx0, gy0, gx1, gy1 = geom.box
    sx, sy = (gx1 - gx0) / geom.width, (gy1 - gy0) / geom.height

    def span(lo: float, hi: float, cells: int) -> tuple[int, int]:
        a = int(np.floor(lo * cells / input_size))
        b = int(np.ceil(hi * cells / input_size))
        a = min(max(a, 0), cells - 1)
        return a, max(a + 1, min(b, cells))

    c0, c1 = span(gx0 + box.x0 * sx, gx0 + box.x1 * sx, w)
    r0, r1 = span(gy0 + box.y0 * sy, gy0 + box.y1 * sy, h)
    return np.ascontiguousarray(feats[r0:r1, c0:c1].reshape(-1, feats.shape[-1]), dtype=np.float32)


def descriptor(patches: np.ndarray, anomaly: np.ndarray, top: int) -> np.ndarray:
    """One vector for a box: the mean of its `top` most anomalous patches (the defect, not the normal
    background a box also covers), unit length so that boxes of any brightness compare by direction."""
    k = max(1, min(top, patches.shape[0]))
    idx = np.argsort(-anomaly)[:k]
    v = patches[idx].astype(np.float32).mean(0)
    return v / (np.linalg.norm(v) + 1e-8)


@dataclass
class DefectEntry:
    """One confirmed defect; `rows` are its patches' rows in the library's arrays."""

    sha256: str
    defect_type: str
    box: Box
    inspection_id: str = ""
    added_at: float = 0.0
    rows: tuple[int, int] = (0, 0)

    def same(self, sha: str, defect_type: str, box: Box) -> bool:
        b = self.box
        return (self.sha256, self.defect_type, (b.x0, b.y0, b.x1, b.y1)) == (
            sha,
            defect_type,
            (box.x0, box.y0, box.x1, box.y1),
        )

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["rows"] = list(self.rows)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DefectEntry:
        return cls(
            d["sha256"], d["defect_type"], Box(**d["box"]), d.get("inspection_id", ""), float(d.get("added_at", 0.0)),
            (int(d["rows"][0]), int(d["rows"][1])),
        )  # fmt: skip


@dataclass
class Vote:
    defect_type: str
    weight: float  # share of the vote
    distance: float  # to the nearest entry of this type


@dataclass
class Classified:
    defect_type: str
    votes: list[Vote]
    library_size: int
    nearest: DefectEntry  # the closest entry of the winning type (an MLLM's extra example)


@dataclass
class Library:
    """One product's confirmed defects.

    Attributes:
        backbone_id: the feature view the patches are in (the bank's when they were extracted).
        patches: (N, D) float16, every entry's box patches, in entry order.
        anomaly: (N,) float32, each patch's distance to the normal bank when it was added.
    """

    key: BankKey
    backbone_id: str
    dim: int
    entries: list[DefectEntry] = field(default_factory=list)
    patches: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float16))
    anomaly: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    generation: int = 0
    updated_at: float = 0.0

    def types(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for e in self.entries:
            out[e.defect_type] = out.get(e.defect_type, 0) + 1
        return dict(sorted(out.items()))

    def find(self, sha: str, defect_type: str, box: Box) -> DefectEntry | None:
        return next((e for e in self.entries if e.same(sha, defect_type, box)), None)

    def add(self, entry: DefectEntry, patches: np.ndarray, anomaly: np.ndarray) -> None:
        start = int(self.patches.reshape(-1, self.dim).shape[0])
        entry.rows = (start, start + int(patches.shape[0]))
        base = self.patches.reshape(-1, self.dim)
        self.patches = np.concatenate([base, patches.astype(np.float16)])
        self.anomaly = np.concatenate([self.anomaly, anomaly.astype(np.float32)])
        self.entries.append(entry)

    def remove(self, sha: str) -> int:
        """Drop every entry of this image; returns how many left."""
        keep = [e for e in self.entries if e.sha256 != sha]
        removed = len(self.entries) - len(keep)
        if removed:
            parts = [(self.patches[a:b], self.anomaly[a:b]) for a, b in (e.rows for e in keep)]
            self.entries = []
            self.patches = np.zeros((0, self.dim), np.float16)
            self.anomaly = np.zeros(0, np.float32)
            for e, (p, a) in zip(keep, parts, strict=True):
                self.add(e, p, a)
        return removed

    def descriptors(self, top: int) -> np.ndarray:
        """(entries, D) one descriptor per entry."""
        return np.stack(
            [descriptor(self.patches[a:b], self.anomaly[a:b], top) for a, b in (e.rows for e in self.entries)]
        )

    def require(self, candidates: Sequence[str]) -> list[int]:
        """The entries of the candidate types (all when empty); FAILED_PRECONDITION naming what to add when there are
        none, checked before the query's backbone forward is spent."""
        allowed = set(candidates)
        idx = [i for i, e in enumerate(self.entries) if not allowed or e.defect_type in allowed]
        if not idx:
            have = ", ".join(f"{t} ({n})" for t, n in self.types().items()) or "nothing"
            asked = ", ".join(sorted(allowed))
            raise FailedPrecondition(
                f"the defect library of {self.key.describe()} holds no defect of the types asked ({asked}); it holds "
                f"{have}: confirm a defect of one of these types first (AddDefect, or the review queue's "
                "'defect: <type>')"
            )
        return idx

    def classify(self, query: np.ndarray, candidates: list[str], k: int, top: int) -> Classified:
        """The type of a query descriptor by its k nearest entries among `candidates` (all types when empty).

        Each neighbour votes 1 / (distance + eps) for its type; the vote's shares are the weights. FAILED_PRECONDITION
        when the library holds no entry of any candidate type, naming what to add.
        """
        idx = self.require(candidates)
        descs = self.descriptors(top)[idx]
        dist = np.linalg.norm(descs - query[None, :], axis=1)
        order = np.argsort(dist, kind="stable")[: max(1, k)]
        weights: dict[str, float] = {}
        for j in order:
            t = self.entries[idx[j]].defect_type
            weights[t] = weights.get(t, 0.0) + 1.0 / (float(dist[j]) + 1e-6)
        total = sum(weights.values())
        nearest: dict[str, tuple[float, int]] = {}
        for j, d in enumerate(dist):
            t = self.entries[idx[j]].defect_type
            if t not in nearest or d < nearest[t][0]:
                nearest[t] = (float(d), idx[j])
        votes = [Vote(t, weights.get(t, 0.0) / total, nearest[t][0]) for t in nearest]
        votes.sort(key=lambda v: (-v.weight, v.distance))
        winner = votes[0].defect_type
        return Classified(winner, votes, len(self.entries), self.entries[nearest[winner][1]])

    def meta(self) -> dict[str, Any]:
        return {
            "format": LIBRARY_FORMAT,
            "line_id": self.key.line_id,
            "dataset": self.key.dataset,
            "category": self.key.category,
            "backbone_id": self.backbone_id,
            "dim": self.dim,
            "generation": self.generation,
            "updated_at": self.updated_at,
            "entries": [e.to_dict() for e in self.entries],
        }


class DefectStore:
    """Libraries beside their banks: `<bank folder>/defects/library.json`, `g<generation>-<array>.npy`, `images/`."""

    ARRAYS = ("patches", "anomaly")

    def __init__(self, banks: BankStore) -> None:
        self.fs = banks.fs
        self.banks = banks

    def _dir(self, key: BankKey) -> str:
        return f"{self.banks.folder(key)}/defects"

    def read_meta(self, key: BankKey) -> dict[str, Any] | None:
        try:
            with self.fs.open(f"{self._dir(key)}/library.json", "rb") as f:
                return json.loads(f.read())
        except FileNotFoundError:
            return None

    def load(self, key: BankKey) -> Library | None:
        """The library as last committed, or None. Retries once if a writer replaced it while we read."""
        for attempt in range(2):
            meta = self.read_meta(key)
            if meta is None:
                return None
            try:
                arrays = {}
                for name in self.ARRAYS:
                    with self.fs.open(f"{self._dir(key)}/g{meta['generation']}-{name}.npy", "rb") as f:
                        arrays[name] = np.load(io.BytesIO(f.read()), allow_pickle=False)
            except FileNotFoundError:
                if attempt == 0:
                    continue
                raise
            return Library(
                key=key,
                backbone_id=meta["backbone_id"],
                dim=int(meta["dim"]),
                entries=[DefectEntry.from_dict(e) for e in meta["entries"]],
                patches=arrays["patches"],
                anomaly=arrays["anomaly"],
                generation=int(meta["generation"]),
                updated_at=float(meta.get("updated_at", 0.0)),
            )
        return None

    def save(self, lib: Library) -> None:
        """Commit as a new generation: arrays first, then library.json by rename, then the old arrays go."""
        folder = self._dir(lib.key)
        current = self.read_meta(lib.key)
        lib.generation = max(lib.generation, current["generation"] if current else 0) + 1
        lib.updated_at = time.time()
        self.fs.makedirs(folder, exist_ok=True)
        for name in self.ARRAYS:
            buf = io.BytesIO()
            np.save(buf, getattr(lib, name), allow_pickle=False)
            with self.fs.open(f"{folder}/g{lib.generation}-{name}.npy", "wb") as f:
                f.write(buf.getvalue())
        with self.fs.open(f"{folder}/library.json.tmp", "wb") as f:
            f.write(json.dumps(lib.meta()).encode())
        self.fs.mv(f"{folder}/library.json.tmp", f"{folder}/library.json")
        for path in self.fs.ls(folder, detail=False):
            name = path.rsplit("/", 1)[-1]
            if name.startswith("g") and name.endswith(".npy") and not name.startswith(f"g{lib.generation}-"):
                self.fs.rm(path)

    def put_image(self, key: BankKey, sha: str, data: bytes) -> None:
        folder = f"{self._dir(key)}/images"
        self.fs.makedirs(folder, exist_ok=True)
        with self.fs.open(f"{folder}/{sha}", "wb") as f:
            f.write(data)

    def get_image(self, key: BankKey, sha: str) -> bytes | None:
        try:
            with self.fs.open(f"{self._dir(key)}/images/{sha}", "rb") as f:
                return f.read()
        except FileNotFoundError:
            return None

    def drop_image(self, key: BankKey, sha: str) -> None:
        path = f"{self._dir(key)}/images/{sha}"
        if self.fs.exists(path):
            self.fs.rm(path)


@dataclass
class DefectAdded:
    added: bool  # False: this (image, type, box) was already there
    entry: DefectEntry
    library_size: int
    types: dict[str, int]


@dataclass
class DefectClassified:
    classified: Classified
    box: Box  # the box that was classified


class DefectLibraries:
    """The evidence stage's defect libraries: add, remove and classify in each product's bank features.

    Features come from the stage (`service`: the bank, its feature view and the top evidence box); a library is
    written under the stage's bank write lock, so a library and its bank never change at once.
    """

    def __init__(self, service: EvidenceService) -> None:
        self.service = service
        self.store = DefectStore(service.store)

    # --- features of a box ----------------------------------------------------------------------------
    def _bank(self, line_id: str, dataset: str, category: str) -> Bank:
        s = self.service
        return s._ready_bank(s._key(line_id, dataset, category))

    def _input_size(self, bank: Bank) -> int:
        if bank.feature_choice is not None:
            return int(bank.feature_choice["input_size"])
        return self.service.input_size

    def _box_features(
        self, bank: Bank, feats: np.ndarray, geom: Geometry, box: Box | None
    ) -> tuple[Box, np.ndarray, np.ndarray]:
        """The box (the evidence's top box when None), its patches and each patch's distance to the normal bank."""
        if box is None:
            found = self.service.score(bank, feats, geom, max_boxes=1).boxes
            box = found[0] if found else Box(0, 0, geom.width, geom.height, 0.0, "center", 1.0, False)
        else:
            check_box(box, geom.width, geom.height)
        patches = box_patches(feats, geom, box, self._input_size(bank))
        assert bank.index is not None
        return box, patches, bank.index.search(patches).astype(np.float32)

    def _library(self, bank: Bank, locked: bool = False) -> Library | None:
        """The product's library in the bank's current features (made again from the kept images when the bank
        changed its feature view since). `locked`: the caller holds the stage's write lock."""
        lib = self.store.load(bank.key)
        if lib is None or lib.backbone_id == bank.backbone_id:
            return lib
        if not locked:
            with self.service._write_lock:
                return self._library(bank, locked=True)
        # under the write lock: nobody else re-extracts or writes meanwhile
        fresh = Library(bank.key, bank.backbone_id, bank.dim, generation=lib.generation)
        for e in lib.entries:
            data = self.store.get_image(bank.key, e.sha256)
            if data is None:  # kept with every entry; a missing one cannot be re-extracted
                continue
            feats, geom = self.service._extract_for(bank, data)
            _, patches, anomaly = self._box_features(bank, feats, geom, e.box)
            fresh.add(DefectEntry(e.sha256, e.defect_type, e.box, e.inspection_id, e.added_at), patches, anomaly)
        self.store.save(fresh)
        return fresh

    # --- the RPCs' logic ------------------------------------------------------------------------------
    def add(
        self,
        line_id: str,
        dataset: str,
        category: str,
        image: bytes,
        defect_type: str,
        box: Box | None = None,
        inspection_id: str = "",
    ) -> DefectAdded:
        """Add a confirmed defect (idempotent by image content, type and box); the bank must exist."""
        kind = check_type(defect_type)
        check_name(inspection_id, "inspection_id", required=False)
        bank = self._bank(line_id, dataset, category)
        feats, geom = self.service._extract_for(bank, image)
        box, patches, anomaly = self._box_features(bank, feats, geom, box)
        sha = sha256_hex(image)
        with self.service._write_lock:
            lib = self._library(bank, locked=True) or Library(bank.key, bank.backbone_id, bank.dim)
            known = lib.find(sha, kind, box)
            if known is not None:
                return DefectAdded(False, known, len(lib.entries), lib.types())
            entry = DefectEntry(sha, kind, box, inspection_id, time.time())
            self.store.put_image(bank.key, sha, image)
            lib.add(entry, patches, anomaly)
            self.store.save(lib)
            self.service.refit_review(bank.key)  # the miss budget: the review threshold follows the defects
        return DefectAdded(True, entry, len(lib.entries), lib.types())

    def remove(self, line_id: str, dataset: str, category: str, sha: str) -> tuple[int, int]:
        """Take every entry of this image out; (removed, library size). A product without a library removes 0."""
        key = self.service._key(line_id, dataset, category)
        check_sha256(sha, field="sha256")
        with self.service._write_lock:
            lib = self.store.load(key)
            if lib is None:
                return 0, 0
            removed = lib.remove(sha)
            if removed:
                self.store.save(lib)
                self.store.drop_image(key, sha)
                self.service.refit_review(key)
        return removed, len(lib.entries)

    def library_of(self, bank: Bank) -> Library:
        """The product's library, or FAILED_PRECONDITION naming what to add (before any features are extracted)."""
        lib = self._library(bank)
        if lib is None or not lib.entries:
            raise FailedPrecondition(
                f"the defect library of {bank.key.describe()} is empty: confirm defects of this product with their "
                "types first (AddDefect, or the review queue's 'defect: <type>'); Defect Classification without an "
                "MLLM answers from them"
            )
        return lib

    def features(self, line_id: str, dataset: str, category: str, image: bytes) -> tuple[Bank, np.ndarray, Geometry]:
        """The product's ready bank and the image's patch grid in its features (a benchmark extracts once, then
        classifies against a growing library with classify_features)."""
        bank = self._bank(line_id, dataset, category)
        return (bank, *self.service._extract_for(bank, image))

    def classify_features(
        self,
        bank: Bank,
        lib: Library,
        feats: np.ndarray,
        geom: Geometry,
        box: Box | None,
        wanted: list[str],
        k: int,
    ) -> DefectClassified:
        s = self.service.settings
        box, patches, anomaly = self._box_features(bank, feats, geom, box)
        query = descriptor(patches, anomaly, s.defect_top_patches)
        return DefectClassified(lib.classify(query, wanted, k or s.defect_k, s.defect_top_patches), box)

    def candidate_types(self, candidates: Sequence[str], k: int) -> list[str]:
        """The candidates' canonical types; INVALID_ARGUMENT naming the field for a bad k or no type at all."""
        if k < 0 or k > 50:
            raise InvalidArgument(f"is {k}; it must be between 0 (the configured default) and 50", field="k")
        wanted = sorted({key for c in candidates if (key := type_key(c))})
        if candidates and not wanted:
            raise InvalidArgument("names no defect type (e.g. 'crack', 'Color defect.')", field="candidate_types")
        return wanted

    def classify_sync(
        self,
        line_id: str,
        dataset: str,
        category: str,
        image: bytes,
        box: Box | None = None,
        candidates: Sequence[str] = (),
        k: int = 0,
    ) -> DefectClassified:
        """The type of the image's box (its top evidence box when None) by kNN over the library (benchmarks)."""
        wanted = self.candidate_types(candidates, k)
        bank = self._bank(line_id, dataset, category)
        lib = self.library_of(bank)
        lib.require(wanted)
        feats, geom = self.service._extract_for(bank, image)
        return self.classify_features(bank, lib, feats, geom, box, wanted, k)

    async def classify(
        self,
        line_id: str,
        dataset: str,
        category: str,
        image: bytes,
        box: Box | None = None,
        candidates: Sequence[str] = (),
        k: int = 0,
    ) -> DefectClassified:
        """As classify_sync, with the query's features through the stage's shared batches."""
        wanted = self.candidate_types(candidates, k)
        s = self.service
        key = s._key(line_id, dataset, category)
        bank = s._fresh_bank(key) or await asyncio.to_thread(s._ready_bank, key)
        lib = await asyncio.to_thread(self.library_of, bank)
        lib.require(wanted)
        if bank.backbone_id == s.backbone_id:
            feats, geom = await s.extract(image)
        else:
            feats, geom = await asyncio.to_thread(s._extract_for, bank, image)
        return await asyncio.to_thread(self.classify_features, bank, lib, feats, geom, box, wanted, k)
