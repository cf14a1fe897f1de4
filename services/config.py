"""The whole Echo-IAD settings tree: every stage's section, composed here (a new stage adds one line).

`load_settings()` is the one way to read it: YAML file, then environment
overrides (`ECHO_IAD__<SECTION>__<KEY>`), validated at start; every error names
the dotted key. The generic parts (YAML, environment, error format) live in
`services/common/config.py`, which knows no stage.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from services.audit.config import AuditSettings
from services.common.config import ServerSettings, SettingsTree, TelemetrySettings, load_tree
from services.common.protocol import preset as protocol_preset
from services.decision.config import DecisionSettings
from services.embedding.config import EmbeddingSettings
from services.evidence.config import EvidenceSettings
from services.gateway.config import GatewaySettings
from services.knowledge.config import KnowledgeSettings
from services.retrieval.config import RetrievalSettings


class EchoSettings(SettingsTree):
    """The whole Echo-IAD configuration; every stage reads its own section."""

    protocol: Literal["product", "paper"] = Field(
        "product",
        description=(
            "Preset under this file's own values (services/common/protocol.py): product, what `serve` runs; paper, "
            "the protocol the Echo paper measured on MMAD (MMAD's prompt and pixel budget, the paper's expert map), "
            "what `eval` selects."
        ),
    )
    mode: Literal["embedded", "cluster"] = Field("embedded", description="embedded: one process; cluster: Ray Serve.")
    data_dir: str = Field("./echo-data", description="Root for memory, image stores, audit log and model caches.")
    server: ServerSettings = Field(default_factory=ServerSettings)
    telemetry: TelemetrySettings = Field(default_factory=TelemetrySettings)
    embedding: EmbeddingSettings = Field(default_factory=EmbeddingSettings)
    retrieval: RetrievalSettings = Field(default_factory=RetrievalSettings)
    knowledge: KnowledgeSettings = Field(default_factory=KnowledgeSettings)
    decision: DecisionSettings = Field(default_factory=DecisionSettings)
    evidence: EvidenceSettings = Field(default_factory=EvidenceSettings)
    gateway: GatewaySettings = Field(default_factory=GatewaySettings)
    audit: AuditSettings = Field(default_factory=AuditSettings)

    @model_validator(mode="after")
    def _one_prompt_limit(self) -> EchoSettings:
        """The gateway refuses at the door what the decision stage would: both must hold the same limit. The
        whole tree is loaded in both modes (one file), so a disagreement stops start-up wherever it runs."""
        if self.gateway.max_prompt_images != self.decision.max_images:
            raise ValueError(
                f"gateway.max_prompt_images ({self.gateway.max_prompt_images}) must equal decision.max_images "
                f"({self.decision.max_images}): set both"
            )
        return self

    def resolve_paths(self) -> EchoSettings:
        """State paths left at their defaults follow data_dir, so one flag moves all state."""
        root = Path(self.data_dir)
        if self.retrieval.path == RetrievalSettings().path:
            self.retrieval.path = str(root / "memory")
        if self.retrieval.image_store == RetrievalSettings().image_store:
            self.retrieval.image_store = str(root / "images")
        if self.decision.model_cache == DecisionSettings().model_cache:
            self.decision.model_cache = str(root / "models")
        if not self.knowledge.dir:
            self.knowledge.dir = str(root / "knowledge")
        if self.knowledge.refine_cache == KnowledgeSettings().refine_cache:
            self.knowledge.refine_cache = str(root / "knowledge-refined.json")
        if not self.audit.dir:
            self.audit.dir = str(root / "audit")
        if not self.audit.image_store:
            self.audit.image_store = str(root / "audit-images")
        if self.evidence.bank_store == EvidenceSettings().bank_store:
            self.evidence.bank_store = str(root / "evidence")
        if self.evidence.runtime_cache == EvidenceSettings().runtime_cache:
            self.evidence.runtime_cache = str(root / "evidence-runtime")
        if self.embedding.runtime_cache == EmbeddingSettings().runtime_cache:
            self.embedding.runtime_cache = str(root / "embedding-runtime")
        return self


def load_settings(path: str | Path | None = None, **overrides: Any) -> EchoSettings:
    """Read YAML (path, else $ECHO_IAD_CONFIG, else defaults) over its protocol's preset, apply env and overrides,
    validate. `protocol="paper"` among the overrides (or in the file, or ECHO_IAD__PROTOCOL) selects the paper's.

    Raises ConfigError naming the file and every bad key.
    """
    return load_tree(EchoSettings, path, preset=_protocol_preset, **overrides).resolve_paths()


def _protocol_preset(data: dict[str, Any]) -> dict[str, Any]:
    return protocol_preset(os.environ.get("ECHO_IAD__PROTOCOL") or data.get("protocol") or "product")
