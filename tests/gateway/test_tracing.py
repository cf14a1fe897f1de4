"""One inspection is one trace: the gateway's span, its fan-out steps and every stage's RPC spans share a trace id.

Embedded mode: the gateway calls the stages through the in-process channel, which
runs the same client and server interceptors as a socket, so the W3C trace context
crosses each stage hop (client interceptor -> metadata -> server interceptor) as it
does over the port and between Ray Serve replicas.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from app.background import BackgroundServer
from services.common import telemetry

LINE = "line-t"
STAGE_RPCS = {
    "/echo.v1.Embedding/EmbedImages",
    "/echo.v1.Retrieval/Search",
    "/echo.v1.Knowledge/GetContext",
    "/echo.v1.Decision/Decide",
}


@pytest.fixture(scope="module")
def traced(tmp_path_factory: pytest.TempPathFactory, offline_model_cache: Path) -> Iterator[tuple]:
    from services.config import load_settings

    exporter = InMemorySpanExporter()
    settings = load_settings(
        data_dir=str(tmp_path_factory.mktemp("state")),
        server={"port": 0},
        decision={"model_cache": str(offline_model_cache)},
    )
    assert telemetry.setup_tracing(settings.telemetry, "echo-iad-test", exporter=exporter)
    try:
        with BackgroundServer(settings) as srv:
            yield srv, exporter
    finally:
        telemetry.stop_tracing()


def test_one_inspection_is_one_trace_across_the_gateway_and_every_stage(traced, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import numpy as np

    from services.client import InspectorClient
    from services.common.images import encode_png
    from services.mmad.synth import render_normal

    srv, exporter = traced
    normal = [encode_png(render_normal("round_part", np.random.default_rng(i))) for i in range(3)]
    query = encode_png(render_normal("round_part", np.random.default_rng(7)))
    with InspectorClient(srv.address, retries=0) as client:
        client.add_normal_images(LINE, "round_part", normal, dataset="Synthetic")
        exporter.clear()
        resp = client.inspect(
            query,
            "There is a defect in the object. What is the type of the defect?",
            {"A": "Crack.", "B": "Scratch.", "C": "Stain."},
            line_id=LINE,
            category="round_part",
            dataset="Synthetic",
            question_type="Defect Classification",
            experts={"evidence": False},  # its CPU backbone can stall past stall_probe_ms: health probes, own traces
        )
    assert resp.trace.experts_used[-1] == "decision" and not resp.trace.degraded

    spans = exporter.get_finished_spans()
    inspect = [s for s in spans if s.name == "/echo.v1.Inspector/Inspect"]
    assert len(inspect) == 1 and inspect[0].kind == SpanKind.SERVER
    root = inspect[0]
    assert {s.context.trace_id for s in spans} == {root.context.trace_id}, "every span of the inspection in one trace"

    by_id = {s.context.span_id: s for s in spans}
    stage_servers = {s.name: s for s in spans if s.kind == SpanKind.SERVER and s.name in STAGE_RPCS}
    assert set(stage_servers) == STAGE_RPCS  # the stage side of every hop
    for name, server_span in stage_servers.items():
        client_span = by_id[server_span.parent.span_id]  # the context came through the call's metadata
        assert client_span.kind == SpanKind.CLIENT and client_span.name == name
        step = by_id[client_span.parent.span_id]  # under the gateway step that made the call ...
        assert step.name.startswith("inspect.") and by_id[step.parent.span_id] is root  # ... under the Inspect span
    steps = {s.name for s in spans if s.name.startswith("inspect.")}
    assert {"inspect.embedding", "inspect.retrieval", "inspect.knowledge", "inspect.decision"} <= steps


def test_a_callers_trace_context_is_continued(traced) -> None:  # type: ignore[no-untyped-def]
    from echo.v1 import inspector_pb2, inspector_pb2_grpc

    srv, exporter = traced
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    exporter.clear()
    with grpc.insecure_channel(srv.address) as channel:  # a raw stub: the caller sets the W3C header itself
        inspector_pb2_grpc.InspectorStub(channel).ListLines(
            inspector_pb2.ListLinesRequest(),
            metadata=(("traceparent", f"00-{trace_id}-00f067aa0ba902b7-01"),),
            timeout=30,
        )
    spans = exporter.get_finished_spans()
    assert spans and {format(s.context.trace_id, "032x") for s in spans} == {trace_id}
    assert "/echo.v1.Retrieval/Stats" in {s.name for s in spans}
