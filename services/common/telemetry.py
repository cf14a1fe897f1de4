"""Logging and Prometheus metrics, shared by every stage, behind flags.

Metrics are plain prometheus-client objects in the default registry; Ray Serve
replicas and the embedded server both export them. If the exporter cannot
start (port taken), we log once and keep serving.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from prometheus_client import Counter, Gauge, Histogram, start_http_server

log = logging.getLogger("echo_iad")

REQUESTS = Counter("echo_requests_total", "RPCs handled", ["service", "method", "code"])
LATENCY = Histogram(
    "echo_request_seconds",
    "RPC latency",
    ["service", "method"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
BATCH_SIZE = Histogram("echo_batch_size", "Items per model call", ["stage"], buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256))
QUEUE_DEPTH = Gauge("echo_queue_depth", "Requests waiting for a batch or a slot", ["stage"])
IN_FLIGHT = Gauge("echo_in_flight", "Requests being served", ["stage"])


def setup_logging(level: str = "INFO") -> None:
    logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def start_metrics_exporter(port: int) -> bool:
    """Start the /metrics HTTP exporter; False (logged) when it cannot bind."""
    if not port:
        return False
    try:
        start_http_server(port)
        log.info("prometheus metrics on :%d/metrics", port)
        return True
    except OSError as e:
        log.warning("metrics exporter not started on port %d: %s (serving continues)", port, e)
        return False


class MetricsInterceptor(grpc.aio.ServerInterceptor):
    """Counts and times every unary RPC by service, method and status code."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        if handler is None or handler.unary_unary is None:
            return handler
        _, service, method = (
            details.method.split("/", 2) if details.method.count("/") >= 2 else ("", "", details.method)
        )
        inner = handler.unary_unary

        async def timed(request: Any, context: grpc.aio.ServicerContext) -> Any:
            start = time.perf_counter()
            code = "OK"
            try:
                return await inner(request, context)
            except BaseException:
                c = context.code()
                code = c.name if isinstance(c, grpc.StatusCode) else "UNKNOWN"
                raise
            finally:
                REQUESTS.labels(service, method, code).inc()
                LATENCY.labels(service, method).observe(time.perf_counter() - start)

        return grpc.unary_unary_rpc_method_handler(
            timed,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
