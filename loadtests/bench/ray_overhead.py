"""What Echo-IAD's cluster mode costs over a bare Ray Serve app of the same fan-out shape, same machine, same run.

    python -m loadtests.bench.ray_overhead [--quick] [--clients 16] [--seconds 12]

One local Ray session (2 CPUs by default), started as `echo-iad serve --ray` starts one (images inline,
deploy/launch.py), runs both, each application with one replica:
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
CPU milliseconds per request of every process (Serve's proxy, the raylet, each application's replicas,
the clients), net of their idle background, show where the time goes; proxy_cpu_ratio compares the
proxy's cost per request, the part of Ray Serve that the two sides share.

Goal: overhead p50 <= 1.2x the bare app's p50 for every shape at --clients (headline: "reference").
Anchor (docs/design.md §5, 2-core machine): a bare two-way fan-out had p50 8.9 ms and 155 req/s at 16 clients.
Prints one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from ray import serve

from echo.v1 import (
    common_pb2,
    decision_pb2,
    embedding_pb2,
    inspector_pb2,
    inspector_pb2_grpc,
    knowledge_pb2,
    retrieval_pb2,
)
from loadtests.kit.bench import critical_compute_ms
from services.common.percentiles import percentile
from services.common.ports import free_port

REPO = Path(__file__).resolve().parents[2]

LINE = "bench-line"
SHAPES = {"reference": "Anomaly Detection", "reference+knowledge": "Defect Classification"}
WITH_KNOWLEDGE = {common_pb2.DEFECT_CLASSIFICATION, common_pb2.DEFECT_DESCRIPTION}
BARE = {s: f"bare-{s}" for s in ("embedding", "retrieval", "knowledge", "decision", "inspector")}


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
        if with_compute:
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

        cpu_before = cpu_by_process()
        start = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(clients)))
        into.seconds += time.perf_counter() - start
        for key, value in cpu_by_process().items():
            into.cpu_s[key] = into.cpu_s.get(key, 0.0) + value - cpu_before.get(key, 0.0)


def cpu_by_process() -> dict[str, float]:
    """CPU seconds so far of Serve's proxy, the raylet, each application's replicas, and this process (the clients)."""
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
        shared = ("proxy", "raylet", "clients")
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
        "proxy_cpu_ratio": round(echo["cpu_ms_per_request"]["proxy"] / bare["cpu_ms_per_request"]["proxy"], 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="4 s per side and shape instead of --seconds.")
    parser.add_argument("--clients", type=int, default=16, help="Concurrent closed-loop clients.")
    parser.add_argument("--seconds", type=float, default=12.0, help="Measuring time per side and shape.")
    parser.add_argument("--cpus", type=float, default=2, help="CPUs of the local Ray instance.")
    parser.add_argument("--rounds", type=int, default=2, help="Alternations bare/echo; --seconds is split over them.")
    args = parser.parse_args()
    seconds = 4.0 if args.quick else args.seconds

    import ray

    from deploy.launch import RAY_SYSTEM_CONFIG, deploy, wait_until_healthy
    from services.common.enums import QUESTION_TYPE_ENUM
    from services.mmad.loader import load_dataset
    from services.mmad.synth import synthesize

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
        deploy(config)  # starts Serve with the config's gRPC proxy (every echo.v1 service registered)
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
            shapes[shape] = {"question_type": qtype, **phases[args.clients], "single_client": phases[1]}
    finally:
        serve.shutdown()
        ray.shutdown()

    headline = shapes["reference"]
    result = {
        "bench": "ray_overhead",
        "clients": args.clients,
        "seconds": seconds,
        "rounds": args.rounds,
        "ray_cpus": args.cpus,
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "overhead_ratio_p50": headline["overhead_ratio_p50"],
        "e2e_ratio_p50": headline["e2e_ratio_p50"],
        "proxy_cpu_ratio": headline["proxy_cpu_ratio"],
        "overhead_ratio_p50_by_shape": {k: v["overhead_ratio_p50"] for k, v in shapes.items()},
        "goal": "overhead_ratio_p50 <= 1.2 for every shape",
        "shapes": shapes,
        "anchor_bare_2way_fanout": {"p50_ms": 8.9, "rps": 155, "clients": 16, "source": "docs/design.md §5"},
    }
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
