"""What Echo-IAD's cluster mode costs over a bare Ray Serve app of the same fan-out shape, same machine, same run.

    python -m loadtests.bench.ray_overhead [--quick] [--clients 16] [--seconds 12] [--ingress both]

Both ingresses in one run (`--ingress both`, the default): Serve's Python gRPC proxy, then its HAProxy mode
(RAY_SERVE_ENABLE_HA_PROXY=1: HAProxy in front, each application's ingress replicas serving gRPC themselves),
each in a fresh local Ray session of its own (Serve reads the switch when its processes start; a child
process per ingress). Each session (2 CPUs by default), started as `echo-iad serve --ray` starts one
(images inline, deploy/launch.py), runs both apps, each application with one replica:
- bare: a no-op gateway app that calls no-op Embedding -> Retrieval (and Knowledge beside them when the
  question type asks), then Decision, each a separate Serve application reached over gRPC through the
  same proxy (`application` metadata, a grpc.aio channel inside the replica), with the same payloads
  (the image bytes to embedding and decision, a vector to retrieval).
- echo: deploy/local-cpu.yaml with the cheapest backends (tiny random CLIP, Qdrant Edge, knowledge
  files, the `random` decision backend).

Two shapes: "reference" (Anomaly Detection: embedding, retrieval, decision) and "reference+knowledge"
(Defect Classification: the same plus knowledge beside them). Each request switches its experts to exactly
its shape's (the product map also gives Anomaly Detection the evidence expert, which the bare app lacks),
and the first answer is checked for them. For each shape, 1 client then --clients closed-loop gRPC
clients call the Inspector (or the bare gateway) through the proxy, bare and echo interleaved. Echo does
real work, so its overhead is e2e minus the stage work on the critical path, from each response's trace,
counted as bench_gateway counts it (the models, the search, decoding and resizing, the audit trail's
durable write): max(embedding.preprocess + embedding + retrieval, knowledge) + decision.preprocess +
decision + audit. `overhead_with_audit_*` counts the audit write as overhead too.
CPU milliseconds per request of every process (the ingress: Serve's proxy, or haproxy and its manager;
the raylet, each application's replicas, the clients), net of their idle background, show where the time
goes; ingress_cpu_ratio compares the ingress's cost per request, the part of Ray Serve the two sides share.
What a user pays for the orchestration: `orchestration_cpu_ms`, Echo-IAD's server CPU per request (every
process but the clients) minus the stages' own compute from the trace (every stage's compute_ms, branches
summed: the models, the search, decoding and resizing; the audit write is not counted as stage work, its
fsync is no CPU), against the bare app's server CPU per request (its ingress and hops; its stages do
nothing). The stages' compute is taken from the single-client phase, where their compute time is their CPU
time (under load the trace's compute time also holds waits for the CPU and for a stage's threads).

Goals per shape: overhead p50 <= 1.2x the bare app's p50 at --clients and at 1 client, and
orchestration_cpu_ms <= 1.2x the bare app's server CPU per request (headline: "reference").
Anchor (docs/design.md §5, 2-core machine): a bare two-way fan-out had p50 8.9 ms and 155 req/s at 16 clients.
Prints one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from ray import serve

from deploy.launch import ingress_env
from echo.v1 import (
    common_pb2,
    decision_pb2,
    embedding_pb2,
    inspector_pb2,
    inspector_pb2_grpc,
    knowledge_pb2,
    retrieval_pb2,
)
from loadtests.kit.bench import REFERENCE_BRANCH, SERIAL, critical_compute_ms  # one definition of stage work
from services.common.percentiles import percentile
from services.common.ports import free_port

REPO = Path(__file__).resolve().parents[2]

LINE = "bench-line"
SHAPES = {"reference": "Anomaly Detection", "reference+knowledge": "Defect Classification"}
WITH_KNOWLEDGE = {common_pb2.DEFECT_CLASSIFICATION, common_pb2.DEFECT_DESCRIPTION}
BARE = {s: f"bare-{s}" for s in ("embedding", "retrieval", "knowledge", "decision", "inspector")}
INGRESSES = ("proxy", "haproxy")
INGRESS_PROCESSES = ("proxy", "haproxy", "haproxy_manager")
"""CPU keys of the ingress: Serve's Python proxy (in HAProxy mode, the head's fallback proxy), the haproxy
processes, and the actor that writes their config."""
HAPROXY_SIDE_PORTS = (
    "RAY_SERVE_HAPROXY_STATS_PORT",  # 8404
    "RAY_SERVE_HAPROXY_METRICS_PORT",  # 9101
    "RAY_SERVE_FALLBACK_PROXY_GRPC_PORT",  # 9500
    "RAY_SERVE_FALLBACK_PROXY_HTTP_PORT",  # 8500
)
STAGE_WORK = REFERENCE_BRANCH | SERIAL | {"knowledge", "evidence"}
"""Trace stages whose compute_ms is a stage's own work (the audit write and `total` are not)."""


