"""Settings of the retrieval stage (Qdrant HNSW memory of normal images)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from services.common.section import Section


class HnswSettings(Section):
    m: int = Field(16, ge=2, description="HNSW graph degree.")
    ef_construct: int = Field(100, ge=4, description="HNSW build-time beam width.")
    ef: int = Field(128, ge=1, description="HNSW search-time beam width.")
    full_scan_threshold_kb: int = Field(
        10_000,
        ge=0,
        description=(
            "Filtered searches whose candidates hold fewer KB of vectors than this scan them exactly through the "
            "payload index (a memory of up to 5,000 512-d images at the default, Qdrant's); larger memories get "
            "HNSW links of their own. Exact scans measured faster than per-memory HNSW at these sizes."
        ),
    )
    indexing_threshold_kb: int = Field(
        10_000,
        ge=0,
        description="Segments with fewer KB of vectors stay unindexed (exact search); Qdrant's default.",
    )


class RetrievalSettings(Section):
    engine: Literal["edge", "server"] = Field(
        "edge",
        description="edge: Qdrant Edge in-process (embedded default); server: a Qdrant server via qdrant-client.",
    )
    path: str = Field(
        "./echo-data/memory", description="Qdrant Edge: folder the shards persist to (one per collection)."
    )
    url: str = Field(
        "",
        description="Qdrant server URL (e.g. http://qdrant:6333); ':memory:' or a path: qdrant-client's local mode.",
    )
    prefer_grpc: bool = Field(True, description="Qdrant server: talk gRPC (port 6334) rather than REST.")
    api_key: str = Field("", description="Qdrant server API key, if any.")
    timeout_s: float = Field(10.0, gt=0, description="Qdrant server: per-call timeout.")
    collection: str = Field("echo_normal_memory", description="Collection name.")
    dim: int = Field(0, ge=0, description="Vector size; 0 takes the embedding model's.")
    hnsw: HnswSettings = Field(default_factory=HnswSettings)
    edge_payload_in_ram: bool = Field(
        True,
        description="Qdrant Edge: keep payloads (URIs, hashes, names) in RAM; on disk they cost ~0.3 ms per search.",
    )
    edge_search_threads: int = Field(
        1,
        ge=0,
        description=(
            "Qdrant Edge: search thread pool size; 0 derives it from the CPU count (Qdrant's default). 1 (ours) "
            "skips the hand-off between threads: for a search within one memory its p50 was within ~7% of auto "
            "either way and its p99 lower in every run on our busy 2-core machine (loadtests/bench/retrieval.py); "
            "it searches segments one after another and runs concurrent searches in turn (~0.2 ms each)."
        ),
    )
    default_line: str = Field("default", description="Production line used when a request names none.")
    default_k: int = Field(1, ge=1, description="References returned when a request leaves k unset.")
    max_k: int = Field(64, ge=1, description="Most references one search may return.")
    vote_k: int = Field(10, ge=1, description="Neighbours that vote in category inference.")
    vote_temperature: float = Field(
        0.05, gt=0, description="Category vote: each neighbour weighs exp(similarity / T), so closer ones count more."
    )
    text_weight: float = Field(
        0.5, ge=0, le=1, description="Category inference: share of the text-prompt score (the rest is the vote)."
    )
    text_logit_scale: float = Field(100.0, gt=0, description="CLIP logit scale for the text-prompt softmax.")
    image_store: str = Field("./echo-data/images", description="Where reference pixels live: a folder or fsspec URL.")
