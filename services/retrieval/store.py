"""The vector store behind the memory: one small interface, two real Qdrant engines.

- `EdgeStore`: Qdrant Edge (qdrant-edge-py), in-process, persisted to a folder.
  It searches new points by brute force until `optimize()` builds the HNSW
  index, so the memory optimizes after every update.
- `QdrantServerStore`: a Qdrant server through qdrant-client (gRPC preferred).
  A URL of ':memory:' or a folder path uses qdrant-client's local mode, which
  has the same API (and is brute force); our tests run the server engine there,
  since no Qdrant server binary can run on our machines.

Both index the payload keys we filter on (line, dataset, category, sha256) and
`memory`, the "line/dataset/category" key. The product's search is a top-1 within
one memory, so `memory` is a tenant index (Qdrant keeps each memory's points
together) and a search naming a whole memory filters on that one key. A memory
smaller than `full_scan_threshold_kb` is then scanned exactly through the index,
which measured faster than HNSW links per memory (`loadtests/bench/retrieval.py`).
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from services.common.errors import ConfigError, EchoError, InvalidArgument, Unavailable
from services.retrieval.config import RetrievalSettings

log = logging.getLogger(__name__)

FILTER_KEYS = ("line_id", "dataset", "category", "sha256")  # indexed for filters and counts, no extra HNSW links
TENANT_KEY = "memory"  # "line/dataset/category": indexed as the tenant, with HNSW links for memories past the threshold
FACET_LIMIT = 100_000


@dataclass
class MemoryPoint:
    """One normal image in memory. `vector` is None when listed without vectors."""

    id: str
    vector: np.ndarray | None
    uri: str
    sha256: str
    label: str
    line_id: str
    dataset: str
    category: str

    def payload(self) -> dict[str, str]:
        return {
            "uri": self.uri,
            "sha256": self.sha256,
            "label": self.label,
            "line_id": self.line_id,
            "dataset": self.dataset,
            "category": self.category,
            "memory": memory_key(self.line_id, self.dataset, self.category),
        }

    @classmethod
    def from_payload(cls, pid: Any, payload: dict[str, Any] | None, vector: Any = None) -> MemoryPoint:
        p = payload or {}
        get = p.get
        return cls(
            str(pid),
            None if vector is None else np.asarray(vector, dtype=np.float32),
            get("uri", ""),
            get("sha256", ""),
            get("label", ""),
            get("line_id", ""),
            get("dataset", ""),
            get("category", ""),
        )


@dataclass
class Hit:
    """A search result: the point (without vector) and its cosine similarity to the query."""

    point: MemoryPoint
    score: float


@dataclass
class MemoryFilter:
    """Which memory to look in. Empty fields do not filter; `exclude_sha256` drops one image (the query itself)."""

    line_id: str = ""
    dataset: str = ""
    category: str = ""
    exclude_sha256: str = ""
    ids: list[str] = field(default_factory=list)
    sha256: str = ""  # only the points of this image

    def conditions(self) -> list[tuple[str, str]]:
        pairs = (("line_id", self.line_id), ("dataset", self.dataset), ("category", self.category))
        return [(k, v) for k, v in (*pairs, ("sha256", self.sha256)) if v]

    def describe(self) -> str:
        parts = [f"{k.removesuffix('_id')} {v!r}" for k, v in self.conditions()]
        return ", ".join(parts) or "the whole memory"

    def memory(self) -> str:
        """The memory key when the filter names one whole memory (line, dataset and category), else ''."""
        return (
            memory_key(self.line_id, self.dataset, self.category)
            if self.line_id and self.dataset and self.category
            else ""
        )

    def must(self) -> list[tuple[str, str]]:
        """Key-value conditions to match: the one tenant key for a whole memory (one index lookup), else each name."""
        key = self.memory()
        return [(TENANT_KEY, key)] if key else self.conditions()

    def excludes_after(self) -> bool:
        """Whether a search drops `exclude_sha256` from its hits rather than in the engine: a must_not condition is
        checked on every candidate and doubled the cost of a top-1 in one memory (`loadtests/bench/retrieval.py`)."""
        return bool(self.exclude_sha256 and self.memory())


def memory_key(line_id: str, dataset: str, category: str) -> str:
    return f"{line_id}/{dataset}/{category}"


class VectorStore(Protocol):
    """What the memory needs from an engine. Vectors are unit-length float32; scores are cosine similarities."""

    engine: str
    name: str
    dim: int

    def upsert(self, points: Sequence[MemoryPoint]) -> None: ...
    def retrieve(self, ids: Sequence[str]) -> list[MemoryPoint]: ...
    def search(self, vector: np.ndarray, flt: MemoryFilter, k: int, ef: int | None = None) -> list[Hit]: ...
    def count(self, flt: MemoryFilter) -> int: ...
    def facet(self, key: str, flt: MemoryFilter) -> dict[str, int]: ...
    def scroll(
        self, flt: MemoryFilter, limit: int, offset: str | None = None, with_vectors: bool = False
    ) -> tuple[list[MemoryPoint], str | None]: ...
    def delete(self, flt: MemoryFilter) -> int: ...
    def optimize(self) -> None: ...
    def close(self) -> None: ...


Scored = tuple[Any, dict[str, Any] | None, float]  # an engine's hit: point id, payload, score


def search_excluding(query: Callable[[int, bool], list[Scored]], flt: MemoryFilter, k: int) -> list[Hit]:
    """The top k hits of `query(limit, exclude_in_engine)` without `flt.exclude_sha256`, as Hits.

    Within one memory the excluded image is one point (its id derives from its hash), so one more hit is fetched
    and dropped here; only ids given by hand can repeat an image, and then the engine filters after all."""
    if flt.excludes_after():
        scored = query(k + 1, False)
        kept = [s for s in scored if (s[1] or {}).get("sha256") != flt.exclude_sha256]
        if len(kept) < k and len(scored) == k + 1:
            kept = query(k, True)
    else:
        kept = query(k, True)
    return [Hit(MemoryPoint.from_payload(pid, payload), float(score)) for pid, payload, score in kept[:k]]


def deletion_filter(native: Any) -> Any:
    """The engine filter a delete goes through; refused when empty, since that would delete the whole memory."""
    if native is None:
        raise InvalidArgument("refusing to delete the whole memory without a filter", field="line_id")
    return native


def scroll_page(records: Iterable[Any], nxt: Any, with_vectors: bool) -> tuple[list[MemoryPoint], str | None]:
    """An engine's scroll page (records with id, payload, vector) as points and the offset of the next page."""
    points = [MemoryPoint.from_payload(r.id, r.payload, r.vector if with_vectors else None) for r in records]
    return points, (str(nxt) if nxt is not None else None)