@serve.deployment(max_ongoing_requests=64, ray_actor_options={"num_cpus": 0})
class NoOpStage:
    """Every stage RPC the gateway makes, answering at once with a small valid response."""

    async def EmbedImages(self, request: Any, grpc_context: Any = None) -> Any:
        return embedding_pb2.EmbedImagesResponse(
            embeddings=[common_pb2.Vector(values=[0.0] * 64)], dim=64, model_id="noop"
        )

    async def Search(self, request: Any, grpc_context: Any = None) -> Any:
        return retrieval_pb2.SearchResponse(hits=[common_pb2.Reference(uri="/noop.png", score=1.0)])

    async def GetContext(self, request: Any, grpc_context: Any = None) -> Any:
        return knowledge_pb2.GetContextResponse(text="noop knowledge")

    async def Decide(self, request: Any, grpc_context: Any = None) -> Any:
        return decision_pb2.DecideResponse(answer="A", model_id="noop")


@serve.deployment(max_ongoing_requests=64, ray_actor_options={"num_cpus": 0})
class NoOpGateway:
    """The Inspector's fan-out (reference; knowledge beside it when the question type asks), nothing else."""

    def __init__(self, proxy: str) -> None:
        self.proxy = proxy
        self.channel: grpc.aio.Channel | None = None

    def _call(self, app: str, service: str, method: str, request: Any, response_type: Any) -> Any:
        assert self.channel is not None
        rpc = self.channel.unary_unary(
            f"/echo.v1.{service}/{method}",
            request_serializer=type(request).SerializeToString,
            response_deserializer=response_type.FromString,
        )
        return rpc(request, timeout=30, metadata=(("application", BARE[app]),))

    async def Inspect(self, request: Any, grpc_context: Any = None) -> Any:
        if self.channel is None:
            self.channel = grpc.aio.insecure_channel(self.proxy)
        data = request.image.data

        async def reference() -> Any:
            emb = await self._call(
                "embedding",
                "Embedding",
                "EmbedImages",
                embedding_pb2.EmbedImagesRequest(images=[common_pb2.Image(data=data)]),
                embedding_pb2.EmbedImagesResponse,
            )
            return await self._call(
                "retrieval",
                "Retrieval",
                "Search",
                retrieval_pb2.SearchRequest(vector=emb.embeddings[0].values, line_id=request.line_id, k=1),
                retrieval_pb2.SearchResponse,
            )

        async def knowledge() -> Any:
            if request.question.type not in WITH_KNOWLEDGE:
                return knowledge_pb2.GetContextResponse()
            return await self._call(
                "knowledge",
                "Knowledge",
                "GetContext",
                knowledge_pb2.GetContextRequest(category=request.category, question=request.question),
                knowledge_pb2.GetContextResponse,
            )

        hits, kn = await asyncio.gather(reference(), knowledge())
        decided = await self._call(
            "decision",
            "Decision",
            "Decide",
            decision_pb2.DecideRequest(
                query_image=common_pb2.Image(data=data),
                reference_images=[common_pb2.Image(uri=h.uri) for h in hits.hits],
                knowledge=kn.text,
                question=request.question,
            ),
            decision_pb2.DecideResponse,
        )
        return inspector_pb2.InspectResponse(answer=decided.answer)


def echo_config(data_dir: Path, grpc_port: int, http_port: int) -> dict[str, Any]:
    """deploy/local-cpu.yaml with the cheapest backends and one replica per application."""
    from deploy.launch import prepare_config, read_config

    config = read_config(REPO / "deploy" / "local-cpu.yaml")
    config["grpc_options"]["port"] = grpc_port
    config["http_options"]["port"] = http_port
    for app in config["applications"]:
        app["args"]["settings"]["data_dir"] = str(data_dir)
        dep = app["deployments"][0]
        dep.pop("autoscaling_config", None)
        dep["num_replicas"] = 1
        if app["name"] == "decision":
            app["args"]["settings"]["decision"] = {"backend": "random"}
        if app["name"] == "inspector":
            app["args"]["proxy_address"] = f"127.0.0.1:{grpc_port}"
    return prepare_config(config, REPO)


