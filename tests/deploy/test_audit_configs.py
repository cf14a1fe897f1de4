"""Where each shipped Serve config keeps the audit log: one shared Redis for many gateway replicas."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from deploy.apps import GatewayArgs
from deploy.launch import read_config

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
ENV = {"REDIS_URL": "redis://redis:6379/0", "ECHO_IMAGE_STORE": "s3://plant/echo-images"}


def _inspector(config: dict) -> dict:  # type: ignore[type-arg]
    (app,) = [a for a in config["applications"] if a["import_path"] == "deploy.apps:inspector_app"]
    return app


@pytest.mark.parametrize("name", ["single-gpu.yaml", "multi-node-gpu.yaml"])
def test_gpu_configs_write_one_shared_audit_log_from_every_replica(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in ENV.items():
        monkeypatch.setenv(key, value)
    app = _inspector(read_config(DEPLOY / name))
    audit = GatewayArgs.model_validate(app["args"]).echo_settings().audit
    assert (audit.store, audit.redis_url, audit.fsync) == ("redis", ENV["REDIS_URL"], "always")
    assert audit.image_store == f"{ENV['ECHO_IMAGE_STORE']}/audit"  # a store every node sees


def test_the_local_config_keeps_files_and_one_inspector_replica() -> None:
    app = _inspector(yaml.safe_load((DEPLOY / "local-cpu.yaml").read_text()))
    assert GatewayArgs.model_validate(app["args"]).echo_settings().audit.store == "files"
    (deployment,) = app["deployments"]
    assert deployment["num_replicas"] == 1  # a files log has one owner


def test_the_kuberay_redis_fsyncs_before_it_replies() -> None:
    docs = list(yaml.safe_load_all((DEPLOY / "kuberay" / "redis.yaml").read_text()))
    (redis,) = [d for d in docs if d["kind"] == "Deployment"]
    args = redis["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--appendonly") + 1] == "yes" and args[args.index("--appendfsync") + 1] == "always"
