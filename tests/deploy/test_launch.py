"""The launcher's config handling (no Ray needed): validation, paths, environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from deploy.args import GatewayArgs, StageArgs, expand_env
from deploy.launch import prepare_config, proxy_address, read_config, validate_config
from services.common.errors import ConfigError

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def test_invalid_stage_settings_are_refused_naming_the_application_and_key() -> None:
    config = read_config(DEPLOY / "local-cpu.yaml")
    config["applications"][0]["args"]["settings"]["embedding"]["max_batch_size"] = 0
    with pytest.raises(ConfigError, match=r"'embedding'.*embedding\.max_batch_size"):
        validate_config(config)
    config = read_config(DEPLOY / "local-cpu.yaml")
    config["applications"][-1]["args"]["applications"] = {"embeddings": "embedding"}
    with pytest.raises(ConfigError, match="unknown stages"):
        validate_config(config)


def test_a_config_that_is_not_a_serve_config_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("embedding: {model: ViT-B-16}\n")
    with pytest.raises(ConfigError, match="applications"):
        read_config(bad)
    with pytest.raises(ConfigError, match="does not exist"):
        read_config(tmp_path / "missing.yaml")
    config = read_config(DEPLOY / "local-cpu.yaml")
    config["applications"][0]["deployments"][0]["max_ongoing_requests"] = -1
    with pytest.raises(ConfigError, match="not a valid Serve config"):
        validate_config(config)


def test_relative_paths_become_absolute_and_referenced_variables_are_forwarded(tmp_path: Path) -> None:
    config = read_config(DEPLOY / "multi-node-gpu.yaml")
    retrieval = next(a for a in config["applications"] if a["name"] == "retrieval")
    retrieval["args"]["config_path"] = "conf/echo.yaml"
    retrieval["args"]["settings"]["data_dir"] = "./state"
    retrieval["runtime_env"] = {"env_vars": {"REDIS_URL": "set-in-yaml"}}
    environ = {"QDRANT_URL": "http://q:6333", "REDIS_URL": "from-shell", "UNRELATED": "x"}
    out = prepare_config(config, tmp_path, environ)
    args = next(a for a in out["applications"] if a["name"] == "retrieval")
    assert args["args"]["config_path"] == str(tmp_path / "conf" / "echo.yaml")
    assert args["args"]["settings"]["data_dir"] == str(tmp_path / "state")
    assert args["runtime_env"]["env_vars"] == {"REDIS_URL": "set-in-yaml", "QDRANT_URL": "http://q:6333"}
    knowledge = next(a for a in out["applications"] if a["name"] == "knowledge")
    assert knowledge["runtime_env"]["env_vars"] == {"REDIS_URL": "from-shell"}
    assert "runtime_env" not in next(a for a in config["applications"] if a["name"] == "knowledge")  # a copy
    assert proxy_address(out) == "127.0.0.1:9000"


def test_environment_references_expand_with_defaults_and_name_a_missing_variable() -> None:
    env = {"QDRANT_URL": "http://qdrant:6333"}
    tree = {"retrieval": {"url": "${QDRANT_URL}", "image_store": "${IMAGES:-/data/images}"}, "n": 3}
    assert expand_env(tree, env) == {"retrieval": {"url": "http://qdrant:6333", "image_store": "/data/images"}, "n": 3}
    assert expand_env("${HF_HOME:-}", {}) == ""
    with pytest.raises(ConfigError, match="REDIS_URL"):
        expand_env({"knowledge": {"redis_url": "${REDIS_URL}"}}, env)


def test_stage_args_give_cluster_settings_and_the_gateway_calls_stages_through_the_proxy(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ECHO_IAD__EMBEDDING__MAX_BATCH_SIZE", "7")  # the environment still wins
    settings = StageArgs(settings={"embedding": {"max_batch_size": 64}}).echo_settings()
    assert settings.mode == "cluster"
    assert settings.embedding.max_batch_size == 7
    gw = GatewayArgs(
        proxy_address="127.0.0.1:9100",
        applications={"decision": "llm-decision"},
        settings={"gateway": {"knowledge": {"address": "10.0.0.5:50051"}}},
    ).echo_settings()
    assert (gw.gateway.embedding.address, gw.gateway.embedding.application) == ("127.0.0.1:9100", "embedding")
    assert gw.gateway.decision.application == "llm-decision"
    assert gw.gateway.knowledge.address == "10.0.0.5:50051"  # an explicit address is kept
    with pytest.raises(ValueError, match="not valid EchoSettings"):
        StageArgs(settings={"embeding": {}})


def test_packaged_configs_are_found_by_name_from_any_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from deploy.launch import resolve_config

    monkeypatch.chdir(tmp_path)
    assert resolve_config("local-cpu") == DEPLOY / "local-cpu.yaml"
    assert resolve_config("single-gpu.yaml") == DEPLOY / "single-gpu.yaml"
    (tmp_path / "local-cpu.yaml").write_text("applications: []\n")  # a file of that name here wins
    assert resolve_config("local-cpu.yaml") == Path("local-cpu.yaml")
    with pytest.raises(ConfigError, match=r"no Serve config 'local-gpu'.*\(local-cpu, multi-node-gpu, single-gpu\)"):
        resolve_config("local-gpu")


def test_the_ingress_switch_is_serves_environment_variable_and_an_unknown_ingress_is_named() -> None:
    from deploy.launch import INGRESSES, ingress_env

    assert INGRESSES == ("proxy", "haproxy")
    assert ingress_env("haproxy") == {"RAY_SERVE_ENABLE_HA_PROXY": "1"}
    assert ingress_env("proxy") == {"RAY_SERVE_ENABLE_HA_PROXY": "0"}
    with pytest.raises(ConfigError, match=r"unknown ingress 'envoy'; choose one of proxy, haproxy"):
        ingress_env("envoy")


def test_clients_reach_the_ingress_on_the_configured_host_or_loopback_when_it_binds_everywhere() -> None:
    grpc = {"port": 9100}
    assert proxy_address({"http_options": {"host": "10.0.0.5"}, "grpc_options": grpc}) == "10.0.0.5:9100"
    assert proxy_address({"http_options": {"host": "0.0.0.0"}, "grpc_options": grpc}) == "127.0.0.1:9100"
    assert proxy_address({"http_options": {"host": "::"}, "grpc_options": grpc}) == "127.0.0.1:9100"
    assert proxy_address({"grpc_options": grpc}) == "127.0.0.1:9100"