def audit_ms(resp: inspector_pb2.InspectResponse) -> float:
    return sum(t.compute_ms for t in resp.trace.timings if t.stage == "audit")


def stage_work_ms(resp: inspector_pb2.InspectResponse) -> float:
    """Every stage's own compute for this request, parallel branches summed (what the CPUs spent on them)."""
    return sum(t.compute_ms for t in resp.trace.timings if t.stage in STAGE_WORK)


def check_shape(resp: inspector_pb2.InspectResponse, shape: str) -> None:
    """Echo ran exactly the experts the bare app mimics (a changed product map must not change the shape)."""
    used = {e for e in resp.trace.experts_used if e != "decision"}
    if used != set(shape.split("+")):
        raise SystemExit(f"{shape}: the Inspector ran {sorted(used)}, not the shape's experts")


@dataclass
class Samples:
    """Per-request latency and stage compute of one side, over every round."""

    latency_ms: list[float] = field(default_factory=list)
    compute_ms: list[float] = field(default_factory=list)
    audit_ms: list[float] = field(default_factory=list)
    work_ms: list[float] = field(default_factory=list)  # every stage's compute, branches summed
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0
    cpu_s: dict[str, float] = field(default_factory=dict)  # CPU seconds by process (proxy, each app, clients)

    def summary(self, with_compute: bool) -> dict[str, Any]:
        def pct(xs: list[float], q: int) -> float:
            return round(percentile(xs, q), 2)

        out: dict[str, Any] = {
            "n": len(self.latency_ms),
            "errors": len(self.errors),
            "rps": round(len(self.latency_ms) / self.seconds, 1),
            "p50_ms": pct(self.latency_ms, 50),
            "p99_ms": pct(self.latency_ms, 99),
        }
        n = max(1, len(self.latency_ms))
        out["cpu_ms_per_request"] = {k: round(v * 1000 / n, 2) for k, v in sorted(self.cpu_s.items())}
        out["ingress_cpu_ms"] = round(sum(v for k, v in self.cpu_s.items() if k in INGRESS_PROCESSES) * 1000 / n, 2)
        out["server_cpu_ms"] = round(sum(v for k, v in self.cpu_s.items() if k != "clients") * 1000 / n, 2)
        if with_compute:
            out["stage_work_ms"] = round(sum(self.work_ms) / n, 2)
            with_audit = [lat - c for lat, c in zip(self.latency_ms, self.compute_ms, strict=True)]
            overhead = [o - a for o, a in zip(with_audit, self.audit_ms, strict=True)]
            out |= {
                "compute_p50_ms": pct(self.compute_ms, 50),
                "audit_p50_ms": pct(self.audit_ms, 50),
                "overhead_p50_ms": pct(overhead, 50),
                "overhead_p99_ms": pct(overhead, 99),
                "overhead_with_audit_p50_ms": pct(with_audit, 50),
            }
        return out


async def load(
    address: str, app: str, request: inspector_pb2.InspectRequest, clients: int, seconds: float, into: Samples
) -> None:
    """Closed-loop clients for `seconds` through the proxy; appends to `into`."""
    async with grpc.aio.insecure_channel(address) as channel:
        stub = inspector_pb2_grpc.InspectorStub(channel)
        md = (("application", app),)
        for _ in range(clients):  # warm every client's path
            await stub.Inspect(request, metadata=md, timeout=60)
        stop_at = time.perf_counter() + seconds

        async def client() -> None:
            while time.perf_counter() < stop_at:
                t0 = time.perf_counter()
                try:
                    resp = await stub.Inspect(request, metadata=md, timeout=60)
                except grpc.aio.AioRpcError as e:
                    into.errors.append(f"{e.code().name}: {e.details()}")
                    continue
                into.latency_ms.append((time.perf_counter() - t0) * 1000.0)
                into.compute_ms.append(critical_compute_ms(resp.trace.timings))
                into.audit_ms.append(audit_ms(resp))
                into.work_ms.append(stage_work_ms(resp))

        cpu_before = cpu_by_process()
        start = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(clients)))
        into.seconds += time.perf_counter() - start
        for key, value in cpu_by_process().items():
            into.cpu_s[key] = into.cpu_s.get(key, 0.0) + value - cpu_before.get(key, 0.0)


