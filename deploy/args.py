"""The schema of the Serve applications' `args`: where a replica's EchoSettings come from.

Shared by the builders (deploy/apps.py), the deployments that read them
(deploy/deployments.py) and `echo-iad serve --ray`'s validation (deploy/launch.py).
(No `from __future__ import annotations` here: Serve reads the builders' annotations at run time.)
"""

import os
import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from services.common.errors import ConfigError
from services.config import EchoSettings, load_settings

STAGES = ("embedding", "retrieval", "knowledge", "decision", "evidence")
ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
"""`${VAR}` or `${VAR:-default}` in a Serve config's settings; group 1 is the name, group 2 the default."""


def expand_env(value: Any, environ: dict[str, str] | None = None) -> Any:
    """Replace `${VAR}` / `${VAR:-default}` in every string of a settings tree with the environment's values.

    Cluster configs name shared stores this way (`url: ${QDRANT_URL}`), so one
    YAML serves every cluster; the replica's environment decides.
    """
    env = os.environ if environ is None else environ
    if isinstance(value, dict):
        return {k: expand_env(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [expand_env(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def sub(m: re.Match[str]) -> str:
        name, default = m.group(1), m.group(2)
        if name in env:
            return env[name]
        if default is not None:
            return default
        raise ConfigError(f"environment variable {name} is not set (referenced as {m.group(0)} in the Serve config)")

    return ENV_REF.sub(sub, value)


class StageArgs(BaseModel):
    """Arguments of one stage's application: where its EchoSettings come from."""

    model_config = ConfigDict(extra="forbid")

    config_path: str = Field(
        "",
        description=(
            "EchoSettings YAML read by every replica (a path on the replica's machine); empty: $ECHO_IAD_CONFIG, "
            "else defaults. `echo-iad serve --ray` makes a relative path absolute against its working directory."
        ),
    )
    settings: dict[str, Any] = Field(
        default_factory=dict,
        description=(
            "EchoSettings overrides for this application, merged over config_path, e.g. "
            "{embedding: {max_batch_size: 64}}. Strings may reference the replica's environment as ${VAR} or "
            "${VAR:-default} (e.g. url: ${QDRANT_URL})."
        ),
    )

    @field_validator("settings")
    @classmethod
    def _settings_are_echo_settings(cls, value: dict[str, Any]) -> dict[str, Any]:
        try:
            EchoSettings.model_validate(value)
        except ValidationError as e:
            bad = "; ".join(f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in e.errors())
            raise ValueError(f"not valid EchoSettings: {bad}") from None
        return value

    def echo_settings(self) -> EchoSettings:
        """The replica's settings: cluster mode, `${VAR}` references expanded, everything else as configured."""
        return load_settings(self.config_path or None, **{"mode": "cluster", **expand_env(self.settings)})


class GatewayArgs(StageArgs):
    """Arguments of the Inspector application: the stage apps it calls through Serve's gRPC proxy."""

    proxy_address: str = Field(
        "127.0.0.1:9000",
        description=(
            "Serve's gRPC proxy as seen from a gateway replica (port = grpc_options.port). Every node runs a "
            "proxy (proxy_location: EveryNode), so loopback works on a cluster too. A stage whose "
            "settings.gateway.<stage>.address is set is called there instead."
        ),
    )
    applications: dict[str, str] = Field(
        default_factory=lambda: {s: s for s in STAGES},
        description="Serve application name of each stage, sent as the 'application' metadata.",
    )

    @field_validator("applications")
    @classmethod
    def _every_stage_named(cls, value: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(value) - set(STAGES))
        if unknown:
            raise ValueError(f"unknown stages {unknown}; stages are {list(STAGES)}")
        return {s: value.get(s, s) for s in STAGES}

    def echo_settings(self) -> EchoSettings:
        """Stage addresses default to the proxy and the stages' application names: the gateway code is unchanged."""
        settings = super().echo_settings()
        for stage in STAGES:
            endpoint = getattr(settings.gateway, stage)
            endpoint.address = endpoint.address or self.proxy_address
            endpoint.application = endpoint.application or self.applications[stage]
        return settings
