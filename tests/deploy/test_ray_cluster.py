"""Cluster mode for real: local Ray (2 CPUs), deploy/local-cpu.yaml, offline models, calls through the gRPC proxy.

One Ray session for the module (about a minute to start on 2 cores); the
replica-count change runs last because it changes the deployment.
"""

from __future__ import annotations

import copy
import re
import threading
import time
import urllib.request
from typing import TYPE_CHECKING

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from echo.v1 import common_pb2, embedding_pb2, embedding_pb2_grpc, inspector_pb2, inspector_pb2_grpc
from services.common.enums import QUESTION_TYPE_ENUM
from services.gateway.config import DEFAULT_EXPERT_MAP

if TYPE_CHECKING:
    from conftest import Cluster

pytestmark = pytest.mark.slow


def inspect_request(cluster: Cluster, qtype: str) -> inspector_pb2.InspectRequest:
    """The first question of this type in the synthetic dataset, sent with its image bytes."""
    sample, q = next((s, q) for s, q in cluster.dataset.questions() if q.type == qtype)
    return inspector_pb2.InspectRequest(
        line_id=cluster.line,
        dataset=sample.dataset,
        category=sample.category,
        image=common_pb2.Image(data=cluster.dataset.abspath(sample.image_path).read_bytes()),
        question=common_pb2.Question(text=q.text, options=q.options, type=QUESTION_TYPE_ENUM[qtype]),
    )


def test_every_application_answers_grpc_health_through_the_proxy(cluster: Cluster) -> None:
    from ray.serve.generated import serve_pb2, serve_pb2_grpc

    serve_api = serve_pb2_grpc.RayServeAPIServiceStub(cluster.channel)
    serve_api.Healthz(serve_pb2.HealthzRequest(), timeout=10)  # Serve's own proxy health
    listed = serve_api.ListApplications(serve_pb2.ListApplicationsRequest(), timeout=10).application_names
    assert set(listed) == {"embedding", "retrieval", "knowledge", "decision", "evidence", "inspector"}
    stub = health_pb2_grpc.HealthStub(cluster.channel)
    for app in ("embedding", "retrieval", "knowledge", "decision", "evidence", "inspector"):
        resp = stub.Check(health_pb2.HealthCheckRequest(), metadata=cluster.metadata(app), timeout=30)
        assert resp.status == health_pb2.HealthCheckResponse.SERVING, app
    with pytest.raises(grpc.RpcError) as e:
        stub.Check(health_pb2.HealthCheckRequest(service="echo.v1.Nope"), metadata=cluster.metadata("embedding"))
    assert e.value.code() == grpc.StatusCode.NOT_FOUND


def test_inspections_of_every_question_type_run_through_the_proxy(cluster: Cluster) -> None:
    stub = inspector_pb2_grpc.InspectorStub(cluster.channel)
    assert set(QUESTION_TYPE_ENUM) == set(DEFAULT_EXPERT_MAP)
    for qtype, experts in DEFAULT_EXPERT_MAP.items():
        req = inspect_request(cluster, qtype)
        resp = stub.Inspect(req, metadata=cluster.metadata("inspector"), timeout=120)
        t = resp.trace
        assert resp.answer in req.question.options, (qtype, t.raw_reply)
        assert not t.degraded, (qtype, list(t.degraded))
        expected = [e for e in ("reference", "knowledge", "evidence", "reasoning") if e in experts] + ["decision"]
        assert list(t.experts_used) == expected, qtype
        stages = {s.stage for s in t.timings}
        assert "decision" in stages and "total" in stages
        if "reference" in experts:
            assert t.references and t.references[0].uri, qtype
            assert {"embedding", "retrieval"} <= stages
            assert t.model_ids["embedding"].startswith("efficientnet_lite0")  # no CLIP weights: the lite encoder
        if "knowledge" in experts:
            assert t.knowledge_entry_ids, qtype


def test_the_audit_trail_and_the_console_work_through_the_proxy(cluster: Cluster) -> None:
    import httpx
    from console_server import ConsoleThread

    from services.client import InspectorClient
    from services.console.app import ConsoleSettings

    req = inspect_request(cluster, "Anomaly Detection")
    with InspectorClient(cluster.address, application="inspector") as client:
        resp = client.inspect_request(req)
        record = client.get_inspection(cluster.line, resp.request_id).record
        assert record.answer == resp.answer and record.trace.references
        assert client.get_image(cluster.line, record.image_sha256).data == req.image.data
        assert [p.normal_images > 0 for p in client.list_products(cluster.line).products] == [True]
    settings = ConsoleSettings(server=cluster.address, application="inspector", line=cluster.line)
    with ConsoleThread(settings) as web:
        listing = httpx.get(f"{web.url}/inspections?line={cluster.line}", timeout=60)
        assert listing.status_code == 200 and resp.request_id in listing.text
        detail = httpx.get(f"{web.url}/inspection", params={"line": cluster.line, "id": resp.request_id}, timeout=60)
        assert detail.status_code == 200 and record.trace.references[0].sha256 in detail.text
        ref = httpx.get(f"{web.url}/image", params={"line": cluster.line, "sha256": record.trace.references[0].sha256})
        assert ref.status_code == 200 and ref.headers["content-type"].startswith("image/")