def cpu_by_process() -> dict[str, float]:
    """CPU seconds so far of the ingress, the raylet, each application's replicas, and this process (the clients)."""
    import psutil

    out: dict[str, float] = {}
    for proc in psutil.process_iter(["pid", "cmdline", "cpu_times"]):
        cmd = (proc.info["cmdline"] or [""])[0]
        if proc.info["pid"] == os.getpid():
            key = "clients"
        elif cmd.startswith("ray::ServeReplica:"):
            key = cmd.split(":")[3]
        elif cmd.startswith("ray::ProxyActor"):
            key = "proxy"
        elif cmd.startswith("ray::HAProxyManager"):
            key = "haproxy_manager"
        elif os.path.basename(cmd) == "haproxy":
            key = "haproxy"  # the worker, and any old one still finishing after a reload
        elif os.path.basename(cmd) == "raylet":
            key = "raylet"  # the object store's traffic (call arguments too big to go inline)
        else:
            continue
        times = proc.info["cpu_times"]
        if times is not None:
            out[key] = out.get(key, 0.0) + times.user + times.system
    return out


def idle_cpu_rates(seconds: float = 3.0) -> dict[str, float]:
    """Background CPU per second of each process (health checks, metrics, long polls), to net out of the loads."""
    before = cpu_by_process()
    time.sleep(seconds)
    return {k: max(0.0, v - before.get(k, 0.0)) / seconds for k, v in cpu_by_process().items()}


def compare(bare_samples: Samples, echo_samples: Samples, idle: dict[str, float]) -> dict[str, Any]:
    for name, side in (("bare", bare_samples), ("echo", echo_samples)):
        if side.errors:
            raise SystemExit(f"{name}: {len(side.errors)} requests failed, first: {side.errors[0]}")
        side.cpu_s = {k: max(0.0, v - idle.get(k, 0.0) * side.seconds) for k, v in side.cpu_s.items()}
        shared = (*INGRESS_PROCESSES, "raylet", "clients")
        mine = {k for k in side.cpu_s if k in shared or (name == "bare") == k.startswith("bare-")}
        side.cpu_s = {k: v for k, v in side.cpu_s.items() if k in mine}  # the other side's replicas are idle
    bare, echo = bare_samples.summary(with_compute=False), echo_samples.summary(with_compute=True)
    return {
        "bare": bare,
        "echo": echo,
        "overhead_ratio_p50": round(echo["overhead_p50_ms"] / bare["p50_ms"], 3),
        "overhead_with_audit_ratio_p50": round(echo["overhead_with_audit_p50_ms"] / bare["p50_ms"], 3),
        "e2e_ratio_p50": round(echo["p50_ms"] / bare["p50_ms"], 3),
        "rps_ratio": round(echo["rps"] / bare["rps"], 3),
        "ingress_cpu_ratio": round(echo["ingress_cpu_ms"] / max(bare["ingress_cpu_ms"], 0.01), 3),
    }


def add_orchestration(phase: dict[str, Any], stage_work_ms: float) -> None:
    """Echo-IAD's server CPU per request beyond the stages' own work, against the bare app's server CPU.

    stage_work_ms comes from the single-client phase, where a stage's compute time is its CPU time; under
    load the trace's compute time also holds waits for the CPU and for the stage's threads.
    """
    orchestration = round(phase["echo"]["server_cpu_ms"] - stage_work_ms, 2)
    phase["orchestration_cpu_ms"] = orchestration
    phase["orchestration_cpu_ratio"] = round(orchestration / max(phase["bare"]["server_cpu_ms"], 0.01), 3)


