"""Thin Ray Serve wrappers: each deployment hosts one stage, built by services/<stage>/server.py.

A stage is built whole, with what the replica needs passed in (`@serve.batch`'s
batcher); nothing is swapped afterwards.

Serve's gRPC proxy calls a deployment method named after the RPC with the
request proto and a `grpc_context` (a picklable RayServegRPCContext, not a
grpc.aio context). The servicers run with the one stand-in context
(services/common/inprocess.py) and report errors with `context.abort()` (via
@grpc_errors); the status the call ends with is copied onto `grpc_context`, so
callers receive the real status code, not INTERNAL (docs/design.md §6). The proxy does
not forward the caller's deadline, so time_remaining() is None and stages fall
back to their configured timeouts (the gateway: the request's deadline_ms, else
gateway.default_deadline_ms).

One forwarder per RPC is generated from the echo.v1 service descriptor
(`StageHost` subclasses name their service), so the deployments cannot drift
from the protos.

Every RPC passes the same token checks as on a gRPC server (services/common/auth.py):
Serve's proxy has no TLS and, in Ray 2.60, listens on every interface, so TLS
ends at an ingress in front of it and the tokens are checked here.

Two health checks per stage, both the shared real check (services/common/health.py):
- `Check`: the standard grpc.health.v1.Health/Check, routed to the application by
  the proxy like any RPC; it runs the stage's own tiny real request (the
  Inspector's asks every stage it depends on).
- `check_health`: Serve's periodic replica check, the same tiny real request, so
  a replica that is alive but cannot serve is replaced. The Inspector's checks
  only itself: a stage outage must not get the gateway's replicas restarted.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from google.protobuf import descriptor_pool
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass
from grpc_health.v1 import health_pb2
from ray import serve

from deploy.args import GatewayArgs, StageArgs
from echo.v1 import (  # noqa: F401 (registers the messages)
    decision_pb2,
    embedding_pb2,
    evidence_pb2,
    inspector_pb2,
    knowledge_pb2,
    retrieval_pb2,
)
from services.common.auth import Authorizer, TokenBook
from services.common.errors import EchoError
from services.common.inprocess import InProcessContext
from services.common.serve_batching import ServeBatcher
from services.common.serving import Stage
from services.common.telemetry import continued_trace, rpc_metrics, setup_tracing
from services.config import EchoSettings

log = logging.getLogger(__name__)
HEALTH_CACHE_S = 1.0  # health probes from many callers share one real request per second
HEALTH_ANSWER_S = 0.5  # a health probe slower than this (a busy replica) answers the last verdict meanwhile


_RESPONSE_TYPES: dict[tuple[str, str], type[Message]] = {}


def response_type(service: str, method: str) -> type[Message]:
    """The response message class of `service/method` (e.g. echo.v1.Embedding, EmbedImages)."""
    key = (service, method)
    if key not in _RESPONSE_TYPES:
        desc = descriptor_pool.Default().FindServiceByName(service).methods_by_name[method]
        _RESPONSE_TYPES[key] = GetMessageClass(desc.output_type)
    return _RESPONSE_TYPES[key]


def _forwarder(method: str) -> Callable[..., Awaitable[Message]]:
    """The deployment method Serve's proxy calls for one RPC: the request into the hosted servicer."""

    async def forward(self: StageHost, request: Message, grpc_context: Any = None) -> Message:
        return await self._rpc(method, request, grpc_context)

    forward.__name__ = forward.__qualname__ = method
    forward.__doc__ = f"The {method} RPC, forwarded to the stage's servicer."
    return forward