def test_the_evidence_application_serves_the_inspector_its_verdict_and_heat_map(cluster: Cluster) -> None:
    """The product onboarded through AddNormalImages (conftest) has a bank in the evidence app; an anomaly
    question's trace carries the evidence, with the heat map at the query's size when asked."""
    import io

    from PIL import Image

    from echo.v1 import evidence_pb2, evidence_pb2_grpc

    banks = evidence_pb2_grpc.EvidenceStub(cluster.channel).BankStats(
        evidence_pb2.BankStatsRequest(line_id=cluster.line), metadata=cluster.metadata("evidence"), timeout=60
    )
    (bank,) = banks.banks
    assert bank.category == "round_part" and bank.images == 4 and bank.calibration.threshold > 0
    req = inspect_request(cluster, "Anomaly Detection")
    req.settings.return_heatmap = True
    resp = inspector_pb2_grpc.InspectorStub(cluster.channel).Inspect(
        req, metadata=cluster.metadata("inspector"), timeout=120
    )
    t, e = resp.trace, resp.trace.evidence
    assert "evidence" in t.experts_used and not t.degraded and t.model_ids["evidence"] == banks.backbone_id
    assert e.threshold == pytest.approx(bank.calibration.threshold) and e.anomalous == (e.score > e.threshold)
    assert e.boxes and e.boxes[0].region and e.sent_as_text and e.summary
    query = Image.open(io.BytesIO(req.image.data))
    assert Image.open(io.BytesIO(e.heatmap.png)).size == query.size == Image.open(io.BytesIO(e.overlay_png)).size
    assert "evidence" in {s.stage for s in t.timings}


def test_stage_errors_reach_the_caller_with_their_own_status_code(cluster: Cluster) -> None:
    inspector = inspector_pb2_grpc.InspectorStub(cluster.channel)
    bad = inspect_request(cluster, "Anomaly Detection")
    bad.line_id = ""
    with pytest.raises(grpc.RpcError) as e:
        inspector.Inspect(bad, metadata=cluster.metadata("inspector"), timeout=60)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "line_id" in e.value.details()

    # A stage called directly through the proxy: its validation error, not INTERNAL.
    with pytest.raises(grpc.RpcError) as e:
        embedding_pb2_grpc.EmbeddingStub(cluster.channel).EmbedImages(
            embedding_pb2.EmbedImagesRequest(), metadata=cluster.metadata("embedding"), timeout=60
        )
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "images" in e.value.details()

    # A downstream stage's refusal travels through the gateway: retrieval has no memory for this product.
    unknown = inspect_request(cluster, "Anomaly Detection")
    unknown.category = "screw"
    with pytest.raises(grpc.RpcError) as e:
        inspector.Inspect(unknown, metadata=cluster.metadata("inspector"), timeout=60)
    assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "retrieval" in e.value.details()


def test_one_inspection_is_one_trace_through_the_proxy(cluster: Cluster) -> None:
    """The traceparent travels through Serve's gRPC proxy into every replica: one trace id, every stage in it."""
    import uuid

    trace_id = uuid.uuid4().hex
    request = inspect_request(cluster, "Defect Classification")  # reference and knowledge: every stage
    # the evidence expert's batches run in spans of their own (one batch serves many requests): left out here
    request.settings.experts.evidence = False
    metadata = (*cluster.metadata("inspector"), ("traceparent", f"00-{trace_id}-{uuid.uuid4().hex[:16]}-01"))
    resp = inspector_pb2_grpc.InspectorStub(cluster.channel).Inspect(request, metadata=metadata, timeout=120)
    assert not resp.trace.degraded
    services = {f"echo-iad.{s}" for s in ("inspector", "embedding", "retrieval", "knowledge", "decision")}
    spans = cluster.collector.wait_for(trace_id, services)
    assert {s.service for s in spans} == services, spans
    names = {(s.service, s.name) for s in spans}
    for stage, rpc in (("embedding", "Embedding/EmbedImages"), ("retrieval", "Retrieval/Search"),
                       ("knowledge", "Knowledge/GetContext"), ("decision", "Decision/Decide")):  # fmt: skip
        assert (f"echo-iad.{stage}", f"echo.v1.{rpc}") in names  # the replica continued the caller's trace
        assert ("echo-iad.inspector", f"/echo.v1.{rpc}") in names  # the gateway's call to it
    assert ("echo-iad.inspector", "echo.v1.Inspector/Inspect") in names
    assert {"inspect.embedding", "inspect.decision"} <= {n for _, n in names}


