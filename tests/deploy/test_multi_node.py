"""A real multi-node Ray cluster on this machine: placement like multi-node-gpu.yaml, every node's proxy, losing nodes.

Four Ray nodes, each in its own network namespace with its own address
(netns_cluster.py): a head that runs only Serve's controller and a proxy (as the
KubeRay head does), two CPU workers, and a "GPU" worker that advertises the
`accelerator` resource in place of GPUs. The config is multi-node-gpu.yaml's test
variant (multinode_config.py): same placement, offline models on CPU, Qdrant Edge
pinned to one CPU worker, knowledge in a real Redis on the bridge.

The tests run in file order on one cluster: placement, every proxy, shared state,
then the GPU worker dies under a Locust load and comes back, then a CPU worker
dies for good. The two drills print one JSON line each with what they measured.
"""

from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from multinode_config import ACCELERATOR, GPU_BUILDERS, MEMORY_NODE, cpu_variant, localize, needs
from netns_cluster import NetnsCluster, NodeSpec, wait_for
from redis_server import RedisServer

from echo.v1 import common_pb2, inspector_pb2, inspector_pb2_grpc, knowledge_pb2, knowledge_pb2_grpc
from services.client.client import build_inspect_request
from services.common.ports import free_port

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]

REPO = Path(__file__).resolve().parents[2]
LINE = "line-mn"
GRPC_PORT = 9000  # the shipped config's port: every node has its own loopback, so every proxy can bind it
DEADLINE_MS = 20_000  # what the load's clients send in each request
CPU_BUILDERS = ("deploy.apps:retrieval_app", "deploy.apps:knowledge_app", "deploy.apps:inspector_app")
STAGE_APPS = ("embedding", "retrieval", "knowledge", "decision", "evidence", "inspector")
INSPECTOR = (("application", "inspector"),)


@dataclass
class MultiNode:
    cluster: NetnsCluster
    config: dict[str, Any]
    dataset: Any  # services.mmad.loader.MMADDataset
    dataset_dir: Path
    redis: RedisServer
    workdir: Path
    knowledge_marker: list[str] = field(default_factory=list)  # set by the shared-state test, read after a node dies

    def inspector(self, node: str, method: str, request: Any, timeout_s: float = 60) -> Any:
        """One Inspector RPC through this node's proxy."""
        with grpc.insecure_channel(self.cluster.proxy(node, GRPC_PORT)) as channel:
            rpc = getattr(inspector_pb2_grpc.InspectorStub(channel), method)
            return rpc(request, metadata=INSPECTOR, timeout=timeout_s)

    def health(self, node: str, app: str = "inspector", timeout_s: float = 10.0) -> str:
        """What grpc.health.v1 Check through this node's proxy says about the application (a status or a code)."""
        with grpc.insecure_channel(self.cluster.proxy(node, GRPC_PORT)) as channel:
            try:
                resp = health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(), timeout=timeout_s, metadata=(("application", app),)
                )
            except grpc.RpcError as e:
                return e.code().name
        return health_pb2.HealthCheckResponse.ServingStatus.Name(resp.status)


def _variant(data_dir: Path, model_cache: Path) -> dict[str, Any]:
    from deploy.launch import read_config

    variant = cpu_variant(
        read_config(REPO / "deploy" / "multi-node-gpu.yaml"), read_config(REPO / "deploy" / "local-cpu.yaml")
    )
    return localize(variant, str(data_dir), str(model_cache), GRPC_PORT)


def _node_specs(config: dict[str, Any]) -> list[NodeSpec]:
    """Node sizes from the config: the GPU worker holds the GPU stages; either CPU worker alone holds the CPU stages."""
    cpu_stages = math.ceil(needs(config, CPU_BUILDERS))
    return [
        NodeSpec("head", 0),  # Serve's controller and a proxy, no replicas
        NodeSpec("cpu-a", cpu_stages, {MEMORY_NODE: 1}),
        NodeSpec("cpu-b", cpu_stages),
        NodeSpec(
            "gpu",
            math.ceil(needs(config, GPU_BUILDERS)),  # exactly the GPU stages' CPUs: CPU stages cannot land there
            {ACCELERATOR: math.ceil(needs(config, GPU_BUILDERS, ACCELERATOR))},
        ),
    ]


