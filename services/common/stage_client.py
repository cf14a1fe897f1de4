"""The one way to call a stage: a share of the deadline per call, gRPC's retry policy, health checks.

The gateway's StageClients (services/gateway/clients.py), the knowledge stage's refiner (the decision stage's
Complete RPC) and the CLI's direct calls to a stage all call through StageClient, so each gets the same
deadlines, retries and the same UNAVAILABLE naming the stage when it stops answering.

Retries are gRPC's own retry policy, as in the client library: UNAVAILABLE is
retried with backoff (`gateway.<stage>.retries` times) inside the call's
deadline, for every method but Decide, which is not idempotent (a retried
decision could run the model twice).

A stage can stop answering without refusing: on Ray Serve, calls to a stage
whose every replica was on a dead node wait in the proxy's queue until a
replica comes back, and calls in flight on that node fail as INTERNAL. So a
call that fails with a code the stage does not send on purpose asks the
stage's gRPC health check, and a stage that is not SERVING fails the call with
UNAVAILABLE naming the stage. A call that stalls while the stage answers no
other call asks too, and gives up (UNAVAILABLE naming the stage, within the
deadline) only when the stage is unreachable: its health check gets no answer
or fails in the proxy. A stage that answers, even NOT_SERVING, has a replica
that will answer the call; one that answers other calls is busy; one that
refuses new connections while the call stays open is draining after SIGTERM.
Those calls wait, bounded by their deadline.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from pydantic import Field

from echo.v1 import decision_pb2_grpc, embedding_pb2_grpc, evidence_pb2_grpc, knowledge_pb2_grpc, retrieval_pb2_grpc
from services.common.auth import bearer
from services.common.errors import EchoError
from services.common.inprocess import InProcessChannel
from services.common.section import Section
from services.common.serving import channel_options, retry_options
from services.common.telemetry import client_interceptors

STUBS = {
    "embedding": embedding_pb2_grpc.EmbeddingStub,
    "retrieval": retrieval_pb2_grpc.RetrievalStub,
    "knowledge": knowledge_pb2_grpc.KnowledgeStub,
    "decision": decision_pb2_grpc.DecisionStub,
    "evidence": evidence_pb2_grpc.EvidenceStub,
}
STAGE_SERVICES = {
    "embedding": "echo.v1.Embedding",
    "retrieval": "echo.v1.Retrieval",
    "knowledge": "echo.v1.Knowledge",
    "decision": "echo.v1.Decision",
    "evidence": "echo.v1.Evidence",
}
NOT_IDEMPOTENT = ("echo.v1.Decision/Decide",)
DEGRADED_METADATA_KEY = "echo-degraded"  # trailing metadata a stage sends when it served in a reduced way
_MIN_STAGE_TIMEOUT_S = 0.005
_CALLER_ERRORS = {grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.INVALID_ARGUMENT}
# Codes a stage does not answer on purpose (a dead replica, a cut connection, a timeout): ask the stage's health.
_ASK_HEALTH = {
    grpc.StatusCode.INTERNAL,
    grpc.StatusCode.UNKNOWN,
    grpc.StatusCode.CANCELLED,
    grpc.StatusCode.DEADLINE_EXCEEDED,
}
# Ray Serve's proxy answers INTERNAL for any exception, a replica's death included: the text of Ray's
# ActorDiedError / ActorUnavailableError ("The actor ... is unavailable: ... Socket closed ... rpc_code: 14",
# "The actor died because its node has died") is how a call in flight on a lost node ends. The health check
# cannot tell (it may still answer SERVING from another moment, or from the cache), so the text decides.
_REPLICA_LOST = re.compile(r"\bThe actor\b.*\b(?:is unavailable|died|is dead)\b|\brpc_code: 14\b", re.DOTALL)
HEALTH_CACHE_S = 1.0  # many stalled calls share one health check per second


class StageEndpoint(Section):
    address: str = Field("", description="host:port of the stage; empty: this process (embedded mode).")
    application: str = Field("", description="Ray Serve application name, sent as 'application' metadata.")
    timeout_share: float = Field(0.5, gt=0, le=1, description="Fraction of the remaining deadline this stage may use.")
    retries: int = Field(2, ge=0, description="Retries for idempotent calls on UNAVAILABLE.")
    stall_probe_ms: float = Field(
        2000,
        ge=0,
        description=(
            "A call still unanswered after this long, while the stage answers no other call, asks the stage's gRPC "
            "health check (again every as long while it waits); when that gets no answer the call fails at once "
            "with UNAVAILABLE naming the stage, instead of waiting out the deadline (a Ray Serve stage whose node "
            "died queues calls). 0: never ask."
        ),
    )
    probe_timeout_ms: float = Field(
        5000, gt=0, description="A health check that takes longer counts as the stage not serving."
    )


def stage_channel(
    address: str,
    retries: Mapping[str, int],
    max_message_mb: int = 32,
    *,
    local: InProcessChannel | None = None,
) -> grpc.aio.Channel:
    """A channel to the stages at `address` with their retry policy (stage name -> retries on UNAVAILABLE; never
    for a method that is not idempotent); `local`: this process's own stages, the same policy without the socket."""
    policy = retry_options(
        {STAGE_SERVICES[name]: n for name, n in retries.items()},
        never=NOT_IDEMPOTENT,
        initial_backoff_s=0.02,
        max_backoff_s=0.5,
    )
    options = channel_options(max_message_mb) + policy
    if local is not None:
        return local.with_options(options)
    return grpc.aio.insecure_channel(address, options=options, interceptors=client_interceptors())