def run_ingress(args: argparse.Namespace, ingress: str) -> dict[str, Any]:
    """Both apps, both shapes, 1 and --clients clients, behind one ingress, in a local Ray session of its own."""
    from deploy.launch import RAY_SYSTEM_CONFIG, deploy, wait_until_healthy

    os.environ.update(ingress_env(ingress))  # before Ray starts: its processes read the switch at import
    for name in HAPROXY_SIDE_PORTS:
        os.environ.setdefault(name, str(free_port()))  # their fixed defaults would collide with a neighbour's
    import ray

    from services.common.enums import QUESTION_TYPE_ENUM
    from services.mmad.loader import load_dataset
    from services.mmad.synth import synthesize

    seconds = 4.0 if args.quick else args.seconds
    work = Path(tempfile.mkdtemp(prefix="bench-ray-"))
    dataset = load_dataset(synthesize(work / "dataset", 0, ["round_part"], 4, 4, progress=False))

    def request_for(qtype: str) -> inspector_pb2.InspectRequest:
        sample, q = next((s, q) for s, q in dataset.questions() if q.type == qtype)
        return inspector_pb2.InspectRequest(
            line_id=LINE,
            dataset=sample.dataset,
            category=sample.category,
            image=common_pb2.Image(data=dataset.abspath(sample.image_path).read_bytes()),
            question=common_pb2.Question(text=q.text, options=q.options, type=QUESTION_TYPE_ENUM[q.type]),
            settings=common_pb2.RequestSettings(
                experts=common_pb2.ExpertSwitches(
                    reference=True,
                    knowledge=QUESTION_TYPE_ENUM[qtype] in WITH_KNOWLEDGE,
                    reasoning=False,
                    evidence=False,
                )
            ),
        )

    grpc_port, http_port = free_port(), free_port()
    address = f"127.0.0.1:{grpc_port}"
    config = echo_config(work / "data", grpc_port, http_port)

    ray.init(
        num_cpus=args.cpus,
        include_dashboard=True,
        dashboard_host="127.0.0.1",
        namespace="serve",
        log_to_driver=False,
        _system_config=RAY_SYSTEM_CONFIG,
    )  # as `echo-iad serve --ray` starts it; the dashboard serves Serve's REST API, which deploy() hands the config
    shapes: dict[str, Any] = {}
    try:
        deploy(config)  # starts Serve with the config's ingress (every echo.v1 service registered)
        for stage in ("embedding", "retrieval", "knowledge", "decision"):
            serve.run(NoOpStage.bind(), name=BARE[stage], route_prefix=f"/{BARE[stage]}", blocking=False)
        serve.run(NoOpGateway.bind(address), name=BARE["inspector"], route_prefix="/bare-inspector", blocking=False)
        wait_until_healthy(config, timeout_s=600)
        sample = dataset.samples[0]
        templates = sorted({t for _, _, t in dataset.templates()})
        with grpc.insecure_channel(address) as channel:
            inspector_pb2_grpc.InspectorStub(channel).AddNormalImages(
                inspector_pb2.AddNormalImagesRequest(
                    line_id=LINE,
                    dataset=sample.dataset,
                    category=sample.category,
                    images=[common_pb2.Image(data=dataset.abspath(t).read_bytes()) for t in templates],
                ),
                metadata=(("application", "inspector"),),
                timeout=120,
            )
        idle = idle_cpu_rates()
        running = "haproxy" if "haproxy" in idle else "proxy"
        if running != ingress:
            raise SystemExit(f"asked for the {ingress} ingress, but Serve runs the {running} one")
        for shape, qtype in SHAPES.items():
            request = request_for(qtype)
            with grpc.insecure_channel(address) as channel:
                md = (("application", "inspector"),)
                check_shape(inspector_pb2_grpc.InspectorStub(channel).Inspect(request, metadata=md, timeout=60), shape)
            phases = {}
            for clients, phase_s in ((1, seconds / 2), (args.clients, seconds)):
                bare, echo = Samples(), Samples()
                for _ in range(args.rounds):  # interleaved, so a noisy neighbour hits both sides alike
                    asyncio.run(load(address, BARE["inspector"], request, clients, phase_s / args.rounds, bare))
                    asyncio.run(load(address, "inspector", request, clients, phase_s / args.rounds, echo))
                phases[clients] = compare(bare, echo, idle)
            for phase in phases.values():
                add_orchestration(phase, phases[1]["echo"]["stage_work_ms"])
            shapes[shape] = {"question_type": qtype, **phases[args.clients], "single_client": phases[1]}
    finally:
        serve.shutdown()
        ray.shutdown()
    return {"ingress": ingress, "load_avg_1m": round(os.getloadavg()[0], 2), "shapes": shapes}


def run_child(args: argparse.Namespace, ingress: str) -> dict[str, Any]:
    """run_ingress in a fresh process: Serve's switch is read once per process, and each side gets its own Ray."""
    this = ["-m", __spec__.name] if __spec__ is not None else [__file__]  # as this run was started
    cmd = [sys.executable, *this, "--ingress", ingress, "--clients", str(args.clients), "--seconds", str(args.seconds)]
    cmd += ["--cpus", str(args.cpus), "--rounds", str(args.rounds)] + (["--quick"] if args.quick else [])
    done = subprocess.run(cmd, env={**os.environ, **ingress_env(ingress)}, capture_output=True, text=True)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        raise SystemExit(f"{ingress}: the run failed (exit {done.returncode}): {done.stderr[-3000:]}")
    return json.loads(lines[-1])


