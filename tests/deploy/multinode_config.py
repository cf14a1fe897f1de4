"""The test variant of deploy/multi-node-gpu.yaml, generated from it so the two cannot drift.

Placement (replica counts, autoscaling, queue limits, CPUs) stays as shipped; what changes:
- every `num_gpus` becomes the custom resource `accelerator`, which the "GPU" worker advertises;
- vLLM cannot run here, so the `echo-llm` engine app is dropped and the Decision app runs the model
  itself with the offline transformers model on CPU; its replicas take the engine's GPUs
  (`tensor_parallel_size` accelerators each), so the decision stage still lands only on GPU nodes;
- the models are the offline ones of deploy/local-cpu.yaml (embedding and decision settings);
- no Qdrant server binary exists here: retrieval uses Qdrant Edge, which lives in one process, so it
  runs one replica pinned to the node that advertises `qdrant_edge` (instead of autoscaling 1..4
  against a shared Qdrant server).
"""

from __future__ import annotations

import copy
from typing import Any

ACCELERATOR = "accelerator"  # stands in for a GPU
MEMORY_NODE = "qdrant_edge"  # the one node that holds the Qdrant Edge memory
GPU_BUILDERS = ("deploy.apps:decision_app", "deploy.apps:embedding_app", "deploy.apps:evidence_app")


def _apps(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {a["import_path"]: a for a in config["applications"]}


def _options(app: dict[str, Any]) -> dict[str, Any]:
    (deployment,) = app["deployments"]
    return deployment["ray_actor_options"]


def cpu_variant(gpu_config: dict[str, Any], cpu_config: dict[str, Any]) -> dict[str, Any]:
    """multi-node-gpu.yaml (`gpu_config`) placed on CPU nodes, with local-cpu.yaml's (`cpu_config`) models."""
    out = copy.deepcopy(gpu_config)
    apps = _apps(out)
    local = _apps(cpu_config)
    engine = apps.pop("deploy.apps:llm_app")
    gpus_per_engine = engine["args"]["settings"]["decision"]["vllm"]["tensor_parallel_size"]
    out["applications"] = [a for a in out["applications"] if a is not engine]
    for app in out["applications"]:
        options = _options(app)
        if "num_gpus" in options:
            options.setdefault("resources", {})[ACCELERATOR] = options.pop("num_gpus")

    for builder, section in (
        ("deploy.apps:decision_app", "decision"),
        ("deploy.apps:embedding_app", "embedding"),
        ("deploy.apps:evidence_app", "evidence"),
    ):
        apps[builder]["args"]["settings"][section] = copy.deepcopy(local[builder]["args"]["settings"][section])
    _options(apps["deploy.apps:decision_app"]).setdefault("resources", {})[ACCELERATOR] = gpus_per_engine

    retrieval = apps["deploy.apps:retrieval_app"]
    settings = retrieval["args"]["settings"]
    image_store = settings["retrieval"]["image_store"]
    local_settings = local["deploy.apps:retrieval_app"]["args"]["settings"]
    settings["embedding"] = copy.deepcopy(local_settings["embedding"])
    settings["retrieval"] = {**copy.deepcopy(local_settings["retrieval"]), "image_store": image_store}
    (deployment,) = retrieval["deployments"]
    del deployment["autoscaling_config"]
    deployment["num_replicas"] = 1
    deployment["ray_actor_options"].setdefault("resources", {})[MEMORY_NODE] = 1
    return out


def needs(config: dict[str, Any], builders: tuple[str, ...], resource: str = "num_cpus") -> float:
    """What the given applications' smallest replica sets take of one resource (num_cpus or a custom one)."""
    total = 0.0
    for app in config["applications"]:
        if app["import_path"] not in builders:
            continue
        (deployment,) = app["deployments"]
        replicas = deployment.get("num_replicas") or deployment["autoscaling_config"]["min_replicas"]
        options = deployment["ray_actor_options"]
        per_replica = options.get(resource, 0) if resource == "num_cpus" else options.get("resources", {}).get(resource)
        total += replicas * (per_replica or 0)
    return total


def localize(config: dict[str, Any], data_dir: str, model_cache: str, grpc_port: int = 9000) -> dict[str, Any]:
    """The variant pointed at this test's shared folder and offline model cache."""
    out = copy.deepcopy(config)
    out["grpc_options"]["port"] = grpc_port
    for app in out["applications"]:
        app["args"].setdefault("settings", {})["data_dir"] = data_dir
        if app["import_path"] == "deploy.apps:decision_app":
            app["args"]["settings"]["decision"]["model_cache"] = model_cache
        if app["import_path"] == "deploy.apps:inspector_app":
            app["args"]["proxy_address"] = f"127.0.0.1:{grpc_port}"
    return out
