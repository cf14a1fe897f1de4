"""Benchmark: the memory's vector search (our EdgeStore on Qdrant Edge) against raw qdrant-edge calls and Faiss HNSW.

Data: clustered 512-d unit vectors (a deliberately hard set: clusters of ~1000 as wide as the distance between
their centres, so every query has many near neighbours), queries drawn from the same clusters. Every engine uses
the same HNSW m, ef_construct and ef. Measured in one run:

- build time (upsert + optimize for Qdrant Edge; add for Faiss);
- recall@1 and recall@10 against exact numpy search, on a query subset;
- p50/p99 single-query latency, one query at a time: raw `EdgeShard.query`, our `EdgeStore.search` (the same
  index, so the wrapper's overhead is the difference), our `Memory.search` with a line + category filter (the
  path a request takes), and Faiss `IndexHNSWFlat.search` (one thread).

Goals: Qdrant Edge ≤ 1.5x Faiss latency at equal recall; our wrapper ≤ 20% over raw qdrant-edge calls.
Prints one JSON line.

    python loadtests/bench_retrieval.py [--quick] [--full] [--sizes 100000,1000000]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from services.common.percentiles import percentile
from services.retrieval.config import HnswSettings, RetrievalSettings
from services.retrieval.core import Memory
from services.retrieval.store import EdgeStore, MemoryFilter, MemoryPoint

DIM = 512
CATEGORIES = 10


def clustered(n: int, n_queries: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """n unit vectors in clusters of ~1000 whose spread equals the centres' (heavily overlapping: a hard set),
    and queries drawn from the same clusters."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((max(1, n // 1000), DIM)).astype(np.float32)
    labels = rng.integers(0, len(centres), n)
    data = np.empty((n, DIM), np.float32)
    for start in range(0, n, 100_000):
        stop = min(n, start + 100_000)
        data[start:stop] = centres[labels[start:stop]] + rng.standard_normal((stop - start, DIM), dtype=np.float32)
    data /= np.linalg.norm(data, axis=1, keepdims=True)
    q_labels = rng.integers(0, len(centres), n_queries)
    queries = centres[q_labels] + rng.standard_normal((n_queries, DIM), dtype=np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    return data, queries, labels


def exact_top(data: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, float]:
    """Exact top-k by inner product; also the mean ms per query of doing it in numpy."""
    out = np.empty((len(queries), k), np.int64)
    start = time.perf_counter()
    for i in range(0, len(queries), 64):
        sims = queries[i : i + 64] @ data.T
        part = np.argpartition(-sims, k, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(sims, part, axis=1), axis=1)
        out[i : i + 64] = np.take_along_axis(part, order, axis=1)
    return out, (time.perf_counter() - start) * 1000 / len(queries)


def recall(found: list[list[int]], truth: np.ndarray) -> tuple[float, float]:
    r1 = float(np.mean([f[:1] == [t[0]] for f, t in zip(found, truth, strict=True)]))
    r10 = float(np.mean([len(set(f[:10]) & set(t[:10].tolist())) / 10 for f, t in zip(found, truth, strict=True)]))
    return round(r1, 4), round(r10, 4)


def latencies(fns: dict[str, Any], queries: np.ndarray) -> dict[str, dict[str, float]]:
    """p50/p99 ms per function, calling them in turn on each query (a load spike hits all of them alike)."""
    names = list(fns)
    for q in queries[:20]:
        for name in names:
            fns[name](q)  # warm up
    times: dict[str, list[float]] = {name: [] for name in names}
    for i, q in enumerate(queries):
        for name in names[i % len(names) :] + names[: i % len(names)]:
            start = time.perf_counter()
            fns[name](q)
            times[name].append((time.perf_counter() - start) * 1000)
    return {
        name: {"p50_ms": round(percentile(t, 50), 4), "p99_ms": round(percentile(t, 99), 4)}
        for name, t in times.items()
    }


def bench_size(
    n: int, n_queries: int, n_recall: int, hnsw: HnswSettings, seed: int, tmp: Path, search_threads: int
) -> dict[str, Any]:
    import faiss
    import qdrant_edge as qe

    data, queries, _ = clustered(n, n_queries, seed)
    truth, exact_ms = exact_top(data, queries[:n_recall], 10)
    ids = [str(uuid.UUID(int=i + 1)) for i in range(n)]
    index_of = {pid: i for i, pid in enumerate(ids)}

    # Our store on Qdrant Edge: build through the wrapper, exactly as the memory does.
    settings = RetrievalSettings(path=str(tmp), hnsw=hnsw, edge_search_threads=search_threads)
    store = EdgeStore(tmp / f"bench-{n}", f"bench-{n}", DIM, settings)
    t0 = time.perf_counter()
    for start in range(0, n, 10_000):
        store.upsert(
            [
                MemoryPoint(ids[i], data[i], f"mem://{i}", f"{i:064x}", "good", "bench", "Bench", f"c{i % CATEGORIES}")
                for i in range(start, min(n, start + 10_000))
            ]
        )
    upsert_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    store.optimize()
    optimize_s = time.perf_counter() - t0
    info = store.shard.info()
    shard = store.shard

    def raw(q: np.ndarray) -> list[Any]:
        req = qe.QueryRequest(
            limit=10, query=qe.Query.Nearest(q.tolist()), params=qe.SearchParams(hnsw_ef=hnsw.ef), with_payload=True
        )
        return [(p.id, p.score, p.payload) for p in shard.query(req)]  # what any caller reads from the hits

    def raw_ids_only(q: np.ndarray) -> list[Any]:  # like for like with Faiss, which returns ids alone
        req = qe.QueryRequest(limit=10, query=qe.Query.Nearest(q.tolist()), params=qe.SearchParams(hnsw_ef=hnsw.ef))
        return [(p.id, p.score) for p in shard.query(req)]

    everything = MemoryFilter()

    def ours(q: np.ndarray) -> list[Any]:
        return store.search(q, everything, 10, hnsw.ef)

    memory = Memory(store, settings)
    cat_of_query = [f"c{i % CATEGORIES}" for i in range(len(queries))]
    qi = {"i": 0}

    def full_path(q: np.ndarray) -> list[Any]:
        qi["i"] += 1
        return memory.search(q, "bench", "Bench", cat_of_query[qi["i"] % len(queries)], k=10)

    raw_found = [[index_of[str(pid)] for pid, _, _ in raw(q)] for q in queries[:n_recall]]
    ours_found = [[index_of[h.point.id] for h in ours(q)] for q in queries[:n_recall]]

    # Faiss HNSW with the same parameters; queries on one thread, like ours.
    index = faiss.IndexHNSWFlat(DIM, hnsw.m, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = hnsw.ef_construct
    t0 = time.perf_counter()
    index.add(data)
    faiss_build_s = time.perf_counter() - t0
    index.hnsw.efSearch = hnsw.ef
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    faiss_found = index.search(queries[:n_recall], 10)[1].tolist()
    lat = latencies(
        {
            "raw": raw,
            "raw_ids": raw_ids_only,
            "ours": ours,
            "full": full_path,
            "faiss": lambda q: index.search(q[None, :], 10),
        },
        queries,
    )
    lat_raw, lat_ours, lat_full, lat_faiss = lat["raw"], lat["ours"], lat["full"], lat["faiss"]
    faiss.omp_set_num_threads(threads)
    store.close()

    return {
        "n": n,
        "exact_numpy_ms_per_query": round(exact_ms, 3),
        "qdrant_edge": {
            "upsert_s": round(upsert_s, 2),
            "optimize_s": round(optimize_s, 2),
            "build_s": round(upsert_s + optimize_s, 2),
            "indexed_vectors": info.indexed_vectors_count,
            "recall@1,10": recall(raw_found, truth),
            "raw": lat_raw,
            "raw_ids_only": lat["raw_ids"],
            "wrapper": lat_ours,
            "wrapper_recall@1,10": recall(ours_found, truth),
            "memory_search_filtered": lat_full,
        },
        "faiss_hnsw": {"build_s": round(faiss_build_s, 2), "recall@1,10": recall(faiss_found, truth), **lat_faiss},
        "edge_vs_faiss_p50": round(lat_raw["p50_ms"] / lat_faiss["p50_ms"], 3),
        "edge_ids_only_vs_faiss_p50": round(lat["raw_ids"]["p50_ms"] / lat_faiss["p50_ms"], 3),
        "wrapper_vs_raw_p50": round(lat_ours["p50_ms"] / lat_raw["p50_ms"], 3),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="100k vectors only (the default), fewer queries")
    ap.add_argument("--full", action="store_true", help="also 1M vectors (optimize alone takes minutes)")
    ap.add_argument("--sizes", default="", help="comma-separated sizes, overriding --quick/--full")
    ap.add_argument("--queries", type=int, default=0, help="latency queries per engine (default 2000; quick 1000)")
    ap.add_argument("--recall-queries", type=int, default=500, help="queries checked against exact search")
    ap.add_argument("--m", type=int, default=16)
    ap.add_argument("--ef-construct", type=int, default=100)
    ap.add_argument("--ef", type=int, default=128)
    ap.add_argument("--search-threads", type=int, default=0, help="retrieval.edge_search_threads (0: auto)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s] or ([100_000, 1_000_000] if args.full else [100_000])
    n_queries = args.queries or (1000 if args.quick else 2000)
    hnsw = HnswSettings(m=args.m, ef_construct=args.ef_construct, ef=args.ef)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            n_recall = min(args.recall_queries, n_queries)
            results.append(bench_size(n, n_queries, n_recall, hnsw, args.seed, Path(tmp), args.search_threads))
    first = results[0]
    print(
        json.dumps(
            {
                "bench": "retrieval",
                "dim": DIM,
                "hnsw": {"m": hnsw.m, "ef_construct": hnsw.ef_construct, "ef": hnsw.ef},
                "edge_search_threads": args.search_threads or "auto",
                "queries": n_queries,
                "figure": f"qdrant-edge p50 {first['qdrant_edge']['raw']['p50_ms']} ms at n={first['n']}",
                "baseline": f"faiss-hnsw p50 {first['faiss_hnsw']['p50_ms']} ms",
                "ratio_edge_vs_faiss": first["edge_vs_faiss_p50"],
                "ratio_wrapper_vs_raw": first["wrapper_vs_raw_p50"],
                "goals": {"edge_vs_faiss": "<= 1.5", "wrapper_vs_raw": "<= 1.2"},
                "sizes": results,
            }
        )
    )


if __name__ == "__main__":
    main()
