"""One settings tree for the whole system: YAML file, then environment overrides.

Precedence (highest first): explicit arguments, environment variables
(`ECHO_IAD__<SECTION>__<KEY>`, e.g. `ECHO_IAD__DECISION__BACKEND=openai`), the YAML
file (`--config` or `ECHO_IAD_CONFIG`), then defaults. Validation runs at start
and every error names the dotted key.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from services.common.errors import ConfigError
from services.common.section import Section
from services.decision.config import DecisionSettings
from services.embedding.config import EmbeddingSettings
from services.gateway.config import GatewaySettings
from services.knowledge.config import KnowledgeSettings
from services.retrieval.config import RetrievalSettings


class ServerSettings(Section):
    host: str = Field("127.0.0.1", description="Bind address; loopback by default (the gRPC port has no TLS).")
    port: int = Field(50051, ge=0, le=65535, description="gRPC port; 0 picks a free one.")
    max_message_mb: int = Field(32, ge=1, description="Largest gRPC message, both ways (image payloads).")
    grace_s: float = Field(10.0, ge=0, description="On SIGTERM, how long in-flight requests may finish.")


class TelemetrySettings(Section):
    log_level: str = Field("INFO", description="Python logging level.")
    metrics_port: int = Field(0, ge=0, le=65535, description="Prometheus /metrics port; 0 disables the HTTP exporter.")


class EchoSettings(BaseSettings):
    """The whole Echo-IAD configuration; every stage reads its own section."""

    model_config = SettingsConfigDict(env_prefix="ECHO_IAD__", env_nested_delimiter="__", extra="forbid")

    mode: Literal["embedded", "cluster"] = Field("embedded", description="embedded: one process; cluster: Ray Serve.")
    data_dir: str = Field("./echo-data", description="Root for memory, image store and model caches.")
    server: ServerSettings = Field(default_factory=ServerSettings)
    telemetry: TelemetrySettings = Field(default_factory=TelemetrySettings)
    embedding: EmbeddingSettings = Field(default_factory=EmbeddingSettings)
    retrieval: RetrievalSettings = Field(default_factory=RetrievalSettings)
    knowledge: KnowledgeSettings = Field(default_factory=KnowledgeSettings)
    decision: DecisionSettings = Field(default_factory=DecisionSettings)
    gateway: GatewaySettings = Field(default_factory=GatewaySettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # YAML is passed as init kwargs by load_settings(); env vars win over it.
        return env_settings, init_settings

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
        return self


def _deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _format_errors(err: ValidationError, source: str) -> str:
    lines = [f"invalid configuration ({source}):"]
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "<root>"
        lines.append(f"  {key}: {e['msg']} (got {e.get('input')!r})")
    return "\n".join(lines)


def load_settings(path: str | Path | None = None, **overrides: Any) -> EchoSettings:
    """Read YAML (path, else $ECHO_IAD_CONFIG, else defaults), apply env and overrides, validate.

    Raises ConfigError naming the file and every bad key.
    """
    path = path or os.environ.get("ECHO_IAD_CONFIG") or None
    data: dict[str, Any] = {}
    source = "defaults and environment"
    if path:
        p = Path(path)
        source = str(p)
        if not p.is_file():
            raise ConfigError(f"config file {p} does not exist")
        try:
            loaded = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"config file {p} is not valid YAML: {e}") from e
        if not isinstance(loaded, dict):
            raise ConfigError(f"config file {p}: the top level must be a mapping, got {type(loaded).__name__}")
        data = loaded
    data = _deep_merge(data, overrides)
    try:
        settings = EchoSettings(**data)
    except ValidationError as e:
        raise ConfigError(_format_errors(e, source)) from None
    return settings.resolve_paths()