class GuardedStore:
    """A VectorStore whose engine failures are UNAVAILABLE naming the engine.

    A store that cannot answer (a Qdrant server down, a shard gone) is an outage
    the caller can retry, not a bug in the request: without this it would surface
    as INTERNAL. Our own errors (bad filters) pass through unchanged.
    """

    def __init__(self, store: VectorStore) -> None:
        self.inner = store

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            try:
                return attr(*args, **kwargs)
            except EchoError:
                raise
            except Exception as e:
                raise Unavailable(f"retrieval store ({self.inner.engine}) failed: {type(e).__name__}: {e}") from e

        return call


def check_dim(name: str, stored: int, model_dim: int) -> None:
    """The service must not start when the collection and the embedding model disagree on the vector size."""
    if stored and model_dim and stored != model_dim:
        raise ConfigError(
            f"collection {name!r} has dim {stored} but the embedding model gives {model_dim}: it was built with "
            "another image encoder (embedding.image_encoder); re-onboard the line's normal images into a new "
            "retrieval.collection (echo-iad memory build), or configure the encoder it was built with"
        )


# --- Qdrant Edge ------------------------------------------------------------------------------------------


class EdgeStore:
    """Qdrant Edge shard in `<path>/<collection>`, in-process."""

    engine = "qdrant-edge"

    def __init__(self, folder: str | Path, name: str, dim: int, settings: RetrievalSettings) -> None:
        import qdrant_edge as qe

        self.qe = qe
        self.folder = Path(folder)
        self.name = name
        self.ef = settings.hnsw.ef
        stored = self.stored_dim(self.folder)
        check_dim(name, stored, dim)
        runtime = {  # settings that may change between starts (None keeps the shard's own)
            "payload_memory": qe.Memory.Cached if settings.edge_payload_in_ram else qe.Memory.Cold,
            "max_search_threads": settings.edge_search_threads or None,
        }
        if stored:
            vectors = qe.EdgeVectorParams(size=stored, distance=qe.Distance.Cosine)
            try:
                self.shard = qe.EdgeShard.load(str(self.folder), qe.EdgeConfig(vectors=vectors, **runtime))
            except Exception as e:
                if "WouldBlock" in str(e):  # the WAL lock: one process owns a shard
                    raise ConfigError(
                        f"memory {str(self.folder)!r} is open in another process (a running echo-iad server?); "
                        "stop it first, or send images to that server instead"
                    ) from e
                raise
            self.dim = stored
        else:
            if not dim:
                raise ConfigError(f"collection {name!r} does not exist yet and no vector size was given")
            h = settings.hnsw
            config = qe.EdgeConfig(
                vectors=qe.EdgeVectorParams(size=dim, distance=qe.Distance.Cosine),
                hnsw_config=qe.HnswIndexConfig(
                    m=h.m, ef_construct=h.ef_construct, full_scan_threshold=h.full_scan_threshold_kb
                ),
                optimizers=qe.EdgeOptimizersConfig(indexing_threshold=h.indexing_threshold_kb),
                **runtime,
            )
            self.folder.mkdir(parents=True, exist_ok=True)
            self.shard = qe.EdgeShard.create(str(self.folder), config)
            self.dim = dim
        have = self.shard.info().payload_schema
        for key in FILTER_KEYS:
            if key not in have:
                self.shard.update(qe.UpdateOperation.create_field_index(key, qe.KeywordIndexParams(enable_hnsw=False)))
        tenant = have.get(TENANT_KEY)
        if tenant is None or not getattr(tenant.params, "is_tenant", False):  # memories made before it was a tenant
            self.shard.update(qe.UpdateOperation.create_field_index(TENANT_KEY, qe.KeywordIndexParams(is_tenant=True)))

    @staticmethod
    def stored_dim(folder: str | Path) -> int:
        """Vector size of the shard persisted in `folder`, or 0 if there is none."""
        cfg = Path(folder) / "edge_config.json"
        if not cfg.is_file():
            return 0
        try:
            return int(json.loads(cfg.read_text())["vectors"][""]["size"])
        except (ValueError, KeyError, TypeError) as e:
            raise ConfigError(f"{cfg} is not a readable Qdrant Edge config: {e}") from e

    def _filter(self, flt: MemoryFilter, exclude: bool = True) -> Any:
        qe = self.qe
        must: list[Any] = [qe.FieldCondition(k, match=qe.MatchValue(v)) for k, v in flt.must()]
        if flt.ids:
            must.append(qe.HasIdCondition({uuid.UUID(i) for i in flt.ids}))
        must_not = (
            [qe.FieldCondition("sha256", match=qe.MatchValue(flt.exclude_sha256))]
            if exclude and flt.exclude_sha256
            else None
        )
        return qe.Filter(must=must or None, must_not=must_not) if (must or must_not) else None

    def upsert(self, points: Sequence[MemoryPoint]) -> None:
        qe = self.qe
        if points:
            pts = [qe.Point(uuid.UUID(p.id), np.asarray(p.vector).tolist(), p.payload()) for p in points]
            self.shard.update(qe.UpdateOperation.upsert_points(pts))

    def retrieve(self, ids: Sequence[str]) -> list[MemoryPoint]:
        if not ids:
            return []
        recs = self.shard.retrieve([uuid.UUID(i) for i in ids], with_payload=True, with_vector=False)
        return [MemoryPoint.from_payload(r.id, r.payload) for r in recs]

    def search(self, vector: np.ndarray, flt: MemoryFilter, k: int, ef: int | None = None) -> list[Hit]:
        qe = self.qe
        nearest = qe.Query.Nearest(np.asarray(vector, dtype=np.float32).tolist())
        params = qe.SearchParams(hnsw_ef=ef or self.ef)

        def query(limit: int, exclude: bool) -> list[Scored]:
            flt_ = self._filter(flt, exclude)
            req = qe.QueryRequest(limit=limit, query=nearest, filter=flt_, params=params, with_payload=True)
            return [(p.id, p.payload, p.score) for p in self.shard.query(req)]

        return search_excluding(query, flt, k)

    def count(self, flt: MemoryFilter) -> int:
        return int(self.shard.count(self.qe.CountRequest(exact=True, filter=self._filter(flt))))

    def facet(self, key: str, flt: MemoryFilter) -> dict[str, int]:
        resp = self.shard.facet(self.qe.FacetRequest(key=key, limit=FACET_LIMIT, exact=True, filter=self._filter(flt)))
        return {str(h.value): int(h.count) for h in resp if h.count}  # deleted values linger with count 0

    def scroll(
        self, flt: MemoryFilter, limit: int, offset: str | None = None, with_vectors: bool = False
    ) -> tuple[list[MemoryPoint], str | None]:
        req = self.qe.ScrollRequest(
            offset=uuid.UUID(offset) if offset else None,
            limit=limit,
            filter=self._filter(flt),
            with_payload=True,
            with_vector=with_vectors,
        )
        recs, nxt = self.shard.scroll(req)
        return scroll_page(recs, nxt, with_vectors)

    def delete(self, flt: MemoryFilter) -> int:
        n = self.count(flt)
        if n:
            self.shard.update(self.qe.UpdateOperation.delete_points_by_filter(deletion_filter(self._filter(flt))))
        return n

    def optimize(self) -> None:
        self.shard.optimize()

    def close(self) -> None:
        self.shard.flush()
        self.shard.close()