def _placed(cluster: NetnsCluster, apps: tuple[str, ...]) -> bool:
    placement = cluster.placement()
    return all(app in placement and all("?" not in nodes for nodes in placement[app].values()) for app in apps)


def _all_running(cluster: NetnsCluster) -> bool:
    apps = cluster.driver.call("apps")
    return set(apps) == set(STAGE_APPS) and all(status == "RUNNING" for status in apps.values())


@pytest.fixture(scope="module")
def multinode(tmp_path_factory: pytest.TempPathFactory, offline_model_cache: Path) -> Iterator[MultiNode]:
    from deploy.launch import DEFAULT_INGRESS, INLINE_ARGS_BYTES, ingress_env, prepare_config
    from services.mmad.loader import load_dataset
    from services.mmad.synth import synthesize

    root = tmp_path_factory.mktemp("multinode")
    dataset_dir = synthesize(root / "dataset", 0, ["round_part"], 6, 4, progress=False)
    config = _variant(root / "data", offline_model_cache)
    with NetnsCluster(_node_specs(config), root / "cluster") as cluster:
        # On the bridge, so every node reaches it; durable, as the config's shared audit log requires.
        redis = RedisServer(free_port(), root, appendfsync="always", host=cluster.bridge_ip)
        redis.start()
        try:
            stores = {"REDIS_URL": redis.url, "ECHO_IMAGE_STORE": str(root / "images")}  # a folder every node mounts
            cluster.env.update(stores)  # every node starts with the store addresses, as docs/cluster.md says
            cluster.env["RAY_max_direct_call_object_size"] = str(INLINE_ARGS_BYTES)  # and images inline
            cluster.env.update(ingress_env(DEFAULT_INGRESS))  # and the ingress the packaged setups start
            config = prepare_config(config, REPO, environ={**os.environ, **stores})
            cluster.start_nodes("head")
            cluster.start_nodes("cpu-a", "cpu-b")
            cluster.driver.call("deploy", config=config)
            # The GPU worker joins once the CPU stages are placed, so none of them can take its CPUs first
            # (Ray keeps CPU-only work off real GPU nodes by itself; a custom resource gets no such care).
            wait_for(lambda: _placed(cluster, ("retrieval", "knowledge", "inspector")), 300, "CPU stages placed", 2)
            cluster.start_nodes("gpu")
            wait_for(lambda: _all_running(cluster), 420, "every application RUNNING", 2)
            mn = MultiNode(cluster, config, load_dataset(dataset_dir), dataset_dir, redis, root)
            for node in cluster.nodes:
                wait_for(lambda node=node: mn.health(node) == "SERVING", 120, f"inspector SERVING through {node}", 1)
            # Onboard the product through one node; the memory lives on cpu-a, the images in the shared folder.
            templates = sorted({t for _, _, t in mn.dataset.templates()})
            resp = mn.inspector(
                "cpu-b",
                "AddNormalImages",
                inspector_pb2.AddNormalImagesRequest(
                    line_id=LINE,
                    dataset="Synthetic",
                    category="round_part",
                    images=[common_pb2.Image(data=mn.dataset.abspath(t).read_bytes()) for t in templates],
                ),
                timeout_s=120,
            )
            assert resp.added == len(templates)
            yield mn
        finally:
            redis.stop()


def _request(mn: MultiNode, qtype: str) -> inspector_pb2.InspectRequest:
    sample, q = next((s, q) for s, q in mn.dataset.questions() if q.type == qtype)
    return build_inspect_request(
        mn.dataset.abspath(sample.image_path).read_bytes(),
        q.text,
        q.options,
        line_id=LINE,
        dataset=sample.dataset,
        category=sample.category,
        question_type=qtype,
    )