@dataclass
class Deadline:
    """An absolute deadline on the monotonic clock."""

    expires_at: float

    @classmethod
    def after_ms(cls, ms: float) -> Deadline:
        return cls(time.monotonic() + ms / 1000.0)

    def remaining(self) -> float:
        return self.expires_at - time.monotonic()


class StageCallError(EchoError):
    """A stage failed; the Inspector answers with the same code, the stage named in the message."""

    def __init__(self, stage: str, code: grpc.StatusCode, details: str) -> None:
        self.stage = stage
        self.code = code
        self.details = details
        super().__init__(f"{stage} stage: {code.name}: {details}")

    @classmethod
    def refused(cls, stage: str, details: str) -> StageCallError:
        """The stage cannot serve this request as asked (FAILED_PRECONDITION)."""
        return cls(stage, grpc.StatusCode.FAILED_PRECONDITION, details)

    @property
    def caller_error(self) -> bool:
        """The request itself was refused (bad input, nothing in memory): the caller's problem, not an outage."""
        return self.code in _CALLER_ERRORS


def _consume(task: asyncio.Future[Any]) -> None:
    """Retrieve an abandoned call's outcome: its caller already has its own error."""
    if not task.cancelled():
        task.exception()


class StageClient:
    """Calls one stage's RPCs under a share of the request's deadline."""

    def __init__(
        self,
        name: str,
        channel: grpc.aio.Channel,
        endpoint: StageEndpoint,
        token: str = "",
        *,
        owns_channel: bool = False,
    ) -> None:
        self.name = name
        self._owns_channel = owns_channel
        self.endpoint = endpoint
        self.channel = channel
        self.stub = STUBS[name](channel)
        metadata = [("application", endpoint.application)] if endpoint.application else []
        if token:
            metadata.append(bearer(token))
        self.metadata = tuple(metadata) or None
        self._health: tuple[float, str | None] | None = None  # (when, problem) of the last health check
        self._unreachable = False  # the last health check got no status back (no answer, or failed past the front)
        self._probe: asyncio.Future[str | None] | None = None
        self._answered_at = 0.0  # when the stage last answered a call (monotonic clock)

    async def close(self) -> None:
        """Close the channel if this client opened it (connect_stage); a shared one is its owner's to close."""
        if self._owns_channel:
            await self.channel.close()

    async def health_problem(self, max_age_s: float = HEALTH_CACHE_S) -> str | None:
        """None when the stage answers its gRPC health check SERVING, else why not.

        One check at a time: callers join the check in flight, or take an answer younger than max_age_s.
        """
        if self._health is not None and time.monotonic() - self._health[0] < max_age_s:
            return self._health[1]
        if self._probe is None or self._probe.done():
            self._probe = asyncio.ensure_future(self._check_health())
        return await asyncio.shield(self._probe)  # a caller that gives up does not cancel the others' check

    async def _check_health(self) -> str | None:
        timeout = self.endpoint.probe_timeout_ms / 1000.0
        request = health_pb2.HealthCheckRequest(service=STAGE_SERVICES[self.name])
        self._unreachable = False
        try:
            resp = await health_pb2_grpc.HealthStub(self.channel).Check(
                request, timeout=timeout, metadata=self.metadata
            )
            problem = None
            if resp.status != health_pb2.HealthCheckResponse.SERVING:
                problem = f"health check: {health_pb2.HealthCheckResponse.ServingStatus.Name(resp.status)}"
        except grpc.aio.AioRpcError as e:
            self._unreachable = e.code() != grpc.StatusCode.UNAVAILABLE  # UNAVAILABLE: refused, i.e. draining
            problem = (
                f"no answer to its health check within {timeout:.1f}s"
                if e.code() == grpc.StatusCode.DEADLINE_EXCEEDED
                else f"health check: {e.code().name}: {e.details()}"
            )
        self._health = (time.monotonic(), problem)
        return problem

    async def _watch(self, call: Any, method: str, deadline: Deadline) -> Any:
        """The call's response; while it stalls, ask the stage's health every stall_probe_ms, give up if unreachable."""
        stall_s = self.endpoint.stall_probe_ms / 1000.0
        if stall_s <= 0:
            return await call
        started = time.monotonic()
        pending = asyncio.ensure_future(call)
        try:
            while True:
                done, _ = await asyncio.wait({pending}, timeout=stall_s)
                if done:
                    return pending.result()
                if time.monotonic() - self._answered_at < stall_s:
                    continue  # it answered another call meanwhile: busy, not gone
                probe = asyncio.ensure_future(self.health_problem())
                done, _ = await asyncio.wait(
                    {pending, probe}, timeout=max(0.0, deadline.remaining()), return_when=asyncio.FIRST_COMPLETED
                )
                if pending in done or not done:  # answered, or the deadline came first: the call says how it ended
                    probe.cancel()
                    return await pending
                problem = probe.result()
                if problem and self._unreachable:
                    waited = f"{method} waited {time.monotonic() - started:.1f}s"
                    raise StageCallError(self.name, grpc.StatusCode.UNAVAILABLE, f"not serving ({problem}); {waited}")
        finally:
            if not pending.done():
                call.cancel()
            # When its caller left (cancelled, or the deadline) the call still ends, often with the very
            # DEADLINE_EXCEEDED that made the caller leave, maybe in the same turn of the loop, and nobody awaits
            # it: consume that status, or the garbage collector prints it as "Task exception was never retrieved".
            pending.add_done_callback(_consume)

    async def _why_not_serving(self, deadline: Deadline) -> str | None:
        """The stage's health problem if one is known before the deadline, else None."""
        try:
            return await asyncio.wait_for(self.health_problem(), timeout=max(0.0, deadline.remaining()))
        except TimeoutError:
            return None

    async def call(self, method: str, request: Any, deadline: Deadline, *, degraded: list[str] | None = None) -> Any:
        """One RPC under a share of the deadline; a stage's `echo-degraded` trailer is appended to `degraded`."""
        remaining = deadline.remaining()
        if remaining <= _MIN_STAGE_TIMEOUT_S:
            raise StageCallError(self.name, grpc.StatusCode.DEADLINE_EXCEEDED, "no time left before the deadline")
        timeout = max(_MIN_STAGE_TIMEOUT_S, remaining * self.endpoint.timeout_share)
        try:
            call = getattr(self.stub, method)(request, timeout=timeout, metadata=self.metadata)
            response = await self._watch(call, method, deadline)
            self._answered_at = time.monotonic()
            if degraded is not None:
                for key, value in await call.trailing_metadata() or ():
                    if key == DEGRADED_METADATA_KEY:
                        degraded.append(f"{self.name}: {value}")
            return response
        except grpc.aio.AioRpcError as e:
            if e.code() not in _ASK_HEALTH | {grpc.StatusCode.UNAVAILABLE}:
                self._answered_at = time.monotonic()  # a refusal the stage meant: it is alive
            if e.code() in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN) and _REPLICA_LOST.search(
                e.details() or ""
            ):
                raise StageCallError(
                    self.name,
                    grpc.StatusCode.UNAVAILABLE,
                    f"replica lost during {method} (the serving actor died or became unreachable); "
                    "retry once the stage is back",
                ) from None
            if e.code() in _ASK_HEALTH and (problem := await self._why_not_serving(deadline)):
                raise StageCallError(
                    self.name,
                    grpc.StatusCode.UNAVAILABLE,
                    f"not serving ({problem}); {method} failed with {e.code().name}: {e.details()}",
                ) from None
            raise StageCallError(self.name, e.code(), e.details() or "") from None


def connect_stage(
    name: str, address: str, endpoint: StageEndpoint | None = None, *, token: str = "", max_message_mb: int = 32
) -> StageClient:
    """A client of one stage on its own channel (closed with the client): for callers of a single stage."""
    endpoint = endpoint or StageEndpoint()
    channel = stage_channel(address, {name: endpoint.retries}, max_message_mb)
    return StageClient(name, channel, endpoint, token, owns_channel=True)