# --- Qdrant server (or qdrant-client's local mode) ------------------------------------------------------


def is_local_url(url: str) -> bool:
    return url == ":memory:" or "://" not in url


class QdrantServerStore:
    """A collection on a Qdrant server via qdrant-client; ':memory:' or a path runs qdrant-client's local mode."""

    def __init__(self, settings: RetrievalSettings, dim: int, client: Any = None) -> None:
        from qdrant_client import QdrantClient, models

        self.m = models
        self.name = settings.collection
        self.ef = settings.hnsw.ef
        url = settings.url
        if not url:
            raise ConfigError("retrieval.url is empty: set a Qdrant server URL, ':memory:' or a folder for local mode")
        if client is not None:
            self.client = client
        elif is_local_url(url):
            self.client = QdrantClient(location=":memory:") if url == ":memory:" else QdrantClient(path=url)
        else:
            self.client = QdrantClient(
                url=url,
                prefer_grpc=settings.prefer_grpc,
                api_key=settings.api_key or None,
                timeout=int(settings.timeout_s),
            )
        self.engine = "qdrant-local" if is_local_url(url) else "qdrant-server"
        stored = self.stored_dim()
        check_dim(self.name, stored, dim)
        if stored:
            self.dim = stored
        else:
            if not dim:
                raise ConfigError(f"collection {self.name!r} does not exist yet and no vector size was given")
            h = settings.hnsw
            self.client.create_collection(
                self.name,
                vectors_config=models.VectorParams(size=dim, distance=models.Distance.COSINE),
                hnsw_config=models.HnswConfigDiff(
                    m=h.m, ef_construct=h.ef_construct, full_scan_threshold=h.full_scan_threshold_kb
                ),
                optimizers_config=models.OptimizersConfigDiff(indexing_threshold=h.indexing_threshold_kb),
            )
            self.dim = dim
        if self.engine == "qdrant-server":  # local mode has no payload indexes (it scans)
            self._index_payload()

    def _index_payload(self) -> None:
        """Index the filter keys and the memory key as the tenant, where the collection lacks them (also on
        collections made before the memory key was a tenant; the server indexes in the background)."""
        m = self.m
        have = self.client.get_collection(self.name).payload_schema or {}
        for key in FILTER_KEYS:
            if key not in have:
                schema = m.KeywordIndexParams(type=m.KeywordIndexType.KEYWORD, enable_hnsw=False)
                self.client.create_payload_index(self.name, key, schema)
        tenant = have.get(TENANT_KEY)
        if tenant is None or not getattr(tenant.params, "is_tenant", False):
            schema = m.KeywordIndexParams(type=m.KeywordIndexType.KEYWORD, is_tenant=True)
            self.client.create_payload_index(self.name, TENANT_KEY, schema)

    def stored_dim(self) -> int:
        if not self.client.collection_exists(self.name):
            return 0
        vectors = self.client.get_collection(self.name).config.params.vectors
        if isinstance(vectors, dict):
            vectors = vectors.get("")
        return int(getattr(vectors, "size", 0) or 0)

    def _filter(self, flt: MemoryFilter, exclude: bool = True) -> Any:
        m = self.m
        must: list[Any] = [m.FieldCondition(key=k, match=m.MatchValue(value=v)) for k, v in flt.must()]
        if flt.ids:
            must.append(m.HasIdCondition(has_id=list(flt.ids)))
        must_not: list[Any] = []
        if exclude and flt.exclude_sha256:
            must_not.append(m.FieldCondition(key="sha256", match=m.MatchValue(value=flt.exclude_sha256)))
        return m.Filter(must=must or None, must_not=must_not or None) if (must or must_not) else None

    def upsert(self, points: Sequence[MemoryPoint]) -> None:
        if points:
            pts = [
                self.m.PointStruct(id=p.id, vector=np.asarray(p.vector).tolist(), payload=p.payload()) for p in points
            ]
            self.client.upsert(self.name, points=pts, wait=True)

    def retrieve(self, ids: Sequence[str]) -> list[MemoryPoint]:
        if not ids:
            return []
        recs = self.client.retrieve(self.name, ids=list(ids), with_payload=True, with_vectors=False)
        return [MemoryPoint.from_payload(r.id, r.payload) for r in recs]

    def search(self, vector: np.ndarray, flt: MemoryFilter, k: int, ef: int | None = None) -> list[Hit]:
        values = np.asarray(vector, dtype=np.float32).tolist()
        params = None if self.engine == "qdrant-local" else self.m.SearchParams(hnsw_ef=ef or self.ef)

        def query(limit: int, exclude: bool) -> list[Scored]:
            res = self.client.query_points(
                self.name,
                query=values,
                query_filter=self._filter(flt, exclude),
                limit=limit,
                search_params=params,
                with_payload=True,
            )
            return [(p.id, p.payload, p.score) for p in res.points]

        return search_excluding(query, flt, k)

    def count(self, flt: MemoryFilter) -> int:
        return int(self.client.count(self.name, count_filter=self._filter(flt), exact=True).count)

    def facet(self, key: str, flt: MemoryFilter) -> dict[str, int]:
        resp = self.client.facet(self.name, key=key, facet_filter=self._filter(flt), limit=FACET_LIMIT, exact=True)
        return {str(h.value): int(h.count) for h in resp.hits if h.count}

    def scroll(
        self, flt: MemoryFilter, limit: int, offset: str | None = None, with_vectors: bool = False
    ) -> tuple[list[MemoryPoint], str | None]:
        recs, nxt = self.client.scroll(
            self.name,
            scroll_filter=self._filter(flt),
            limit=limit,
            offset=offset or None,
            with_payload=True,
            with_vectors=with_vectors,
        )
        return scroll_page(recs, nxt, with_vectors)

    def delete(self, flt: MemoryFilter) -> int:
        n = self.count(flt)
        if n:
            selector = self.m.FilterSelector(filter=deletion_filter(self._filter(flt)))
            self.client.delete(self.name, points_selector=selector, wait=True)
        return n

    def optimize(self) -> None:
        """The server optimizes in the background; nothing to do here."""

    def close(self) -> None:
        self.client.close()


def open_store(settings: RetrievalSettings, dim: int) -> VectorStore:
    """Open (or create) the configured collection.

    Args:
        dim: the embedding model's vector size; ConfigError if an existing collection holds another size.
            0 trusts an existing collection (and cannot create one).
    """
    if settings.engine == "edge":
        return EdgeStore(Path(settings.path) / settings.collection, settings.collection, dim, settings)
    return QdrantServerStore(settings, dim)