def _running_nodes(placement: dict[str, dict[str, list[str]]], app: str) -> list[str]:
    return sorted(placement.get(app, {}).get("RUNNING", []))


def test_decision_lands_only_on_the_gpu_worker_and_cpu_stages_spread_over_the_cpu_workers(multinode: MultiNode) -> None:
    cluster = multinode.cluster
    nodes = {cluster.node_name(n["ip"]): n["resources"] for n in cluster.driver.call("nodes")}
    assert set(nodes) == {"head", "cpu-a", "cpu-b", "gpu"}
    assert [name for name, res in nodes.items() if ACCELERATOR in res] == ["gpu"]
    placement = cluster.placement()
    assert _running_nodes(placement, "decision") == ["gpu"]
    assert _running_nodes(placement, "embedding") == ["gpu"]  # CLIP takes a quarter of a GPU
    assert _running_nodes(placement, "evidence") == ["gpu"]  # the evidence backbone takes a quarter too
    cpu_nodes = {node for app in ("retrieval", "knowledge", "inspector") for node in _running_nodes(placement, app)}
    assert cpu_nodes == {"cpu-a", "cpu-b"}, placement
    assert _running_nodes(placement, "retrieval") == ["cpu-a"]  # Qdrant Edge: the one node that holds the memory
    assert len(_running_nodes(placement, "inspector")) == 2  # min_replicas, as shipped
    assert not any("head" in nodes_ for app in placement.values() for nodes_ in app.values())


def test_every_nodes_proxy_answers_inspect_and_all_give_the_same_answers(multinode: MultiNode) -> None:
    from ray.serve.generated import serve_pb2, serve_pb2_grpc

    requests = [_request(multinode, t) for t in ("Anomaly Detection", "Defect Classification", "Defect Description")]
    seen: dict[str, list[tuple[Any, ...]]] = {}
    for node in multinode.cluster.nodes:
        with grpc.insecure_channel(multinode.cluster.proxy(node, GRPC_PORT)) as channel:
            serve_pb2_grpc.RayServeAPIServiceStub(channel).Healthz(serve_pb2.HealthzRequest(), timeout=10)
            stub = inspector_pb2_grpc.InspectorStub(channel)
            for req in requests:
                t = stub.Inspect(req, metadata=INSPECTOR, timeout=60).trace
                assert not t.degraded, (node, list(t.degraded))
                answer = (t.raw_reply, [r.uri for r in t.references], list(t.knowledge_entry_ids), list(t.experts_used))
                seen.setdefault(node, []).append(answer)
    first = next(iter(seen.values()))
    assert all(answers == first for answers in seen.values()), seen
    assert all(refs for _, refs, _, experts in first if "reference" in experts)  # the shared memory answered


def test_knowledge_written_through_one_node_is_read_through_every_node_from_redis(multinode: MultiNode) -> None:
    cluster = multinode.cluster
    knowledge = (("application", "knowledge"),)

    def entries(node: str) -> dict[str, knowledge_pb2.KnowledgeEntry]:
        with grpc.insecure_channel(cluster.proxy(node, GRPC_PORT)) as channel:
            resp = knowledge_pb2_grpc.KnowledgeStub(channel).ListEntries(
                knowledge_pb2.ListEntriesRequest(dataset="Synthetic"), metadata=knowledge, timeout=30
            )
        return {e.id: e for e in resp.entries}

    entry = entries("cpu-a")["Synthetic/round_part"]
    marker = f"multi-node marker {time.time():.0f}"
    entry.normal = f"{entry.normal} {marker}"
    with grpc.insecure_channel(cluster.proxy("cpu-a", GRPC_PORT)) as channel:
        put = knowledge_pb2_grpc.KnowledgeStub(channel).PutEntry(
            knowledge_pb2.PutEntryRequest(entry=entry), metadata=knowledge, timeout=30
        )
    assert put.version > entry.version
    for node in cluster.nodes:
        got = entries(node)["Synthetic/round_part"]
        assert (got.version, marker in got.normal) == (put.version, True), node
    stored = multinode.redis.client().hgetall("echo:kb:entry:Synthetic/round_part")  # knowledge.redis_prefix
    assert stored["version"] == str(put.version) and marker in stored["data"], "the entry lives in Redis"
    multinode.knowledge_marker.append(marker)


