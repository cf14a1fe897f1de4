"""One local Ray (2 CPUs, the default ingress) running deploy/local-cpu.yaml, offline models, per test module."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from otlp_collector import OtlpCollector
from ray_ingress import environment, ingress_environment

from services.common.ports import free_port

REPO = Path(__file__).resolve().parents[2]
LINE = "line-1"


def local_config(
    data_dir: Path, grpc_port: int, http_port: int, model_cache: Path | None = None, otlp_endpoint: str = ""
) -> dict[str, Any]:
    """deploy/local-cpu.yaml as shipped, on free ports and a private data_dir (and the session's model cache).

    With otlp_endpoint, every replica traces to it.
    """
    from deploy.launch import prepare_config, read_config

    config = read_config(REPO / "deploy" / "local-cpu.yaml")
    config["grpc_options"]["port"] = grpc_port
    config["http_options"]["port"] = http_port
    for app in config["applications"]:
        app["args"]["settings"]["data_dir"] = str(data_dir)
        if otlp_endpoint:
            app["args"]["settings"]["telemetry"] = {"tracing": True, "otlp_endpoint": otlp_endpoint}
        if app["import_path"] == "deploy.apps:inspector_app":
            app["args"]["proxy_address"] = f"127.0.0.1:{grpc_port}"
        if app["import_path"] == "deploy.apps:evidence_app":  # small input: 2 CPUs hold every replica
            app["args"]["settings"]["evidence"]["input_size"] = 160
        if app["import_path"] == "deploy.apps:decision_app" and model_cache is not None:
            app["args"]["settings"]["decision"]["model_cache"] = str(model_cache)
    return prepare_config(config, REPO)


@dataclass
class Cluster:
    config: dict[str, Any]
    address: str  # the gRPC proxy
    metrics_url: str
    dataset: Any  # services.mmad.loader.MMADDataset
    channel: grpc.Channel
    collector: OtlpCollector  # receives the replicas' spans
    line: str = LINE  # the production line the fixture onboarded

    def metadata(self, app: str) -> tuple[tuple[str, str], ...]:
        return (("application", app),)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, offline_model_cache: Path) -> Iterator[Cluster]:
    import ray
    from ray import serve

    from deploy.launch import DEFAULT_INGRESS, RAY_SYSTEM_CONFIG, deploy, wait_until_healthy
    from echo.v1 import common_pb2, inspector_pb2, inspector_pb2_grpc
    from services.mmad.loader import load_dataset
    from services.mmad.synth import synthesize

    root = tmp_path_factory.mktemp("ray-cluster")
    dataset = load_dataset(synthesize(root / "dataset", 0, ["round_part"], 8, 4, progress=False))
    grpc_port, http_port, metrics_port = free_port(), free_port(), free_port()
    collector = OtlpCollector().__enter__()
    config = local_config(root / "data", grpc_port, http_port, offline_model_cache, collector.endpoint)

    if ray.is_initialized():  # another module's session: this one needs its own 2-CPU instance
        ray.shutdown()
    ingress = ExitStack()
    ingress.enter_context(environment(ingress_environment(DEFAULT_INGRESS)))  # as `echo-iad serve --ray` starts it
    ray.init(
        num_cpus=2,
        include_dashboard=True,  # Serve's REST API, through which deploy() hands over the config
        dashboard_host="127.0.0.1",
        dashboard_port=free_port(),
        namespace="serve",
        _metrics_export_port=metrics_port,
        _system_config={**RAY_SYSTEM_CONFIG, "metrics_report_interval_ms": 1000},  # as `serve --ray` starts it
    )
    channel = grpc.insecure_channel(f"127.0.0.1:{grpc_port}")
    try:
        deploy(config)
        wait_until_healthy(config, timeout_s=240)
        # Onboard the product through the one ingest path: Inspector -> Embedding -> Retrieval, and -> Evidence.
        templates = sorted({t for _, _, t in dataset.templates()})
        resp = inspector_pb2_grpc.InspectorStub(channel).AddNormalImages(
            inspector_pb2.AddNormalImagesRequest(
                line_id=LINE,
                dataset="Synthetic",
                category="round_part",
                images=[common_pb2.Image(data=dataset.abspath(t).read_bytes()) for t in templates],
            ),
            metadata=(("application", "inspector"),),
            timeout=120,
        )
        assert resp.added == len(templates)
        yield Cluster(
            config, f"127.0.0.1:{grpc_port}", f"http://127.0.0.1:{metrics_port}/metrics", dataset, channel, collector
        )
    finally:
        collector.__exit__()
        channel.close()
        serve.shutdown()
        ray.shutdown()
        ingress.close()
        time.sleep(0.5)