class StageHost:
    """Hosts one stage (servicer + health + token checks) in a Serve replica.

    A subclass names its echo.v1 service (`class X(StageHost, service="echo.v1.Embedding")`) and gets one
    forwarder per RPC of it, generated from the service descriptor.
    """

    service: str = ""  # the echo.v1 service a subclass hosts
    stage: Stage
    stage_label: str
    authorizer: Authorizer

    def __init_subclass__(cls, service: str = "", **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if service:
            cls.service = service
            for rpc in descriptor_pool.Default().FindServiceByName(service).methods:
                setattr(cls, rpc.name, _forwarder(rpc.name))

    @staticmethod
    def _settings(args: StageArgs, label: str) -> EchoSettings:
        """The replica's settings; tracing starts here, before the stage opens its channels."""
        settings = args.echo_settings()
        setup_tracing(settings.telemetry, f"echo-iad.{label}")
        return settings

    def _host(self, stage: Stage, label: str, settings: EchoSettings) -> None:
        self.stage = stage
        self.stage_label = label
        auth = settings.server.auth
        book = TokenBook.from_file(auth.tokens_file) if auth.enabled else None
        self.authorizer = Authorizer(book, [stage.service_name] if stage.public else [], stage.shared_methods)
        stage.health.timeout_s = settings.server.health_timeout_s
        log.info("%s replica ready (%s; tokens %s)", label, stage.service_name, "on" if book else "off")

    async def _rpc(self, method: str, request: Message, grpc_context: Any | None) -> Message:
        """One call into the servicer, after the same token checks as a gRPC server's; an error or abort becomes
        the status code on Serve's gRPC context."""
        metadata = list(grpc_context.invocation_metadata()) if grpc_context is not None else []
        ctx = InProcessContext(metadata, None, peer=grpc_context.peer() if grpc_context is not None else "")
        service = self.stage.service_name
        with continued_trace(metadata, f"{service}/{method}"), rpc_metrics(service, method) as outcome:
            try:
                identity = self.authorizer.authenticate(service, ctx.invocation_metadata())
                self.authorizer.authorize(identity, service, method, request)
                return await getattr(self.stage.servicer, method)(request, ctx)
            except EchoError as e:
                ctx.set_code(e.code)
                ctx.set_details(e.message)
                return response_type(service, method)()
            except grpc.aio.AbortError:
                return response_type(service, method)()  # the status it set goes onto grpc_context below
            finally:
                code = ctx.code()
                outcome.code = code.name if code else "OK"
                if code is not None and grpc_context is not None:
                    grpc_context.set_code(code)
                    grpc_context.set_details(ctx.details() or "")

    async def _ready(self) -> str | None:
        """None when the stage serves, else why not: the shared check (services/common/health.py), its result
        reused for HEALTH_CACHE_S so many probes cost one real request. A busy replica's tiny request queues
        behind its model work: after HEALTH_ANSWER_S the last verdict answers, so callers that probe a stalled
        stage hear "busy", and no answer at all means the stage is unreachable."""
        return await self.stage.health.check(max_age_s=HEALTH_CACHE_S, answer_within_s=HEALTH_ANSWER_S)

    async def Check(
        self, request: health_pb2.HealthCheckRequest, grpc_context: Any | None = None
    ) -> health_pb2.HealthCheckResponse:
        """grpc.health.v1.Health/Check for this application: "" or this stage's service name."""
        if request.service not in ("", self.stage.service_name):
            if grpc_context is not None:
                grpc_context.set_code(grpc.StatusCode.NOT_FOUND)
                grpc_context.set_details(f"unknown service {request.service!r}; this is {self.stage.service_name}")
            return health_pb2.HealthCheckResponse()
        error = await self._ready()
        status = health_pb2.HealthCheckResponse.NOT_SERVING if error else health_pb2.HealthCheckResponse.SERVING
        return health_pb2.HealthCheckResponse(status=status)

    async def check_health(self) -> None:
        """Serve's periodic replica health check (the same real check): raising gets the replica replaced."""
        error = await self._ready()
        if error:
            raise RuntimeError(f"{self.stage_label} cannot serve: {error}")


@serve.deployment(name="Embedding", max_ongoing_requests=64)
class EmbeddingDeployment(StageHost, service="echo.v1.Embedding"):
    """open_clip image and text towers; images batched across requests by `@serve.batch`."""

    async def __init__(self, args: StageArgs) -> None:
        from services.stages import embedding as build_stage

        settings = self._settings(args, "embedding")
        self._host(await build_stage(settings, batcher_factory=ServeBatcher), "embedding", settings)


@serve.deployment(name="Retrieval", max_ongoing_requests=64)
class RetrievalDeployment(StageHost, service="echo.v1.Retrieval"):
    """The memory of normal images (Qdrant)."""

    async def __init__(self, args: StageArgs) -> None:
        from services.stages import retrieval as build_stage

        settings = self._settings(args, "retrieval")
        self._host(await build_stage(settings), "retrieval", settings)


@serve.deployment(name="Knowledge", max_ongoing_requests=64)
class KnowledgeDeployment(StageHost, service="echo.v1.Knowledge"):
    """Knowledge entries and context-specific extraction."""

    async def __init__(self, args: StageArgs) -> None:
        from services.stages import knowledge as build_stage

        settings = self._settings(args, "knowledge")
        self._host(await build_stage(settings), "knowledge", settings)


@serve.deployment(name="Decision", max_ongoing_requests=64)
class DecisionDeployment(StageHost, service="echo.v1.Decision"):
    """The MLLM; the local transformers backend batches with `@serve.batch`."""

    async def __init__(self, args: StageArgs) -> None:
        from services.stages import decision as build_stage

        settings = self._settings(args, "decision")
        self._host(await build_stage(settings, batcher_factory=ServeBatcher), "decision", settings)


@serve.deployment(name="Evidence", max_ongoing_requests=64)
class EvidenceDeployment(StageHost, service="echo.v1.Evidence"):
    """The visual evidence expert (patch features against the banks of normal patches; `@serve.batch`).

    Every replica opens the same bank store (evidence.bank_store, an fsspec URL in the cluster) and reloads a
    bank another replica changed within evidence.reload_check_s.
    """

    async def __init__(self, args: StageArgs) -> None:
        from services.stages import evidence as build_stage

        settings = self._settings(args, "evidence")
        self._host(await build_stage(settings, batcher_factory=ServeBatcher), "evidence", settings)


@serve.deployment(name="Inspector", max_ongoing_requests=64)
class InspectorDeployment(StageHost, service="echo.v1.Inspector"):
    """The gateway: calls the stage applications over gRPC through the proxy, as in embedded mode."""

    async def __init__(self, args: GatewayArgs) -> None:
        from services.stages import gateway as build_stage

        settings = self._settings(args, "inspector")
        self._host(await build_stage(settings, args.proxy_address), "inspector", settings)

    async def check_health(self) -> None:
        """Liveness of the gateway itself; readiness (every stage) is the gRPC Health/Check."""