def _metrics(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as r:
        return r.read().decode()


def _sample_sum(text: str, name: str, **labels: str) -> float:
    """Sum of a metric's samples whose labels include `labels` (over replicas)."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def _batches_of_one(text: str, name: str, stage: str) -> float:
    """Observations in the histogram's first bucket (le=1): batches that held a single item."""
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(name + "_bucket{") and f'stage="{stage}"' in line and re.search(r'le="1(\.0)?"', line)
    )


def test_stage_metrics_reach_prometheus_through_rays_metrics_agent(cluster: Cluster) -> None:
    embedding = embedding_pb2_grpc.EmbeddingStub(cluster.channel)
    image = common_pb2.Image(data=cluster.dataset.abspath(cluster.dataset.samples[0].image_path).read_bytes())
    burst = 32
    futures = [
        embedding.EmbedImages.future(
            embedding_pb2.EmbedImagesRequest(images=[image]), metadata=cluster.metadata("embedding"), timeout=60
        )
        for _ in range(burst)
    ]
    assert all(len(f.result().embeddings) == 1 for f in futures)
    deadline = time.monotonic() + 30
    while True:  # Ray's agent exports every second (metrics_report_interval_ms in the fixture)
        text = _metrics(cluster.metrics_url)
        calls = _sample_sum(text, "ray_echo_requests_total", method="EmbedImages", code="OK")
        batches = _sample_sum(text, "ray_echo_batch_size_count", stage="embedding")
        if (calls >= burst and batches) or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert calls >= burst
    # Histogram sums are not exact in Ray's export; the buckets are: some batches held several requests.
    assert batches > _batches_of_one(text, "ray_echo_batch_size", "embedding"), "no @serve.batch call was shared"
    assert _sample_sum(text, "ray_echo_request_seconds_count", service="echo.v1.Inspector", method="AddNormalImages")
    for serve_metric in ("ray_serve_deployment_request_counter", "ray_serve_actual_batch_size", "ray_echo_in_flight"):
        assert serve_metric in text


def test_requests_keep_succeeding_while_embedding_scales_to_two_replicas(cluster: Cluster) -> None:
    from ray import serve

    from deploy.launch import deploy, wait_until_healthy

    def running_replicas() -> int:
        dep = serve.status().applications["embedding"].deployments["Embedding"]
        return dep.replica_states.get("RUNNING", 0)

    assert running_replicas() == 1
    requests = [inspect_request(cluster, t) for t in ("Anomaly Detection", "Defect Classification")]
    ok: list[float] = []
    failures: list[str] = []
    stop = threading.Event()

    def client(i: int) -> None:
        with grpc.insecure_channel(cluster.address) as channel:
            stub = inspector_pb2_grpc.InspectorStub(channel)
            while not stop.is_set():
                try:
                    resp = stub.Inspect(requests[i % 2], metadata=cluster.metadata("inspector"), timeout=60)
                    assert resp.answer
                    ok.append(time.monotonic())
                except grpc.RpcError as e:  # every failure is reported, none expected
                    failures.append(f"{e.code().name}: {e.details()}")
                except Exception as e:
                    failures.append(f"{type(e).__name__}: {e}")

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(4)]
    for t in threads:
        t.start()
    try:
        started = time.monotonic()
        while not ok and not failures and time.monotonic() < started + 60:  # served before the change
            time.sleep(0.2)
        before = len(ok)
        scaled = copy.deepcopy(cluster.config)
        emb = next(a for a in scaled["applications"] if a["name"] == "embedding")
        emb["deployments"][0]["autoscaling_config"].update(min_replicas=2, max_replicas=2)
        changed_at = time.monotonic()
        deploy(scaled)  # a redeploy of the same config with a new replica count: no restart of the others
        deadline = time.monotonic() + 120
        while running_replicas() < 2 and time.monotonic() < deadline:
            time.sleep(0.5)
        scaled_at = time.monotonic()
        wait_until_healthy(scaled, timeout_s=60)
        time.sleep(3)  # keep going on two replicas
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=90)
    assert running_replicas() == 2
    assert failures == []
    assert before > 0
    assert any(changed_at <= t <= scaled_at for t in ok), "requests were served while the replica started"
    assert any(t > scaled_at for t in ok)
