"""Logging and metrics, shared by every stage, behind flags: each metric's name, labels and buckets written once.

Where a metric goes is chosen at run time, on its first use in a process:
- embedded mode (and a stage run alone): prometheus-client's default registry,
  served by `start_metrics_exporter(telemetry.metrics_port)`;
- inside a Ray Serve replica: `ray.serve.metrics`, exported by each node's Ray
  metrics agent (replicas come and go and share nodes, so a per-process port
  has nothing fixed to scrape). Ray prefixes `ray_` and adds the deployment,
  replica and application tags; Serve's own batch and request metrics sit beside
  ours there.
If the exporter cannot start (port taken), we log once and keep serving.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import grpc

log = logging.getLogger("echo_iad")

Kind = Literal["counter", "gauge", "histogram"]


def in_serve_replica() -> bool:
    """True inside a Ray Serve replica (Ray is never imported here just to find out)."""
    if "ray" not in sys.modules:
        return False
    try:
        from ray import serve

        serve.get_replica_context()
        return True
    except Exception:
        return False


@dataclass
class Metric:
    """One metric defined once; record with `inc/dec/set/observe(value, **labels)`.

    Counters only go up; gauges take set, inc and dec (Ray's gauges only `set`,
    so the value per label set is kept here); histograms take observe.
    """

    kind: Kind
    name: str
    description: str
    labels: tuple[str, ...]
    buckets: tuple[float, ...] = ()
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _backend: Any = field(default=None, repr=False)
    _ray: bool = False
    _values: dict[tuple[str, ...], float] = field(default_factory=dict, repr=False)  # gauges exported through Ray

    def _resolve(self) -> Any:
        with self._lock:
            if self._backend is None:
                self._ray = in_serve_replica()
                self._backend = self._ray_metric() if self._ray else self._prometheus_metric()
            return self._backend

    def _prometheus_metric(self) -> Any:
        import prometheus_client as prom

        if self.kind == "counter":
            return prom.Counter(self.name, self.description, self.labels)
        if self.kind == "gauge":
            return prom.Gauge(self.name, self.description, self.labels)
        return prom.Histogram(self.name, self.description, self.labels, buckets=self.buckets)

    def _ray_metric(self) -> Any:
        from ray.serve import metrics

        if self.kind == "counter":
            return metrics.Counter(self.name, description=self.description, tag_keys=self.labels)
        if self.kind == "gauge":
            return metrics.Gauge(self.name, description=self.description, tag_keys=self.labels)
        return metrics.Histogram(
            self.name, description=self.description, boundaries=list(self.buckets), tag_keys=self.labels
        )

    def _key(self, labels: dict[str, str]) -> tuple[str, ...]:
        if set(labels) != set(self.labels):
            raise ValueError(f"{self.name} takes labels {self.labels}, got {tuple(labels)}")
        return tuple(str(labels[k]) for k in self.labels)

    def _record(self, op: str, value: float, labels: dict[str, str]) -> None:
        backend = self._resolve()
        key = self._key(labels)
        if not self._ray:
            getattr(backend.labels(*key), op)(value)
            return
        tags = dict(zip(self.labels, key, strict=True))
        if self.kind == "counter":
            backend.inc(value, tags=tags)
        elif self.kind == "histogram":
            backend.observe(value, tags=tags)
        else:
            with self._lock:
                old = self._values.get(key, 0.0)
                now = value if op == "set" else old + value if op == "inc" else old - value
                self._values[key] = now
            backend.set(now, tags=tags)

    def inc(self, value: float = 1.0, **labels: str) -> None:
        self._record("inc", value, labels)

    def dec(self, value: float = 1.0, **labels: str) -> None:
        self._record("dec", value, labels)

    def set(self, value: float, **labels: str) -> None:
        self._record("set", value, labels)

    def observe(self, value: float, **labels: str) -> None:
        self._record("observe", value, labels)


REQUESTS = Metric("counter", "echo_requests", "RPCs handled, by status code.", ("service", "method", "code"))
LATENCY = Metric(
    "histogram",
    "echo_request_seconds",
    "RPC latency inside the server or replica.",
    ("service", "method"),
    (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
IN_FLIGHT = Metric("gauge", "echo_in_flight", "Requests being served.", ("stage",))
BATCH_SIZE = Metric(
    "histogram", "echo_batch_size", "Items per model call.", ("stage",), (1, 2, 4, 8, 16, 32, 64, 128, 256)
)
QUEUE_DEPTH = Metric("gauge", "echo_queue_depth", "Requests waiting for a batch.", ("stage",))
DECODE_FALLBACKS = Metric(
    "counter",
    "echo_gpu_decode_fallbacks",
    "Batches whose GPU (nvjpeg) decode failed and were decoded on the CPU instead.",
    ("stage",),
)


def stage_label(service: str) -> str:
    """echo.v1.Embedding -> embedding: the `stage` label of a gRPC service's metrics."""
    return service.rsplit(".", 1)[-1].lower()


@dataclass
class RpcOutcome:
    code: str = "OK"


@contextlib.contextmanager
def rpc_metrics(service: str, method: str) -> Iterator[RpcOutcome]:
    """Counts one RPC in flight while it runs, then by status code, and times it (set `outcome.code` on failure)."""
    stage = stage_label(service)
    outcome = RpcOutcome()
    IN_FLIGHT.inc(stage=stage)
    start = time.perf_counter()
    try:
        yield outcome
    finally:
        IN_FLIGHT.dec(stage=stage)
        REQUESTS.inc(service=service, method=method, code=outcome.code)
        LATENCY.observe(time.perf_counter() - start, service=service, method=method)


def setup_logging(level: str = "INFO") -> None:
    logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def start_metrics_exporter(port: int) -> bool:
    """Start the /metrics HTTP exporter; False (logged) when it cannot bind."""
    if not port:
        return False
    from prometheus_client import start_http_server

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
            with rpc_metrics(service, method) as outcome:
                try:
                    return await inner(request, context)
                except BaseException:
                    c = context.code()
                    outcome.code = c.name if isinstance(c, grpc.StatusCode) else "UNKNOWN"
                    raise

        return grpc.unary_unary_rpc_method_handler(
            timed,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
