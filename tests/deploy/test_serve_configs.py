"""Every shipped Serve config validates against Serve's schema and our builders' args; resources are as designed."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import pytest
import yaml
from google.protobuf import descriptor_pool

from deploy.apps import BUILDERS, GRPC_BUILDERS
from deploy.args import ENV_REF, STAGES, GatewayArgs, StageArgs
from deploy.launch import read_config, validate_config
from services.common.errors import ConfigError

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
CONFIGS = sorted(DEPLOY.glob("*.yaml"))
GPU_CONFIGS = [p for p in CONFIGS if "gpu" in p.name]
CLUSTER_ENV = {
    "QDRANT_URL": "http://qdrant:6333",
    "REDIS_URL": "redis://redis:6379/0",
    "ECHO_IMAGE_STORE": "/data/images",
    "ECHO_EVIDENCE_STORE": "/data/evidence",
    "ECHO_DECISION_MODEL": "/models/Qwen2-VL-7B-Instruct",
    "HF_HOME": "/models/hf",
}


def import_attr(path: str) -> object:
    """`module:attr` or `module.attr`, imported as Serve does."""
    module, _, attr = path.partition(":") if ":" in path else path.rpartition(".")
    return getattr(importlib.import_module(module), attr)


def apps(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {a["name"]: a for a in config["applications"]}


def app_by_builder(config: dict[str, Any], builder: str) -> dict[str, Any]:
    (app,) = [a for a in config["applications"] if a["import_path"] == f"deploy.apps:{builder}"]
    return app


def deployment(app: dict[str, Any]) -> dict[str, Any]:
    (dep,) = app.get("deployments", [{}])
    return dep


def test_the_three_configs_ship() -> None:
    assert [p.name for p in CONFIGS] == ["local-cpu.yaml", "multi-node-gpu.yaml", "single-gpu.yaml"]


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_config_validates_against_serve_and_every_builders_args(path: Path) -> None:
    config = read_config(path)
    schema = validate_config(config)
    assert {a.name for a in schema.applications} >= {
        "embedding", "retrieval", "knowledge", "decision", "evidence", "inspector"
    }  # fmt: skip
    for app in config["applications"]:
        builder = import_attr(app["import_path"])  # what Serve's controller imports
        assert callable(builder)
        model = BUILDERS[app["import_path"]]
        assert model.model_validate(app.get("args") or {})


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_proxy_registers_every_service_and_the_gateway_reaches_every_stage_through_it(path: Path) -> None:
    config = read_config(path)
    functions = config["grpc_options"]["grpc_servicer_functions"]
    for fn in functions:
        assert callable(import_attr(fn)), fn  # the proxy imports these
    for service in ("Inspector", "Embedding", "Retrieval", "Knowledge", "Decision", "Evidence"):
        assert f"echo.v1.{service.lower()}_pb2_grpc.add_{service}Servicer_to_server" in functions
    assert "grpc_health.v1.health_pb2_grpc.add_HealthServicer_to_server" in functions

    args = GatewayArgs.model_validate(app_by_builder(config, "inspector_app")["args"])
    assert args.proxy_address.rsplit(":", 1)[1] == str(config["grpc_options"]["port"])
    names = apps(config)
    for stage in STAGES:
        target = names[args.applications[stage]]
        assert target["import_path"] == f"deploy.apps:{stage}_app"


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_batching_stages_accept_a_full_batch_per_replica(path: Path) -> None:
    config = read_config(path)
    batching = (("embedding_app", "embedding"), ("decision_app", "decision"), ("evidence_app", "evidence"))
    for builder, section in batching:
        app = app_by_builder(config, builder)
        batch = app["args"]["settings"][section].get("max_batch_size", 1)
        assert deployment(app)["max_ongoing_requests"] >= batch, (path.name, builder)


def test_local_cpu_fits_two_cpus_with_the_offline_models() -> None:
    config = read_config(DEPLOY / "local-cpu.yaml")
    most_cpus = 0.0
    for app in config["applications"]:
        dep = deployment(app)
        replicas = dep.get("num_replicas") or dep["autoscaling_config"]["max_replicas"]
        most_cpus += replicas * dep["ray_actor_options"]["num_cpus"]
        assert "num_gpus" not in dep["ray_actor_options"]
    assert most_cpus <= 2.0
    settings = {
        a["name"]: StageArgs.model_validate({"settings": a["args"]["settings"]}) for a in config["applications"]
    }
    emb = settings["embedding"].echo_settings().embedding
    assert emb.model.startswith("echo-tiny") and emb.weights == "random"
    assert settings["decision"].echo_settings().decision.model.startswith("echo-tiny")
    assert settings["retrieval"].echo_settings().retrieval.engine == "edge"
    assert deployment(apps(config)["retrieval"])["num_replicas"] == 1  # Qdrant Edge: one process owns the shard
    scaling = deployment(apps(config)["embedding"])["autoscaling_config"]
    assert scaling["min_replicas"] == 1 and scaling["max_replicas"] == 2
    assert settings["evidence"].echo_settings().evidence.device == "cpu"
    assert deployment(apps(config)["evidence"])["autoscaling_config"]["max_replicas"] == 2


@pytest.mark.parametrize("path", GPU_CONFIGS, ids=lambda p: p.name)
def test_gpu_configs_place_models_on_gpus_and_share_qdrant_and_redis(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in CLUSTER_ENV.items():
        monkeypatch.setenv(name, value)
    config = read_config(path)
    emb = deployment(app_by_builder(config, "embedding_app"))["ray_actor_options"]
    assert 0 < emb["num_gpus"] < 1  # a fraction of a GPU per CLIP replica

    def settings(builder: str) -> Any:
        return StageArgs.model_validate(app_by_builder(config, builder)["args"]).echo_settings()

    assert settings("embedding_app").embedding.device == "cuda"
    retrieval = settings("retrieval_app").retrieval
    assert (retrieval.engine, retrieval.url) == ("server", "http://qdrant:6333")
    knowledge = settings("knowledge_app").knowledge
    assert (knowledge.store, knowledge.redis_url) == ("redis", "redis://redis:6379/0")
    gateway = GatewayArgs.model_validate(app_by_builder(config, "inspector_app")["args"]).echo_settings()
    assert gateway.retrieval.image_store == retrieval.image_store  # the gateway writes what retrieval serves
    assert gateway.gateway.decision.application == "decision"

    decision = settings("decision_app").decision
    if decision.backend == "vllm":  # multi-node: the model runs in Ray Serve LLM, one GPU per engine replica
        llm = apps(config)[decision.vllm.app_name]
        assert llm["import_path"] == "deploy.apps:llm_app"
        assert StageArgs.model_validate(llm["args"]).echo_settings().decision == decision
        assert decision.vllm.tensor_parallel_size == 1
        assert "num_gpus" not in deployment(app_by_builder(config, "decision_app"))["ray_actor_options"]
        from services.decision.backends.vllm_serve import llm_config_kwargs

        engine = llm_config_kwargs(decision)["engine_kwargs"]
        assert engine["limit_mm_per_prompt"]["image"] == decision.max_images
    else:  # single GPU: the local backend holds the rest of the card
        assert decision.device == "cuda"
        dec = deployment(app_by_builder(config, "decision_app"))["ray_actor_options"]
        ev = deployment(app_by_builder(config, "evidence_app"))
        most_evidence = ev["autoscaling_config"]["max_replicas"] * ev["ray_actor_options"]["num_gpus"]
        assert dec["num_gpus"] + emb["num_gpus"] + most_evidence <= 1

    evidence = deployment(app_by_builder(config, "evidence_app"))
    assert 0 < evidence["ray_actor_options"]["num_gpus"] < 1 and evidence["autoscaling_config"]["max_replicas"] > 1
    ev_settings = settings("evidence_app").evidence
    assert ev_settings.device == "cuda" and ev_settings.bank_store.startswith("/")  # one store every replica reads


@pytest.mark.parametrize("path", GPU_CONFIGS, ids=lambda p: p.name)
def test_gpu_configs_take_store_addresses_from_the_environment(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = path.read_text()
    referenced = {m.group(1) for m in ENV_REF.finditer(text)}
    assert {"QDRANT_URL", "REDIS_URL"} <= referenced
    monkeypatch.delenv("QDRANT_URL", raising=False)
    args = StageArgs.model_validate(app_by_builder(yaml.safe_load(text), "retrieval_app")["args"])
    with pytest.raises(ConfigError, match="QDRANT_URL"):
        args.echo_settings()


def test_every_rpc_of_every_service_has_a_deployment_method() -> None:
    from deploy import deployments as d

    hosts = {
        "echo.v1.Embedding": d.EmbeddingDeployment,
        "echo.v1.Retrieval": d.RetrievalDeployment,
        "echo.v1.Knowledge": d.KnowledgeDeployment,
        "echo.v1.Decision": d.DecisionDeployment,
        "echo.v1.Evidence": d.EvidenceDeployment,
        "echo.v1.Inspector": d.InspectorDeployment,
    }
    for service, dep in hosts.items():
        cls = dep.func_or_class
        for method in descriptor_pool.Default().FindServiceByName(service).methods:
            assert callable(getattr(cls, method.name, None)), f"{cls.__name__} lacks {method.name}"
            assert d.response_type(service, method.name).DESCRIPTOR.full_name == method.output_type.full_name
        assert callable(cls.Check) and callable(cls.check_health)
    assert set(GRPC_BUILDERS) == set(BUILDERS) - {"deploy.apps:llm_app"}
