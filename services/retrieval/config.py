"""Settings of the retrieval stage (Qdrant HNSW memory of normal images)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class HnswSettings(BaseModel):
    m: int = Field(16, ge=2, description="HNSW graph degree.")
    ef_construct: int = Field(100, ge=4, description="HNSW build-time beam width.")
    ef: int = Field(128, ge=1, description="HNSW search-time beam width.")


class RetrievalSettings(BaseModel):
    engine: Literal["edge", "server"] = Field(
        "edge",
        description="edge: Qdrant Edge in-process (embedded default); server: a Qdrant server via qdrant-client.",
    )
    path: str = Field("./echo-data/memory", description="Qdrant Edge: folder the shard persists to.")
    url: str = Field(
        "",
        description="Qdrant server URL (e.g. http://qdrant:6333); ':memory:' or a path uses qdrant-client's local mode.",
    )
    prefer_grpc: bool = Field(True, description="Qdrant server: talk gRPC (port 6334) rather than REST.")
    api_key: str = Field("", description="Qdrant server API key, if any.")
    collection: str = Field("echo_normal_memory", description="Collection name.")
    dim: int = Field(0, ge=0, description="Vector size; 0 takes the embedding model's.")
    hnsw: HnswSettings = Field(default_factory=HnswSettings)
    default_k: int = Field(1, ge=1, description="References returned when a request leaves k unset.")
    vote_k: int = Field(10, ge=1, description="Neighbours that vote in category inference.")
    image_store: str = Field("./echo-data/images", description="Where reference pixels live: a folder or fsspec URL.")
