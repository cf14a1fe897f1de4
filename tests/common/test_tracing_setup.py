"""Tracing is off by default, and a collector that cannot be used never stops a server from serving."""

from __future__ import annotations

import logging
import time

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.common import telemetry
from services.common.config import TelemetrySettings
from services.common.ports import free_port
from services.common.serving import add_health_and_reflection, new_server, set_serving


@pytest.fixture(autouse=True)
def untraced():  # type: ignore[no-untyped-def]
    telemetry.stop_tracing()
    yield
    telemetry.stop_tracing()


def test_tracing_is_off_by_default_and_adds_no_interceptor() -> None:
    assert TelemetrySettings().tracing is False
    assert telemetry.setup_tracing(TelemetrySettings()) is False
    assert [type(i).__name__ for i in telemetry.server_interceptors()] == ["MetricsInterceptor"]
    assert telemetry.client_interceptors() == []


def test_an_exporter_that_cannot_start_is_logged_and_serving_goes_on_untraced(caplog) -> None:  # type: ignore[no-untyped-def]
    with caplog.at_level(logging.WARNING, logger="echo_iad"):
        assert telemetry.setup_tracing(TelemetrySettings(tracing=True, otlp_endpoint="http://[::1")) is False
    assert "tracing not started (ValueError" in caplog.text and "serving continues" in caplog.text
    assert telemetry.client_interceptors() == []


async def test_an_unreachable_collector_does_not_slow_or_stop_calls(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "1")
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    assert telemetry.setup_tracing(TelemetrySettings(tracing=True, otlp_endpoint=dead))
    server = new_server()
    health = add_health_and_reflection(server, [])
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    await set_serving(health, [""])
    try:
        async with grpc.aio.insecure_channel(
            f"127.0.0.1:{port}", interceptors=telemetry.client_interceptors()
        ) as channel:
            for _ in range(3):
                start = time.perf_counter()
                resp = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
                assert resp.status == health_pb2.HealthCheckResponse.SERVING
                assert time.perf_counter() - start < 2.0  # spans are exported off the request path
    finally:
        await server.stop(0)