@contextmanager
def locust_load(mn: MultiNode, node: str, request_log: Path) -> Iterator[None]:
    """loadtests/locust/locustfile.py headless against one node's proxy until the block ends; every request logged."""
    with open(mn.workdir / "locust.log", "a") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "locust", "-f", str(REPO / "loadtests" / "locust" / "locustfile.py"), "--headless",
             "-u", "4", "-r", "4", "-t", "900s", "--host", mn.cluster.proxy(node, GRPC_PORT),
             "--application", "inspector", "--data", str(mn.dataset_dir), "--line", LINE,
             "--deadline-ms", str(DEADLINE_MS), "--request-log", str(request_log), "--only-summary"],
            env={**os.environ, "PYTHONPATH": f"{REPO}:{REPO / 'protos'}"}, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            yield
        finally:
            proc.send_signal(signal.SIGTERM)  # Locust stops its users and prints its summary
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


class HealthWatch:
    """grpc.health.v1 Check of an application through one node's proxy, once a second, in the background."""

    def __init__(self, mn: MultiNode, node: str, app: str) -> None:
        self.samples: list[tuple[float, float, str]] = []  # (wall-clock start, seconds, status or code)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(mn, node, app), daemon=True)
        self._thread.start()

    def _run(self, mn: MultiNode, node: str, app: str) -> None:
        while not self._stop.is_set():
            start = time.time()
            status = mn.health(node, app, timeout_s=10)
            self.samples.append((start, time.time() - start, status))
            self._stop.wait(1.0)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def during(self, t0: float, t1: float) -> dict[str, int]:
        return dict(Counter(s for start, _, s in self.samples if t0 <= start < t1))

    def first(self, status: str, after: float) -> float | None:
        return next((start + took for start, took, s in self.samples if start >= after and s == status), None)


def _requests(log: Path) -> list[dict[str, Any]]:
    """The request log the Locust users write (one JSON line per request; a line being written is left out)."""
    lines = log.read_text().split("\n")[:-1] if log.exists() else []  # after the last newline: not complete yet
    return [json.loads(line) for line in lines if line]


def _succeeded_since(log: Path, t: float) -> int:
    return sum(r["start"] >= t and r["code"] == "OK" for r in _requests(log))


def _shape(details: str) -> str:
    """A failure message with its numbers and ids blanked, so equal causes count together."""
    return re.sub(r"[0-9a-f]{16,}|\d+(\.\d+)?", "#", details)[:160]


