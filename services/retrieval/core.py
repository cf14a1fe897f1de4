"""The memory of normal images: ingest, search (1-shot*, 1-shot, k-shot), counts, category inference.

A memory is keyed by (line, dataset, category). Each point's id derives from
the image's sha256 and that key, so ingesting the same image twice adds
nothing. Pixels go to an image store; the vector store keeps the vector and a
payload naming the image. The memory embeds through an injected function
(in-process encoder or the embedding stage), or takes vectors directly (the
Upsert RPC, where the gateway embedded first).
"""

from __future__ import annotations

import math
import re
import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from services.common.errors import FailedPrecondition, InvalidArgument
from services.common.images import ImageStore, check_sha256, image_suffix, sha256_hex
from services.common.names import check_name
from services.common.values import ProductCount
from services.retrieval.config import RetrievalSettings
from services.retrieval.store import GuardedStore, Hit, MemoryFilter, MemoryPoint, VectorStore, memory_key

POINT_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://echo-iad/memory-point")  # fixed forever: ids persist

EmbedImages = Callable[[list[bytes]], np.ndarray]
REFERENCE_MODES = ("", "0-shot", "1-shot", "1-shot*", "k-shot")  # "": the default, 1-shot*
MAX_LIST = 10_000  # most points one listing page may hold


def point_id(sha256: str, line_id: str, dataset: str, category: str) -> str:
    """Deterministic point id: the same image in the same memory always gets the same id."""
    return str(uuid.uuid5(POINT_NAMESPACE, f"{sha256}/{memory_key(line_id, dataset, category)}"))


def category_prompt(category: str) -> str:
    """The CLIP text prompt for a category name, e.g. 'metal_nut' -> 'a photo of a metal nut.' (for InferCategory)."""
    return f"a photo of a {category.replace('_', ' ').replace('-', ' ')}."


@dataclass
class AddResult:
    ids: list[str]
    added: int
    existing: int


@dataclass
class MemoryStats:
    total: int
    counts: list[ProductCount]
    dim: int
    engine: str


@dataclass
class CategoryGuess:
    category: str
    dataset: str
    confidence: float
    scores: dict[str, float]


