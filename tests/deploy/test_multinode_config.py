"""The multi-node test variant keeps multi-node-gpu.yaml's placement; only GPUs, models and the memory engine change."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
from multinode_config import ACCELERATOR, GPU_BUILDERS, MEMORY_NODE, cpu_variant, needs

from deploy.args import StageArgs
from deploy.launch import read_config, validate_config

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


@pytest.fixture(scope="module")
def configs() -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    gpu = read_config(DEPLOY / "multi-node-gpu.yaml")
    cpu = read_config(DEPLOY / "local-cpu.yaml")
    return gpu, cpu, cpu_variant(gpu, cpu)


def by_builder(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {a["import_path"]: a for a in config["applications"]}


def test_the_variant_is_a_valid_serve_config_without_the_vllm_engine(configs) -> None:  # type: ignore[no-untyped-def]
    gpu, _, variant = configs
    validate_config(variant)
    assert "deploy.apps:llm_app" in by_builder(gpu)
    assert set(by_builder(variant)) == set(by_builder(gpu)) - {"deploy.apps:llm_app"}
    assert {k: v for k, v in variant.items() if k != "applications"} == {
        k: v for k, v in gpu.items() if k != "applications"
    }  # proxies on every node, same ports and services


def test_placement_is_unchanged_except_gpus_becoming_accelerators(configs) -> None:  # type: ignore[no-untyped-def]
    gpu, _, variant = configs
    shipped = by_builder(gpu)
    engine = shipped["deploy.apps:llm_app"]["args"]["settings"]["decision"]["vllm"]
    for builder, app in by_builder(variant).items():
        (want,) = copy.deepcopy(shipped[builder]["deployments"])
        (got,) = app["deployments"]
        options = want["ray_actor_options"]
        if "num_gpus" in options:
            options.setdefault("resources", {})[ACCELERATOR] = options.pop("num_gpus")
        if builder == "deploy.apps:decision_app":  # the engine's GPUs move to the replicas that now run the model
            options.setdefault("resources", {})[ACCELERATOR] = engine["tensor_parallel_size"]
        if builder == "deploy.apps:retrieval_app":  # Qdrant Edge: one process on the node holding the memory
            del want["autoscaling_config"]
            want["num_replicas"] = 1
            options.setdefault("resources", {})[MEMORY_NODE] = 1
        assert got == want, builder
        assert (app["name"], app["route_prefix"]) == (shipped[builder]["name"], shipped[builder]["route_prefix"])
    for builder in GPU_BUILDERS:
        assert ACCELERATOR in by_builder(variant)[builder]["deployments"][0]["ray_actor_options"]["resources"]


def test_the_models_are_the_offline_ones_and_the_stores_stay_shared(configs, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    _, cpu, variant = configs
    for name in ("REDIS_URL", "ECHO_IMAGE_STORE"):
        monkeypatch.setenv(name, f"/{name.lower()}")
    apps = by_builder(variant)

    def settings(builder: str) -> Any:
        return StageArgs.model_validate(apps[builder]["args"]).echo_settings()

    local = by_builder(cpu)
    for builder, section in (
        ("deploy.apps:decision_app", "decision"),
        ("deploy.apps:embedding_app", "embedding"),
        ("deploy.apps:evidence_app", "evidence"),
    ):
        assert apps[builder]["args"]["settings"][section] == local[builder]["args"]["settings"][section]
    assert settings("deploy.apps:decision_app").decision.backend == "transformers"
    assert settings("deploy.apps:embedding_app").embedding.device == "cpu"
    assert settings("deploy.apps:evidence_app").evidence.device == "cpu"
    retrieval = settings("deploy.apps:retrieval_app").retrieval
    assert (retrieval.engine, retrieval.image_store) == ("edge", "/echo_image_store")
    knowledge = settings("deploy.apps:knowledge_app").knowledge
    assert (knowledge.store, knowledge.redis_url) == ("redis", "/redis_url")  # as shipped: Redis from the environment


def test_one_cpu_worker_can_hold_every_cpu_stage_and_the_gpu_stages_need_fractional_accelerators(configs) -> None:  # type: ignore[no-untyped-def]
    _, _, variant = configs
    cpu = needs(variant, ("deploy.apps:retrieval_app", "deploy.apps:knowledge_app", "deploy.apps:inspector_app"))
    assert cpu == 1 + 1 + 2  # retrieval, knowledge, two Inspector replicas: what the surviving CPU worker must take
    assert needs(variant, GPU_BUILDERS, ACCELERATOR) == 1 + 0.25 + 0.25  # decision, quarter-GPU CLIP and evidence