def summarize(runs: dict[str, dict[str, Any]], clients: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """Per ingress and shape, the figures the issue asks for at 1 and `clients` clients; and, per shape, app and
    client count, the ingress with the lower p50 (its throughput beside it)."""
    summary: dict[str, Any] = {}
    for ingress, run in runs.items():
        summary[ingress] = {}
        for shape, result in run["shapes"].items():
            by_clients = {"1": result["single_client"], str(clients): result}
            row: dict[str, Any] = {}
            for n, r in by_clients.items():
                row[n] = {
                    "bare_p50_ms": r["bare"]["p50_ms"],
                    "echo_p50_ms": r["echo"]["p50_ms"],
                    "bare_rps": r["bare"]["rps"],
                    "echo_rps": r["echo"]["rps"],
                    "bare_ingress_cpu_ms": r["bare"]["ingress_cpu_ms"],
                    "echo_ingress_cpu_ms": r["echo"]["ingress_cpu_ms"],
                    "bare_server_cpu_ms": r["bare"]["server_cpu_ms"],
                    "echo_server_cpu_ms": r["echo"]["server_cpu_ms"],
                    "echo_stage_work_ms": result["single_client"]["echo"]["stage_work_ms"],
                    "orchestration_cpu_ms": r["orchestration_cpu_ms"],
                    "orchestration_cpu_ratio": r["orchestration_cpu_ratio"],
                    "overhead_ratio_p50": r["overhead_ratio_p50"],
                    "e2e_ratio_p50": r["e2e_ratio_p50"],
                }
            summary[ingress][shape] = row
    better: dict[str, Any] = {}
    if len(runs) == 2:
        a, b = INGRESSES
        for shape in summary[a]:
            better[shape] = {}
            for app in ("bare", "echo"):
                better[shape][app] = {}
                for n in summary[a][shape]:
                    ra, rb = summary[a][shape][n], summary[b][shape][n]
                    by_p50 = a if ra[f"{app}_p50_ms"] <= rb[f"{app}_p50_ms"] else b
                    by_rps = a if ra[f"{app}_rps"] >= rb[f"{app}_rps"] else b
                    better[shape][app][n] = by_p50 if by_p50 == by_rps else f"{by_p50} (p50), {by_rps} (req/s)"
    return summary, better


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="4 s per side and shape instead of --seconds.")
    parser.add_argument("--clients", type=int, default=16, help="Concurrent closed-loop clients.")
    parser.add_argument("--seconds", type=float, default=12.0, help="Measuring time per side and shape.")
    parser.add_argument("--cpus", type=float, default=2, help="CPUs of the local Ray instance.")
    parser.add_argument("--rounds", type=int, default=2, help="Alternations bare/echo; --seconds is split over them.")
    parser.add_argument(
        "--ingress",
        choices=(*INGRESSES, "both"),
        default="both",
        help="Serve's Python proxy, its HAProxy mode, or both one after the other (each in its own Ray).",
    )
    args = parser.parse_args()
    if args.ingress != "both":
        print(json.dumps(run_ingress(args, args.ingress)), flush=True)
        return
    load_before = round(os.getloadavg()[0], 2)
    runs = {ingress: run_child(args, ingress) for ingress in INGRESSES}
    summary, better = summarize(runs, args.clients)
    result = {
        "bench": "ray_overhead",
        "clients": args.clients,
        "seconds": 4.0 if args.quick else args.seconds,
        "rounds": args.rounds,
        "ray_cpus": args.cpus,
        "load_avg_1m": {"start": load_before, **{f"after_{k}": v["load_avg_1m"] for k, v in runs.items()}},
        "goal": "per shape: overhead_ratio_p50 <= 1.2 at 1 and at --clients clients; orchestration_cpu_ratio <= 1.2",
        "summary": summary,
        "lower_p50_ingress": better,
        "ingresses": {k: v["shapes"] for k, v in runs.items()},
        "anchor_bare_2way_fanout": {"p50_ms": 8.9, "rps": 155, "clients": 16, "source": "docs/design.md §5"},
    }
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