class Memory:
    """Normal-image memory over a VectorStore and an ImageStore.

    Args:
        store: the vector store (its dim is the embedding size).
        images: where pixels are kept; required only for add_images.
        settings: retrieval settings (defaults, limits, category-inference weights).
        embed_images: encoded images -> (n, dim) unit vectors; required only for add_images.
    """

    def __init__(
        self,
        store: VectorStore,
        settings: RetrievalSettings,
        images: ImageStore | None = None,
        embed_images: EmbedImages | None = None,
    ) -> None:
        self.store: VectorStore = store if isinstance(store, GuardedStore) else GuardedStore(store)  # type: ignore[assignment]
        self.settings = settings
        self.images = images
        self.embed_images = embed_images
        self.dim = store.dim
        self._write_lock = threading.Lock()  # one writer: id checks and upserts stay consistent
        self._closed = False

    # --- ingest --------------------------------------------------------------------------------------
    def add_images(
        self, line_id: str, dataset: str, category: str, images: Sequence[bytes], label: str = "good"
    ) -> AddResult:
        """Store, embed and index normal images; those already in this memory are skipped (by content hash)."""
        if self.images is None or self.embed_images is None:
            raise FailedPrecondition("this memory has no image store or embedding function to ingest images with")
        line_id = check_name(line_id or self.settings.default_line, "line_id")
        check_name(dataset, "dataset")
        check_name(category, "category")
        shas = [sha256_hex(d) for d in images]
        ids = [point_id(s, line_id, dataset, category) for s in shas]
        have = {p.id for p in self.store.retrieve(list(dict.fromkeys(ids)))}
        new: dict[str, int] = {}
        for i, pid in enumerate(ids):
            if pid not in have and pid not in new:
                new[pid] = i
        if new:
            datas = [images[i] for i in new.values()]
            vectors = self._check_vectors(np.asarray(self.embed_images(datas), dtype=np.float32), len(datas))
            points = [
                MemoryPoint(
                    id=pid,
                    vector=vectors[j],
                    uri=self.images.put(images[i], image_suffix(images[i])),
                    sha256=shas[i],
                    label=label,
                    line_id=line_id,
                    dataset=dataset,
                    category=category,
                )
                for j, (pid, i) in enumerate(new.items())
            ]
            self._write(points)
        return AddResult(ids, added=len(new), existing=len(ids) - len(new))

    def upsert(self, points: Sequence[MemoryPoint]) -> AddResult:
        """Index points whose vectors were computed elsewhere (the Upsert RPC). Ids left empty derive from sha256."""
        if not points:
            raise InvalidArgument("is empty", field="points")
        ready: list[MemoryPoint] = []
        for i, p in enumerate(points):
            f = f"points[{i}]"
            line_id = check_name(p.line_id or self.settings.default_line, f"{f}.line_id")
            check_name(p.dataset, f"{f}.dataset")
            check_name(p.category, f"{f}.category")
            if not p.uri:
                raise InvalidArgument("is empty: a reference needs the image's URI", field=f"{f}.uri")
            if not re.fullmatch(r"[0-9a-f]{64}", p.sha256 or ""):
                raise InvalidArgument(f"{p.sha256!r} is not a hex sha256 of the image bytes", field=f"{f}.sha256")
            pid = p.id or point_id(p.sha256, line_id, p.dataset, p.category)
            try:
                pid = str(uuid.UUID(pid))
            except ValueError:
                raise InvalidArgument(
                    f"{p.id!r} is not a UUID (leave it empty to derive one)", field=f"{f}.id"
                ) from None
            vec = self.check_vector(p.vector, f"{f}.vector")
            ready.append(MemoryPoint(pid, vec, p.uri, p.sha256, p.label or "good", line_id, p.dataset, p.category))
        ids = [p.id for p in ready]
        with self._write_lock:
            have = {p.id for p in self.store.retrieve(list(dict.fromkeys(ids)))}
            fresh = list({p.id: p for p in ready if p.id not in have}.values())
            if fresh:
                self.store.upsert(fresh)
                self.store.optimize()
        return AddResult(ids, added=len(fresh), existing=len(ids) - len(fresh))

    def _write(self, points: list[MemoryPoint]) -> None:
        with self._write_lock:
            self.store.upsert(points)
            self.store.optimize()  # Qdrant Edge scans new points by brute force until optimized

    def _check_vectors(self, vectors: np.ndarray, n: int) -> np.ndarray:
        if vectors.shape != (n, self.dim):
            raise FailedPrecondition(
                f"the embedding function gave shape {vectors.shape}, expected ({n}, {self.dim}) for this collection"
            )
        return vectors

    def check_vector(self, vector: Sequence[float] | np.ndarray | None, field: str = "vector") -> np.ndarray:
        """A query or stored vector: the memory's size, finite, not zero; returned unit-length float32."""
        v = np.asarray(vector if vector is not None else [], dtype=np.float32).ravel()
        if v.size == 0:
            raise InvalidArgument("is empty: send the image's embedding", field=field)
        if v.size != self.dim:
            raise InvalidArgument(f"has {v.size} values, but this memory holds {self.dim}-d vectors", field=field)
        with np.errstate(over="ignore", under="ignore"):  # one pass; the slow checks only when it is not plain
            square = float(np.dot(v, v))
        if 0.0 < square < math.inf:
            return v / np.float32(math.sqrt(square))
        if not np.all(np.isfinite(v)):
            raise InvalidArgument("holds NaN or infinite values", field=field)
        norm = float(np.linalg.norm(v.astype(np.float64)))  # float32 squares overflowed or underflowed
        if norm == 0.0:
            raise InvalidArgument("is all zeros", field=field)
        return (v / norm).astype(np.float32)

    # --- search --------------------------------------------------------------------------------------
    def _filter(self, line_id: str, dataset: str, category: str, exclude_sha256: str = "") -> MemoryFilter:
        line_id = check_name(line_id or self.settings.default_line, "line_id")
        check_name(dataset, "dataset", required=False)
        check_name(category, "category", required=False)
        return MemoryFilter(line_id, dataset, category, exclude_sha256)

    def _k(self, k: int) -> int:
        k = k or self.settings.default_k
        if k < 0 or k > self.settings.max_k:
            raise InvalidArgument(f"is {k}; it must be between 1 and {self.settings.max_k}", field="k")
        return k

    def _empty(self, flt: MemoryFilter) -> FailedPrecondition:
        where = flt.describe()
        if flt.exclude_sha256 and self.store.count(MemoryFilter(flt.line_id, flt.dataset, flt.category)):
            return FailedPrecondition(f"memory for {where} holds only the query image itself")
        return FailedPrecondition(
            f"memory for {where} is empty: add normal images first (`echo-iad memory build` or `echo-iad product add`)"
        )

    def search(
        self,
        vector: Sequence[float] | np.ndarray,
        line_id: str = "",
        dataset: str = "",
        category: str = "",
        k: int = 0,
        exclude_sha256: str = "",
        ef: int | None = None,
    ) -> list[Hit]:
        """The k most similar normal images of this line (and dataset, category): 1-shot* and k-shot."""
        v = self.check_vector(vector)
        flt = self._filter(line_id, dataset, category, exclude_sha256)
        hits = self.store.search(v, flt, self._k(k), ef)
        if not hits:
            raise self._empty(flt)
        return hits

    def references(
        self, mode: str, vector: Sequence[float] | np.ndarray, *, k: int = 0, seed: int = 0, **where: str
    ) -> list[Hit]:
        """The normal images a reference mode asks for: none (0-shot), k drawn at random (1-shot), or the k
        nearest (1-shot* and k-shot; also the default, ""). `where`: line_id, dataset, category, exclude_sha256."""
        if mode not in REFERENCE_MODES:
            raise InvalidArgument(f"{mode!r} is not one of {', '.join(m for m in REFERENCE_MODES if m)}", field="mode")
        if k < 0:
            raise InvalidArgument(f"is {k}; it must be 0 (default) or more", field="k")
        if mode == "0-shot":
            return []
        if mode == "1-shot":
            return self.random(k=k, seed=seed, **where)
        return self.search(vector, k=k, **where)

    def random(
        self,
        line_id: str = "",
        dataset: str = "",
        category: str = "",
        k: int = 0,
        seed: int = 0,
        exclude_sha256: str = "",
    ) -> list[Hit]:
        """k normal images drawn at random, reproducibly for a seed (1-shot). Scores are 0: nothing was compared."""
        flt = self._filter(line_id, dataset, category, exclude_sha256)
        k = self._k(k)
        ids: list[str] = []
        offset: str | None = None
        while True:  # ids only; a memory per category holds hundreds, not millions
            page, offset = self.store.scroll(flt, limit=10_000, offset=offset)
            ids.extend(p.id for p in page)
            if offset is None:
                break
        if not ids:
            raise self._empty(flt)
        ids.sort()
        rng = np.random.default_rng(seed)
        chosen = [ids[i] for i in rng.choice(len(ids), size=min(k, len(ids)), replace=False)]
        by_id = {p.id: p for p in self.store.retrieve(chosen)}
        return [Hit(by_id[i], 0.0) for i in chosen if i in by_id]

    # --- maintenance ---------------------------------------------------------------------------------
    def delete(self, line_id: str, dataset: str = "", category: str = "", ids: Sequence[str] = ()) -> int:
        """Delete the given ids (within this line), or all of (line, dataset, category). Returns how many went.

        The line is required: an empty one would mean the default line, never what a deletion meant.
        """
        if not line_id:
            raise InvalidArgument("is empty: name the line whose memory to delete from", field="line_id")
        flt = self._filter(line_id, dataset, category)
        if ids:
            try:
                flt.ids = [str(uuid.UUID(i)) for i in ids]
            except ValueError:
                raise InvalidArgument("must all be UUIDs", field="ids") from None
        with self._write_lock:
            n = self.store.delete(flt)
            if n:
                self.store.optimize()
        return n

    def stats(self, line_id: str = "", dataset: str = "", category: str = "", sha256: str = "") -> MemoryStats:
        """Counts per (line, dataset, category), optionally filtered (empty filters count everything)."""
        for value, field in ((line_id, "line_id"), (dataset, "dataset"), (category, "category")):
            check_name(value, field, required=False)
        if sha256:
            check_sha256(sha256)
        flt = MemoryFilter(line_id, dataset, category, sha256=sha256)
        counts = []
        for key, n in sorted(self.store.facet("memory", flt).items()):
            line, ds, cat = key.split("/", 2)
            counts.append(ProductCount(line, ds, cat, n))
        return MemoryStats(sum(c.count for c in counts), counts, self.dim, self.store.engine)

    def list_points(
        self,
        line_id: str = "",
        dataset: str = "",
        category: str = "",
        limit: int = 100,
        page_token: str = "",
        sha256: str = "",
    ) -> tuple[list[MemoryPoint], str]:
        """A page of points (without vectors) and the token of the next page ('' at the end)."""
        if not 1 <= limit <= MAX_LIST:
            raise InvalidArgument(f"is {limit}; it must be between 0 and {MAX_LIST}", field="list_limit")
        if page_token:
            try:
                uuid.UUID(page_token)
            except ValueError:
                raise InvalidArgument(
                    f"{page_token!r} is not a page token from a previous call", field="page_token"
                ) from None
        flt = MemoryFilter(line_id, dataset, category, sha256=check_sha256(sha256) if sha256 else "")
        points, nxt = self.store.scroll(flt, limit=limit, offset=page_token or None)
        return points, nxt or ""

    # --- category inference --------------------------------------------------------------------------
    def infer_category(
        self,
        vector: Sequence[float] | np.ndarray,
        line_id: str = "",
        dataset: str = "",
        text_vectors: dict[str, Sequence[float] | np.ndarray] | None = None,
        k: int = 0,
    ) -> CategoryGuess:
        """Which category is this image? A similarity-weighted vote of the memory's k nearest normal images,
        blended with CLIP text-prompt similarity when category text embeddings are given.

        Returns the category, its dataset (the one most of its voters came from), a confidence in [0, 1]
        (its share of the blended score) and every candidate's score.
        """
        v = self.check_vector(vector)
        flt = self._filter(line_id, dataset, "")
        k = k or self.settings.vote_k
        if k < 1 or k > 1000:
            raise InvalidArgument(f"is {k}; it must be between 1 and 1000", field="k")
        hits = self.store.search(v, flt, k)
        votes: dict[str, float] = {}
        datasets: dict[str, dict[str, float]] = {}
        if hits:
            sims = np.array([h.score for h in hits], dtype=np.float64)
            weights = np.exp((sims - sims.max()) / self.settings.vote_temperature)
            weights /= weights.sum()
            for h, w in zip(hits, weights, strict=True):
                votes[h.point.category] = votes.get(h.point.category, 0.0) + float(w)
                per = datasets.setdefault(h.point.category, {})
                per[h.point.dataset] = per.get(h.point.dataset, 0.0) + float(w)
        text: dict[str, float] = {}
        if text_vectors:
            names = list(text_vectors)
            for name in names:
                check_name(name, f"category_text_vectors[{name!r}]")
            mat = np.stack([self.check_vector(text_vectors[n], f"category_text_vectors[{n!r}]") for n in names])
            logits = self.settings.text_logit_scale * (mat @ v).astype(np.float64)
            probs = np.exp(logits - logits.max())
            probs /= probs.sum()
            text = dict(zip(names, probs.tolist(), strict=True))
        if not votes and not text:
            raise self._empty(flt)
        w_text = self.settings.text_weight if (text and votes) else (1.0 if text else 0.0)
        scores = {c: min(1.0, (1 - w_text) * votes.get(c, 0.0) + w_text * text.get(c, 0.0)) for c in {*votes, *text}}
        best = max(sorted(scores), key=lambda c: scores[c])
        per = datasets.get(best, {})
        best_ds = max(sorted(per), key=lambda d: per[d]) if per else dataset
        return CategoryGuess(best, best_ds, float(scores[best]), scores)

    def close(self) -> None:
        """Flush and release the store; safe to call twice."""
        if not self._closed:
            self._closed = True
            self.store.close()
