"""The KubeRay manifests are consistent with each other and with deploy/multi-node-gpu.yaml (not applied here)."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import ray
import yaml

from deploy.args import ENV_REF
from deploy.launch import RAY_SYSTEM_CONFIG, validate_config

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
KUBERAY = DEPLOY / "kuberay"


def docs(name: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((KUBERAY / name).read_text()) if d]


def one(items: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    (found,) = [d for d in items if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    return found


def pod_specs(rayservice: dict[str, Any]) -> list[dict[str, Any]]:
    cluster = rayservice["spec"]["rayClusterConfig"]
    return [cluster["headGroupSpec"]["template"]["spec"]] + [g["template"]["spec"] for g in cluster["workerGroupSpecs"]]


def test_rayservice_serves_exactly_the_multi_node_config() -> None:
    rs = one(docs("rayservice.yaml"), "RayService")
    embedded = yaml.safe_load(rs["spec"]["serveConfigV2"])
    shipped = yaml.safe_load((DEPLOY / "multi-node-gpu.yaml").read_text())
    assert embedded == shipped, "copy deploy/multi-node-gpu.yaml into serveConfigV2 (indented 4 spaces)"
    validate_config(embedded)
    assert rs["spec"]["rayClusterConfig"]["rayVersion"] == ray.__version__


def test_store_addresses_point_at_the_qdrant_and_redis_services() -> None:
    env = one(docs("rayservice.yaml"), "ConfigMap", "echo-iad-env")["data"]
    for url_var, manifest, scheme in (("QDRANT_URL", "qdrant.yaml", "http"), ("REDIS_URL", "redis.yaml", "redis")):
        url = urlparse(env[url_var])
        items = docs(manifest)
        service = one(items, "Service", url.hostname)
        assert url.scheme == scheme
        assert url.port in {p["port"] for p in service["spec"]["ports"]}
        deploy = one(items, "Deployment", url.hostname)
        labels = deploy["spec"]["template"]["metadata"]["labels"]
        assert service["spec"]["selector"].items() <= labels.items()
        assert deploy["spec"]["selector"]["matchLabels"].items() <= labels.items()
        ports = {p["containerPort"] for c in deploy["spec"]["template"]["spec"]["containers"] for p in c["ports"]}
        assert {p["targetPort"] for p in service["spec"]["ports"]} <= ports
        claims = {v["persistentVolumeClaim"]["claimName"] for v in deploy["spec"]["template"]["spec"]["volumes"]}
        assert claims <= {d["metadata"]["name"] for d in items if d["kind"] == "PersistentVolumeClaim"}


def test_every_ray_pod_gets_the_environment_the_serve_config_needs() -> None:
    items = docs("rayservice.yaml")
    rs = one(items, "RayService")
    env = one(items, "ConfigMap", "echo-iad-env")["data"]
    required = {m.group(1) for m in ENV_REF.finditer(rs["spec"]["serveConfigV2"]) if ":-" not in m.group(0)}
    assert required <= set(env)
    claims = {d["metadata"]["name"] for d in items if d["kind"] == "PersistentVolumeClaim"}
    images = set()
    for spec in pod_specs(rs):
        (container,) = spec["containers"]
        images.add(container["image"])
        assert {"configMapRef": {"name": "echo-iad-env"}} in container["envFrom"]
        mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
        volumes = {v["name"]: v for v in spec["volumes"]}
        assert set(mounts) <= set(volumes)
        pvc_mounts = {n for n in mounts if "persistentVolumeClaim" in volumes[n]}
        assert {volumes[n]["persistentVolumeClaim"]["claimName"] for n in pvc_mounts} <= claims
        assert env["ECHO_IMAGE_STORE"].startswith(mounts["echo-data"])  # the shared image store is mounted
        assert env["ECHO_DECISION_MODEL"].startswith(mounts["echo-models"])
    assert len(images) == 1


def test_every_ray_pod_sends_images_inline_as_a_ray_started_by_serve_ray_does() -> None:
    env = one(docs("rayservice.yaml"), "ConfigMap", "echo-iad-env")["data"]
    inline = RAY_SYSTEM_CONFIG["max_direct_call_object_size"]
    assert int(env["RAY_max_direct_call_object_size"]) == inline  # every Ray pod takes the ConfigMap (above)
    assert f"export RAY_max_direct_call_object_size={inline}" in (DEPLOY / "multi-node-gpu.yaml").read_text()


def test_every_ray_pod_runs_the_default_ingress_as_a_ray_started_by_serve_ray_does() -> None:
    from deploy.launch import DEFAULT_INGRESS, ingress_env

    env = one(docs("rayservice.yaml"), "ConfigMap", "echo-iad-env")["data"]
    ((switch, value),) = ingress_env(DEFAULT_INGRESS).items()
    assert env[switch] == value  # every Ray pod takes the ConfigMap
    assert f"export {switch}={value}" in (DEPLOY / "multi-node-gpu.yaml").read_text()


def test_grpc_proxy_is_exposed_and_gpu_workers_match_their_ray_resources() -> None:
    rs = one(docs("rayservice.yaml"), "RayService")
    grpc_port = yaml.safe_load(rs["spec"]["serveConfigV2"])["grpc_options"]["port"]
    assert grpc_port in {p["port"] for p in rs["spec"]["serveService"]["spec"]["ports"]}
    head = rs["spec"]["rayClusterConfig"]["headGroupSpec"]["template"]["spec"]["containers"][0]
    assert grpc_port in {p["containerPort"] for p in head["ports"]}
    groups = {g["groupName"]: g for g in rs["spec"]["rayClusterConfig"]["workerGroupSpecs"]}
    gpu = groups["gpu"]
    limits = gpu["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert int(gpu["rayStartParams"]["num-gpus"]) == int(limits["nvidia.com/gpu"]) >= 1
    for g in groups.values():
        assert g["minReplicas"] <= g["replicas"] <= g["maxReplicas"]
        cpus = g["template"]["spec"]["containers"][0]["resources"]["limits"]["cpu"]
        assert int(g["rayStartParams"]["num-cpus"]) <= int(cpus)
