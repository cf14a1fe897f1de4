"""Generic settings plumbing: a YAML file, then environment overrides, validated with errors that name the key.

Precedence (highest first): explicit arguments, environment variables
(`ECHO_IAD__<SECTION>__<KEY>`, e.g. `ECHO_IAD__DECISION__BACKEND=openai`), the YAML
file (`--config` or `ECHO_IAD_CONFIG`), then defaults. The whole tree (every
stage's section) is composed in `services/config.py`; this module knows no stage.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import Field, ValidationError, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from services.common.errors import ConfigError
from services.common.section import Section

CONFIG_ENV = "ECHO_IAD_CONFIG"


class TlsSettings(Section):
    cert_file: str = Field("", description="PEM certificate chain of this server; set with key_file to serve TLS.")
    key_file: str = Field("", description="PEM private key of cert_file.")
    client_ca_file: str = Field(
        "", description="PEM CA bundle; set: mutual TLS, every client must present a certificate it signed."
    )

    @property
    def enabled(self) -> bool:
        return bool(self.cert_file)

    @model_validator(mode="after")
    def _pairs(self) -> TlsSettings:
        if bool(self.cert_file) != bool(self.key_file):
            raise ValueError("cert_file and key_file go together")
        if self.client_ca_file and not self.cert_file:
            raise ValueError("client_ca_file (mutual TLS) needs cert_file and key_file")
        return self


class AuthSettings(Section):
    tokens_file: str = Field(
        "",
        description=(
            "YAML file of bearer tokens scoped to lines (format: services/common/auth.py); empty: no token check "
            "(the loopback default)."
        ),
    )

    @property
    def enabled(self) -> bool:
        return bool(self.tokens_file)


class ServerSettings(Section):
    host: str = Field(
        "127.0.0.1",
        description="Bind address; loopback by default. Any other needs tls and auth set, or insecure: true.",
    )
    port: int = Field(50051, ge=0, le=65535, description="gRPC port; 0 picks a free one.")
    max_message_mb: int = Field(32, ge=1, description="Largest gRPC message, both ways (image payloads).")
    grace_s: float = Field(10.0, ge=0, description="On SIGTERM, how long in-flight requests may finish.")
    max_concurrent_rpcs: int = Field(
        32,
        ge=0,
        description=(
            "Calls inside the server at once (0: no limit). Beyond it a call is refused RESOURCE_EXHAUSTED before "
            "its body is read (services/common/gate.py), so a burst of large requests cannot hold every body in "
            "memory until admission refuses it. Applies to a server hosting the Inspector (the line's door); "
            "health checks and an embedded gateway's own calls to its stages never count, and a stage server "
            "alone is bounded by its gateways' admission (gateway.max_concurrent) instead."
        ),
    )
    tls: TlsSettings = Field(default_factory=TlsSettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    insecure: bool = Field(
        False, description="Allow a non-loopback host without TLS and tokens (a trusted network only)."
    )
    health_interval_s: float = Field(
        5.0, gt=0, description="How often every stage's real health check runs (NOT_SERVING while one fails)."
    )
    health_timeout_s: float = Field(10.0, gt=0, description="A health check slower than this counts as failed.")
    omp_wait_policy: Literal["passive", "active", ""] = Field(
        "passive",
        description=(
            "How the CPU models' OpenMP threads (torch) wait between parallel regions: passive sleeps at once, "
            "active spins first. Each model thread of the embedded server keeps its own team of threads, and "
            "spinning teams starve each other and every other process on the machine (on a shared 2-core machine, "
            "MiniLM beside the evidence backbone ran 1.4-5.5x faster passive, the backbone 1.15-1.3x). Set before "
            "torch loads (serve, a stage alone); OMP_WAIT_POLICY "
            "in the environment wins; empty: OpenMP's default."
        ),
    )
    malloc_arenas: int = Field(
        2,
        ge=0,
        description=(
            "glibc malloc arenas for the server process (mallopt M_ARENA_MAX; 0: glibc's default, 8 per core). "
            "Each thread that decodes an image can otherwise take an arena of its own and keep its freed pages: "
            "the memory drill's 200-request burst peaked 1.36 GB lower with 2 (docs/operations.md). Set at start; "
            "MALLOC_ARENA_MAX in the environment wins."
        ),
    )
    intra_op_threads: int = Field(
        1,
        ge=0,
        description=(
            "Threads each CPU model call may use (OMP_NUM_THREADS: torch's intra-op threads, the evidence runtime's "
            "and faiss's follow it). The embedded server runs every stage's model on a thread of its own and several "
            "inspections at once, so the cores are shared between calls, not within one: on the 2-core machine, "
            "1 thread cost 16% less CPU per inspection than 2 (169 -> 142 ms, loadtests/bench/inspection_cpu.py). Set "
            "before torch loads; OMP_NUM_THREADS in the environment wins; 0: OpenMP's default (one per core)."
        ),
    )


class TelemetrySettings(Section):
    log_level: str = Field("INFO", description="Python logging level.")
    metrics_port: int = Field(0, ge=0, le=65535, description="Prometheus /metrics port; 0 disables the HTTP exporter.")
    tracing: bool = Field(
        False,
        description="Export OpenTelemetry spans of every RPC and of the gateway's fan-out to otlp_endpoint "
        "(W3C trace context travels in gRPC metadata, through Ray Serve's proxy too).",
    )
    otlp_endpoint: str = Field(
        "http://127.0.0.1:4317",
        description="OTLP/gRPC collector (e.g. an OpenTelemetry Collector or Jaeger); https:// for TLS.",
    )


class SettingsTree(BaseSettings):
    """A settings tree read from YAML (init kwargs) with `ECHO_IAD__*` environment variables winning over it."""

    model_config = SettingsConfigDict(env_prefix="ECHO_IAD__", env_nested_delimiter="__", extra="forbid")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # YAML is passed as init kwargs by load_tree(); env vars win over it.
        return env_settings, init_settings


TreeT = TypeVar("TreeT", bound=SettingsTree)


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def format_errors(err: ValidationError, source: str) -> str:
    lines = [f"invalid configuration ({source}):"]
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "<root>"
        lines.append(f"  {key}: {e['msg']} (got {e.get('input')!r})")
    return "\n".join(lines)


def read_yaml(path: Path) -> dict[str, Any]:
    """A settings file's top-level mapping; ConfigError naming the file when it is missing or malformed."""
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        loaded = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"config file {path} is not valid YAML: {e}") from e
    if not isinstance(loaded, dict):
        raise ConfigError(f"config file {path}: the top level must be a mapping, got {type(loaded).__name__}")
    return loaded


def load_tree(
    cls: type[TreeT],
    path: str | Path | None = None,
    *,
    preset: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    **overrides: Any,
) -> TreeT:
    """Read YAML (path, else $ECHO_IAD_CONFIG, else defaults), apply env and overrides, validate as `cls`.

    `preset(data)` returns values that sit beneath the file's own (a protocol, chosen by the merged data).
    Raises ConfigError naming the file and every bad key.
    """
    path = path or os.environ.get(CONFIG_ENV) or None
    source = str(path) if path else "defaults and environment"
    data = read_yaml(Path(path)) if path else {}
    data = deep_merge(data, overrides)
    if preset is not None:
        try:
            data = deep_merge(preset(data), data)
        except ValueError as e:
            raise ConfigError(f"invalid configuration ({source}):\n  {e}") from None
    try:
        return cls(**data)
    except ValidationError as e:
        raise ConfigError(format_errors(e, source)) from None
