"""Logging, metrics and tracing, shared by every stage, behind flags; each metric defined once (name, labels, buckets).

Where a metric goes is chosen at run time, on its first use in a process:
- embedded mode (and a stage run alone): prometheus-client's default registry,
  served by `start_metrics_exporter(telemetry.metrics_port)`;
- inside a Ray Serve replica: `ray.serve.metrics`, exported by each node's Ray
  metrics agent (replicas come and go and share nodes, so a per-process port
  has nothing fixed to scrape). Ray prefixes `ray_` and adds the deployment,
  replica and application tags; Serve's own batch and request metrics sit beside
  ours there.
If the exporter cannot start (port taken), we log once and keep serving.

Tracing (`telemetry.tracing`, off by default) uses OpenTelemetry: a span per RPC
on both ends (opentelemetry-instrumentation-grpc's grpc.aio interceptors, which
carry the W3C `traceparent` in the call's metadata), plus the gateway's own spans
per fan-out stage, so one inspection is one trace across every stage. Spans go to
an OTLP collector (`telemetry.otlp_endpoint`) in batches off the request path; if
the exporter cannot start, we log once and serve untraced.
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

from services.common.health import served

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
        if outcome.code == "OK":
            served(service)  # what tells a busy stage from a stalled one (services/common/health.py)
        LATENCY.observe(time.perf_counter() - start, service=service, method=method)


_tracer_provider: Any = None  # the SDK's TracerProvider once tracing is on in this process


def setup_tracing(settings: Any, service_name: str = "echo-iad", *, exporter: Any = None) -> bool:
    """Turn tracing on for servers and channels made from now on; False (logged) when off or it cannot start.

    Args:
        settings: the TelemetrySettings (tracing flag, otlp_endpoint).
        service_name: the `service.name` of this process's spans (a Ray replica names its stage).
        exporter: a span exporter to use instead of OTLP, synchronously (tests: an in-memory one).
    """
    global _tracer_provider
    if _tracer_provider is not None:
        return True
    if not settings.tracing and exporter is None:
        return False
    try:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

        provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
        if exporter is not None:
            provider.add_span_processor(SimpleSpanProcessor(exporter))
        else:
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

            provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=settings.otlp_endpoint)))
    except Exception as e:
        log.warning("tracing not started (%s: %s); serving continues without it", type(e).__name__, e)
        return False
    _tracer_provider = provider
    log.info(
        "tracing on: spans of %s go to %s", service_name, "the given exporter" if exporter else settings.otlp_endpoint
    )
    return True


def stop_tracing() -> None:
    """Flush and turn tracing off (servers and channels made from now on are untraced)."""
    global _tracer_provider
    provider, _tracer_provider = _tracer_provider, None
    if provider is not None:
        provider.shutdown()


def tracer() -> Any:
    """The tracer for our own spans (the gateway's fan-out stages); a no-op one while tracing is off."""
    from opentelemetry import trace

    return _tracer_provider.get_tracer("echo_iad") if _tracer_provider is not None else trace.NoOpTracer()


def server_interceptors() -> list[grpc.aio.ServerInterceptor]:
    """Every server's interceptors: metrics always; a span per RPC (continuing the caller's trace) with tracing."""
    interceptors: list[grpc.aio.ServerInterceptor] = [MetricsInterceptor()]
    if _tracer_provider is not None:
        from opentelemetry.instrumentation.grpc import aio_server_interceptor

        interceptors.insert(0, aio_server_interceptor(tracer_provider=_tracer_provider))
    return interceptors


def client_interceptors() -> list[Any]:
    """A grpc.aio channel's interceptors: with tracing, a span per call, its context sent in the metadata."""
    if _tracer_provider is None:
        return []
    from opentelemetry.instrumentation.grpc import aio_client_interceptors

    return aio_client_interceptors(tracer_provider=_tracer_provider)


@contextlib.contextmanager
def continued_trace(metadata: Any, name: str) -> Iterator[None]:
    """A server span for a call that arrives without our interceptors (a Ray Serve replica), in the caller's trace.

    Serve's gRPC proxy hands the replica the call's metadata, `traceparent` included.
    """
    if _tracer_provider is None:
        yield
        return
    from opentelemetry import propagate, trace

    parent = propagate.extract({k: v for k, v in metadata or () if isinstance(v, str)})
    with tracer().start_as_current_span(name, context=parent, kind=trace.SpanKind.SERVER):
        yield


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


def split_method(full: str) -> tuple[str, str]:
    """'/echo.v1.Inspector/Inspect' -> ('echo.v1.Inspector', 'Inspect')."""
    _, service, method = full.split("/", 2) if full.count("/") >= 2 else ("", "", full)
    return service, method


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
        service, method = split_method(details.method)
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
