"""Thin Ray Serve wrappers: each deployment hosts one stage, built by services/<stage>/server.py.

A stage is built whole, with what the replica needs passed in (`@serve.batch`'s
batcher); nothing is swapped afterwards.

Serve's gRPC proxy calls a deployment method named after the RPC with the
request proto and a `grpc_context` (a picklable RayServegRPCContext, not a
grpc.aio context). The servicers report errors with `context.abort()` (via
@grpc_errors); `ServeContext` turns that into `grpc_context.set_code/details`
so callers receive the real status code, not INTERNAL (DESIGN §6).

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
from services.common.serve_batching import ServeBatcher
from services.common.serving import Stage
from services.common.telemetry import continued_trace, rpc_metrics, setup_tracing
from services.config import EchoSettings

log = logging.getLogger(__name__)
HEALTH_CACHE_S = 1.0  # health probes from many callers share one real request per second
HEALTH_ANSWER_S = 0.5  # a health probe slower than this (a busy replica) answers the last verdict meanwhile


class _Aborted(grpc.aio.AbortError):
    """Raised by ServeContext.abort; @grpc_errors lets it through."""


class ServeContext:
    """The part of grpc.aio.ServicerContext our servicers use, over Serve's RayServegRPCContext.

    The proxy does not forward the caller's deadline, so time_remaining() is None
    and stages fall back to their configured timeouts (the gateway: the request's
    deadline_ms, else gateway.default_deadline_ms).
    """

    def __init__(self, grpc_context: Any | None) -> None:
        self.serve_context = grpc_context
        self._code: grpc.StatusCode | None = None
        self._details = ""

    async def abort(self, code: grpc.StatusCode, details: str = "") -> None:
        self.set_code(code)
        self.set_details(details)
        raise _Aborted(details)

    def set_code(self, code: grpc.StatusCode) -> None:
        self._code = code
        if self.serve_context is not None:
            self.serve_context.set_code(code)

    def set_details(self, details: str) -> None:
        self._details = details
        if self.serve_context is not None:
            self.serve_context.set_details(details)

    def code(self) -> grpc.StatusCode | None:
        return self._code

    def details(self) -> str:
        return self._details

    def time_remaining(self) -> float | None:
        return None

    def invocation_metadata(self) -> list[tuple[str, str]]:
        return list(self.serve_context.invocation_metadata()) if self.serve_context is not None else []

    def peer(self) -> str:
        return self.serve_context.peer() if self.serve_context is not None else ""


_RESPONSE_TYPES: dict[tuple[str, str], type[Message]] = {}


def response_type(service: str, method: str) -> type[Message]:
    """The response message class of `service/method` (e.g. echo.v1.Embedding, EmbedImages)."""
    key = (service, method)
    if key not in _RESPONSE_TYPES:
        desc = descriptor_pool.Default().FindServiceByName(service).methods_by_name[method]
        _RESPONSE_TYPES[key] = GetMessageClass(desc.output_type)
    return _RESPONSE_TYPES[key]


class StageHost:
    """Hosts one stage (servicer + health + token checks) in a Serve replica; subclasses add one method per RPC."""

    stage: Stage
    stage_label: str
    authorizer: Authorizer

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
        ctx = ServeContext(grpc_context)
        service = self.stage.service_name
        with continued_trace(ctx.invocation_metadata(), f"{service}/{method}"), rpc_metrics(service, method) as outcome:
            try:
                identity = self.authorizer.authenticate(service, ctx.invocation_metadata())
                self.authorizer.authorize(identity, service, method, request)
                return await getattr(self.stage.servicer, method)(request, ctx)
            except EchoError as e:
                ctx.set_code(e.code)
                ctx.set_details(e.message)
                return response_type(service, method)()
            except _Aborted:
                return response_type(service, method)()  # the status set on grpc_context is what the caller gets
            finally:
                code = ctx.code()
                outcome.code = code.name if code else "OK"

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
class EmbeddingDeployment(StageHost):
    """open_clip image and text towers; images batched across requests by `@serve.batch`."""

    async def __init__(self, args: StageArgs) -> None:
        from services.stages import embedding as build_stage

        settings = self._settings(args, "embedding")
        self._host(await build_stage(settings, batcher_factory=ServeBatcher), "embedding", settings)

    async def EmbedImages(self, request: Any, grpc_context: Any = None) -> Any:
        return await self._rpc("EmbedImages", request, grpc_context)

    async def EmbedTexts(self, request: Any, grpc_context: Any = None) -> Any:
        return await self._rpc("EmbedTexts", request, grpc_context)


@serve.deployment(name="Retrieval", max_ongoing_requests=64)
class RetrievalDeployment(StageHost):
    """The memory of normal images (Qdrant)."""

    async def __init__(self, args: StageArgs) -> None:
        from services.stages import retrieval as build_stage

        settings = self._settings(args, "retrieval")
        self._host(await build_stage(settings), "retrieval", settings)

    async def Upsert(self, request: Any, grpc_context: Any = None) -> Any:
        return await self._rpc("Upsert", request, grpc_context)

    async def Search(self, request: Any, grpc_context: Any = None) -> Any:
        return await self._rpc("Search", request, grpc_context)

    async def Delete(self, request: Any, grpc_context: Any = None) -> Any:
        return await self._rpc("Delete", request, grpc_context)

    async def Stats(self, request: Any, grpc_context: Any = None) -> Any:
        return await self._rpc("Stats", request, grpc_context)

    async def InferCategory(self, request: Any, grpc_context: Any = None) -> Any:
        return await self._rpc("InferCategory", request, grpc_context)


@serve.deployment(name="Knowledge", max_ongoing_requests=64)
class KnowledgeDeployment(StageHost):
    """Knowledge entries and context-specific extraction."""

    async def __init__(self, args: StageArgs) -> None:
        from services.stages import knowledge as build_stage

        settings = self._settings(args, "knowledge")
        self._host(await build_stage(settings), "knowledge", settings)

    async def GetContext(self, request: Any, grpc_context: Any = None) -> Any:
        return await self._rpc("GetContext", request, grpc_context)

    async def PutEntry(self, request: Any, grpc_context: Any = None) -> Any:
        return await self._rpc("PutEntry", request, grpc_context)

    async def ListEntries(self, request: Any, grpc_context: Any = None) -> Any:
        return await self._rpc("ListEntries", request, grpc_context)


@serve.deployment(name="Decision", max_ongoing_requests=64)
class DecisionDeployment(StageHost):
    """The MLLM; the local transformers backend batches with `@serve.batch`."""

    async def __init__(self, args: StageArgs) -> None:
        from services.stages import decision as build_stage

        settings = self._settings(args, "decision")
        self._host(await build_stage(settings, batcher_factory=ServeBatcher), "decision", settings)

    async def Decide(self, request: Any, grpc_context: Any = None) -> Any:
        return await self._rpc("Decide", request, grpc_context)

    async def Complete(self, request: Any, grpc_context: Any = None) -> Any:
        return await self._rpc("Complete", request, grpc_context)


@serve.deployment(name="Evidence", max_ongoing_requests=64)
class EvidenceDeployment(StageHost):
    """The visual evidence expert (patch features against the banks of normal patches; `@serve.batch`).

    Every replica opens the same bank store (evidence.bank_store, an fsspec URL in the cluster) and reloads a
    bank another replica changed within evidence.reload_check_s.
    """

    async def __init__(self, args: StageArgs) -> None:
        from services.stages import evidence as build_stage

        settings = self._settings(args, "evidence")
        self._host(await build_stage(settings, batcher_factory=ServeBatcher), "evidence", settings)

    async def Analyze(self, request: Any, grpc_context: Any = None) -> Any:
        return await self._rpc("Analyze", request, grpc_context)

    async def AddNormalImages(self, request: Any, grpc_context: Any = None) -> Any:
        return await self._rpc("AddNormalImages", request, grpc_context)

    async def BankStats(self, request: Any, grpc_context: Any = None) -> Any:
        return await self._rpc("BankStats", request, grpc_context)

    async def DeleteBank(self, request: Any, grpc_context: Any = None) -> Any:
        return await self._rpc("DeleteBank", request, grpc_context)


@serve.deployment(name="Inspector", max_ongoing_requests=64)
class InspectorDeployment(StageHost):
    """The gateway: calls the stage applications over gRPC through the proxy, as in embedded mode."""

    async def __init__(self, args: GatewayArgs) -> None:
        from services.stages import gateway as build_stage

        settings = self._settings(args, "inspector")
        self._host(await build_stage(settings, args.proxy_address), "inspector", settings)

    async def Inspect(self, request: Any, grpc_context: Any = None) -> Any:
        return await self._rpc("Inspect", request, grpc_context)

    async def AddNormalImages(self, request: Any, grpc_context: Any = None) -> Any:
        return await self._rpc("AddNormalImages", request, grpc_context)

    async def ListNormalImages(self, request: Any, grpc_context: Any = None) -> Any:
        return await self._rpc("ListNormalImages", request, grpc_context)

    async def DeleteNormalImages(self, request: Any, grpc_context: Any = None) -> Any:
        return await self._rpc("DeleteNormalImages", request, grpc_context)

    async def ListProducts(self, request: Any, grpc_context: Any = None) -> Any:
        return await self._rpc("ListProducts", request, grpc_context)

    async def ListInspections(self, request: Any, grpc_context: Any = None) -> Any:
        return await self._rpc("ListInspections", request, grpc_context)

    async def GetInspection(self, request: Any, grpc_context: Any = None) -> Any:
        return await self._rpc("GetInspection", request, grpc_context)

    async def GetImage(self, request: Any, grpc_context: Any = None) -> Any:
        return await self._rpc("GetImage", request, grpc_context)

    async def ListLines(self, request: Any, grpc_context: Any = None) -> Any:
        return await self._rpc("ListLines", request, grpc_context)

    async def PutKnowledge(self, request: Any, grpc_context: Any = None) -> Any:
        return await self._rpc("PutKnowledge", request, grpc_context)

    async def GetKnowledge(self, request: Any, grpc_context: Any = None) -> Any:
        return await self._rpc("GetKnowledge", request, grpc_context)

    async def check_health(self) -> None:
        """Liveness of the gateway itself; readiness (every stage) is the gRPC Health/Check."""
