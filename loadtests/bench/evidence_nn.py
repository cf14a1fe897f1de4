"""Benchmark: the evidence bank's nearest-patch search, Faiss (flat, HNSW, IVF) against a Qdrant Edge collection.

An image is one query per patch (56x56 = 3,136 at the default 448 px input, stride 8) against one
product's bank, so what counts is the time to search a whole image's patches at once, up to banks of 1M
patches, and how far each engine's distance is from the exact one (the anomaly score is that distance).
Data: 152-d patches (EfficientNet-Lite0 levels 2+3) drawn as a mixture of clusters with uneven spreads,
queries from the same mixture plus a few far-off "defect" patches. Measured in one run, per bank size:

- build time (Faiss add; Qdrant Edge upsert + optimize);
- ms per image (one batch of an image's patch queries; Qdrant Edge through `query_batch`), two threads;
- recall@1 against exact search, and the mean relative error of the nearest distance.

IVF is the stage's own (services/evidence/bank.py `PatchIndex`): nlist ~4 sqrt(N), nprobe raised at build from
`evidence.ivf_nprobe` until `evidence.ivf_min_recall` holds on a sample of the bank (its build time includes
that check).

Prints one JSON line.

    python -m loadtests.bench.evidence_nn [--sizes 10000,100000,1000000] [--engines flat,hnsw,ivf,qdrant_edge]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from services.evidence.bank import PatchIndex
from services.evidence.config import EvidenceSettings

DIM = 152  # EvidenceSettings' default levels 2+3 of EfficientNet-Lite0: 40 + 112 channels
QUERIES = (EvidenceSettings().input_size // 8) ** 2  # one image's patches at the default input size
HNSW = {"m": 32, "ef_construction": 80, "ef_search": 64}
IVF = {"nprobe": EvidenceSettings().ivf_nprobe, "min_recall": EvidenceSettings().ivf_min_recall}


def patches(n: int, n_queries: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A clustered patch bank and one image's worth of queries (2% of them far from every cluster)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 4, (max(1, n // 500), DIM)).astype(np.float32)
    spread = rng.uniform(0.5, 2.0, len(centres)).astype(np.float32)
    data = np.empty((n, DIM), np.float32)
    for start in range(0, n, 100_000):
        stop = min(n, start + 100_000)
        c = rng.integers(0, len(centres), stop - start)
        data[start:stop] = centres[c] + rng.standard_normal((stop - start, DIM), np.float32) * spread[c, None]
    c = rng.integers(0, len(centres), n_queries)
    queries = centres[c] + rng.standard_normal((n_queries, DIM), np.float32) * spread[c, None]
    far = rng.random(n_queries) < 0.02
    queries[far] += rng.normal(0, 6, (int(far.sum()), DIM)).astype(np.float32)
    return data, queries


def timed(fn: Any, repeat: int = 3) -> tuple[Any, float]:
    """Best of `repeat` wall times in ms (a busy machine inflates single runs), and the last result."""
    best, out = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn()
        best = min(best, (time.perf_counter() - start) * 1000)
    return out, best


def quality(dist: np.ndarray, ids: np.ndarray, exact_d: np.ndarray, exact_i: np.ndarray) -> dict[str, float]:
    rel = np.abs(dist - exact_d) / np.maximum(exact_d, 1e-6)
    return {"recall@1": round(float(np.mean(ids == exact_i)), 4), "mean_rel_dist_error": round(float(rel.mean()), 5)}


def bench_size(n: int, engines: list[str], seed: int, tmp: Path) -> dict[str, Any]:
    import faiss

    data, queries = patches(n, QUERIES, seed)
    flat = faiss.IndexFlatL2(DIM)
    t0 = time.perf_counter()
    flat.add(data)
    flat_build = time.perf_counter() - t0
    (d, i), flat_ms = timed(lambda: flat.search(queries, 1), repeat=1 if n >= 500_000 else 3)
    exact_d, exact_i = np.sqrt(np.maximum(d[:, 0], 0)), i[:, 0]
    row: dict[str, Any] = {"patches": n}
    if "flat" in engines:
        row["faiss_flat"] = {"build_s": round(flat_build, 2), "ms_per_image": round(flat_ms, 1), "recall@1": 1.0}
    if "hnsw" in engines:
        index = faiss.IndexHNSWFlat(DIM, HNSW["m"])
        index.hnsw.efConstruction = HNSW["ef_construction"]
        t0 = time.perf_counter()
        index.add(data)
        build = time.perf_counter() - t0
        params = faiss.SearchParametersHNSW(efSearch=HNSW["ef_search"])
        (d, i), ms = timed(lambda: index.search(queries, 1, params=params))
        q = quality(np.sqrt(np.maximum(d[:, 0], 0)), i[:, 0], exact_d, exact_i)
        row["faiss_hnsw"] = {"build_s": round(build, 2), "ms_per_image": round(ms, 1), **q}
    if "ivf" in engines:  # the stage's own IVF (PatchIndex): nprobe raised at build until recall@1 >= 0.99
        t0 = time.perf_counter()
        ivf = PatchIndex(data, "ivf", ivf=(IVF["nprobe"], IVF["min_recall"]))
        build = time.perf_counter() - t0
        params = faiss.SearchParametersIVF(nprobe=ivf.nprobe)
        (d, i), ms = timed(lambda: ivf.index.search(queries, 1, params=params))
        q = quality(np.sqrt(np.maximum(d[:, 0], 0)), i[:, 0], exact_d, exact_i)
        row["faiss_ivf"] = {
            "nlist": int(ivf.index.nlist),
            "nprobe": ivf.nprobe,
            "build_recall_check": round(ivf.recall, 4),
            "build_s": round(build, 2),
            "ms_per_image": round(ms, 1),
            **q,
        }
    if "qdrant_edge" in engines:
        row["qdrant_edge"] = bench_edge(data, queries, exact_d, exact_i, tmp / f"edge-{n}")
    for name in ("faiss_hnsw", "faiss_ivf", "qdrant_edge"):
        if name in row and "faiss_flat" in row:
            row[name]["speedup_vs_flat"] = round(row["faiss_flat"]["ms_per_image"] / row[name]["ms_per_image"], 2)
    return row


def bench_edge(data: np.ndarray, queries: np.ndarray, exact_d: np.ndarray, exact_i: np.ndarray, folder: Path) -> Any:
    import qdrant_edge as qe

    config = qe.EdgeConfig(
        vectors=qe.EdgeVectorParams(size=DIM, distance=qe.Distance.Euclid),
        hnsw_config=qe.HnswIndexConfig(m=HNSW["m"], ef_construct=HNSW["ef_construction"], full_scan_threshold=10_000),
        optimizers=qe.EdgeOptimizersConfig(indexing_threshold=10_000),
    )
    folder.mkdir(parents=True, exist_ok=True)
    shard = qe.EdgeShard.create(str(folder), config)
    t0 = time.perf_counter()
    for start in range(0, len(data), 10_000):
        chunk = data[start : start + 10_000]
        pts = [qe.Point(uuid.UUID(int=start + j + 1), v.tolist(), {}) for j, v in enumerate(chunk)]
        shard.update(qe.UpdateOperation.upsert_points(pts))
    upsert = time.perf_counter() - t0
    t0 = time.perf_counter()
    shard.optimize()
    optimize = time.perf_counter() - t0
    reqs = [
        qe.QueryRequest(limit=1, query=qe.Query.Nearest(q.tolist()), params=qe.SearchParams(hnsw_ef=HNSW["ef_search"]))
        for q in queries
    ]
    batch = qe.QueryBatchRequest(queries=reqs)
    res, ms = timed(lambda: shard.query_batch(batch))
    ids = np.array([r[0].id.int - 1 if hasattr(r[0].id, "int") else int(r[0].id) - 1 for r in res])
    dist = np.array([r[0].score for r in res], np.float32)
    shard.close()
    q = quality(dist, ids, exact_d, exact_i)
    return {"upsert_s": round(upsert, 2), "optimize_s": round(optimize, 2), "ms_per_image": round(ms, 1), **q}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="10000,100000", help="Comma-separated bank sizes in patches (1000000: minutes).")
    ap.add_argument("--engines", default="flat,hnsw,ivf,qdrant_edge", help="Comma-separated engines to measure.")
    ap.add_argument("--threads", type=int, default=2, help="Faiss OpenMP threads.")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    import faiss

    faiss.omp_set_num_threads(args.threads)
    engines = [e for e in args.engines.split(",") if e]
    with tempfile.TemporaryDirectory() as tmp:
        rows = [bench_size(int(s), engines, args.seed, Path(tmp)) for s in args.sizes.split(",") if s]
    print(json.dumps({"bench": "evidence_nn", "dim": DIM, "queries_per_image": QUERIES, "hnsw": HNSW, "sizes": rows}))


if __name__ == "__main__":
    main()