def _report(drill: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    with capsys.disabled():
        print("\n" + json.dumps(drill), flush=True)


def test_losing_the_gpu_worker_under_load_gives_unavailable_naming_the_stage_and_recovers(
    multinode: MultiNode, capsys: pytest.CaptureFixture[str]
) -> None:
    cluster = multinode.cluster
    log = multinode.workdir / "gpu-drill-requests.jsonl"
    inspector_health = HealthWatch(multinode, "cpu-a", "inspector")
    decision_health = HealthWatch(multinode, "cpu-a", "decision")
    try:
        with locust_load(multinode, "cpu-a", log):
            time.sleep(15)  # the load runs on the whole cluster first
            killed_at = cluster.kill_raylet("gpu")
            wait_for(lambda: cluster.nodes["gpu"].ip not in cluster.alive_ips(), 120, "Ray marks the GPU node dead", 1)
            dead_at = time.time()
            time.sleep(20)  # clients keep asking while the node is gone
            left = cluster.nodes["gpu"].processes()
            cluster.kill_node("gpu")  # the machine is gone; a new one starts with the same address
            cluster.start_nodes("gpu")
            back_at = time.time()
            wait_for(lambda: _running_nodes(cluster.placement(), "decision") == ["gpu"], 300, "decision on gpu", 1)
            serving_at = wait_for(lambda: inspector_health.first("SERVING", back_at), 120, "inspector SERVING", 1)
            wait_for(lambda: _succeeded_since(log, serving_at) >= 8, 180, "8 inspections after recovery", 1)
    finally:
        inspector_health.stop()
        decision_health.stop()
    done_at = time.time()
    requests = _requests(log)
    gone = [r for r in requests if killed_at <= r["start"] < back_at]
    failed = [r for r in requests if r["code"] != "OK"]
    recovered_at = min((r["start"] + r["seconds"] for r in requests if r["code"] == "OK" and r["start"] >= dead_at),
                       default=None)  # fmt: skip
    after = [r for r in requests if recovered_at is not None and r["start"] >= recovered_at]
    # warm: the returned replica has answered an inspection that it served from start to end
    warm_at = min((r["start"] + r["seconds"] for r in after if r["code"] == "OK"), default=None)
    after_warm = [r for r in after if warm_at is not None and r["start"] >= warm_at]
    drill = {
        "drill": "gpu_worker_loss",
        "load": "locust -u 4 against cpu-a's proxy",
        "deadline_s": DEADLINE_MS / 1000,
        "requests_before": sum(r["start"] + r["seconds"] < killed_at for r in requests),
        "errors_before": sum(r["start"] + r["seconds"] < killed_at and r["code"] != "OK" for r in requests),
        "in_flight_at_kill_failed": sum(r in failed and r["start"] < killed_at for r in requests),
        "node_dead_after_s": round(dead_at - killed_at, 1),
        "gone_s": round(back_at - killed_at, 1),
        "requests_while_gone": len(gone),
        "error_rate_while_gone": round(sum(r["code"] != "OK" for r in gone) / max(1, len(gone)), 3),
        "client_saw": dict(Counter(f"{r['code']}: {_shape(r['details'])}" for r in failed).most_common(6)),
        "slowest_failure_s": round(max((r["seconds"] for r in failed), default=0.0), 2),
        "slowest_request_s": round(max(r["seconds"] for r in requests), 2),
        "inspector_health_while_gone": inspector_health.during(dead_at, back_at),
        "decision_health_while_gone": decision_health.during(dead_at, back_at),
        "processes_left_after_raylet_kill": left,
        "inspections_succeed_after_return_s": None if recovered_at is None else round(recovered_at - back_at, 1),
        "inspector_serving_after_return_s": round(inspector_health.first("SERVING", back_at) - back_at, 1),
        "requests_after_recovery": len(after),
        "errors_after_recovery": sum(r["code"] != "OK" for r in after),
        "client_saw_after_recovery": dict(
            Counter(f"{r['code']}: {_shape(r['details'])}" for r in after if r["code"] != "OK").most_common(4)
        ),
        "requests_after_warm": len(after_warm),
        "errors_after_warm": sum(r["code"] != "OK" for r in after_warm),
        "drill_s": round(done_at - killed_at, 1),
    }
    _report(drill, capsys)
    assert drill["requests_before"] > 0 and drill["errors_before"] == 0
    assert drill["error_rate_while_gone"] > 0.5, "clients kept succeeding with the decision stage gone"
    for r in failed:  # while the node is gone: UNAVAILABLE naming the stage, never a hang
        if r["code"] == "RESOURCE_EXHAUSTED":  # calls piling up behind the gone stage: the gateway sheds load at once
            assert r["details"].startswith("gateway: over capacity"), r
        elif r["start"] + r["seconds"] < back_at:
            assert r["code"] == "UNAVAILABLE" and r["details"].startswith("decision stage: UNAVAILABLE"), r
        else:  # once it is back the stage answers again, slowly at first: a call may use up its deadline
            assert r["code"] in ("UNAVAILABLE", "DEADLINE_EXCEEDED") and r["details"].startswith("decision stage"), r
    assert drill["slowest_request_s"] <= DEADLINE_MS / 1000 + 1.0, "a request outlived its deadline"
    assert drill["inspector_health_while_gone"].get("NOT_SERVING"), drill["inspector_health_while_gone"]
    assert recovered_at is not None and recovered_at > back_at  # and 8 inspections succeeded after (waited above)


def test_losing_a_cpu_worker_reschedules_its_replicas_on_the_other_within_the_autoscaling_bounds(
    multinode: MultiNode, capsys: pytest.CaptureFixture[str]
) -> None:
    cluster = multinode.cluster
    before = cluster.placement()
    moved = {app: nodes.count("cpu-b") for app in STAGE_APPS if (nodes := _running_nodes(before, app))}
    moved = {app: n for app, n in moved.items() if n}
    assert moved, f"cpu-b hosts no replica: {before}"

    def settled() -> dict[str, dict[str, list[str]]] | None:
        placement = cluster.placement()
        running = {app: _running_nodes(placement, app) for app in STAGE_APPS}
        on_cpu_a = all(running[app] == ["cpu-a"] * len(_running_nodes(before, app)) for app in moved)
        return placement if on_cpu_a and _all_running(cluster) else None

    log = multinode.workdir / "cpu-drill-requests.jsonl"
    with locust_load(multinode, "cpu-a", log):  # clients of the surviving node's proxy
        time.sleep(10)
        killed_at = cluster.kill_raylet("cpu-b")
        cluster.kill_node("cpu-b")  # the machine is gone for good
        after = wait_for(settled, 300, "cpu-b's replicas running on cpu-a", 1)
        rescheduled_at = time.time()
        wait_for(lambda: _succeeded_since(log, rescheduled_at) >= 8, 180, "8 inspections after rescheduling", 1)
    requests = _requests(log)
    during = [r for r in requests if r["start"] + r["seconds"] >= killed_at and r["start"] < rescheduled_at]
    settled_requests = [r for r in requests if r["start"] >= rescheduled_at]
    resp = multinode.inspector("cpu-a", "Inspect", _request(multinode, "Defect Classification"))
    assert resp.answer and not resp.trace.degraded, list(resp.trace.degraded)

    bounds = {}
    for app in multinode.config["applications"]:
        (dep,) = app["deployments"]
        scaling = dep.get("autoscaling_config") or {
            "min_replicas": dep["num_replicas"],
            "max_replicas": dep["num_replicas"],
        }
        running = len(_running_nodes(after, app["name"]))
        bounds[app["name"]] = [scaling["min_replicas"], running, scaling["max_replicas"]]
        assert scaling["min_replicas"] <= running <= scaling["max_replicas"], app["name"]
    knowledge = (("application", "knowledge"),)
    with grpc.insecure_channel(cluster.proxy("cpu-a", GRPC_PORT)) as channel:
        listed = knowledge_pb2_grpc.KnowledgeStub(channel).ListEntries(
            knowledge_pb2.ListEntriesRequest(dataset="Synthetic"), metadata=knowledge, timeout=30
        )
    kept = all(
        m in {e.id: e for e in listed.entries}["Synthetic/round_part"].normal for m in multinode.knowledge_marker
    )
    drill = {
        "drill": "cpu_worker_loss",
        "moved_replicas": moved,
        "rescheduled_s": round(rescheduled_at - killed_at, 1),
        "replicas_min_running_max": bounds,
        "placement_after": {app: _running_nodes(after, app) for app in STAGE_APPS},
        "knowledge_kept_through_redis": kept,
        "requests_until_rescheduled": len(during),
        "client_saw_until_rescheduled": dict(
            Counter(f"{r['code']}: {_shape(r['details'])}" for r in during if r["code"] != "OK").most_common(6)
        ),
        "requests_after": len(settled_requests),
        "errors_after": sum(r["code"] != "OK" for r in settled_requests),
    }
    _report(drill, capsys)
    assert kept
    # Inspections through the surviving node succeed again (8 of them, waited for above); failures are reported.
