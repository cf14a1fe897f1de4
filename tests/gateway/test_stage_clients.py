"""A stage that stops answering is UNAVAILABLE, named, within the deadline; a slow but serving stage is waited for.

Each test runs a real gRPC server in the shape of a stage that lost its replicas
(on Ray Serve the proxy queues such calls and the health check gets no answer)
or of a stage that is slow, and calls it through the gateway's StageClient.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from echo.v1 import decision_pb2, decision_pb2_grpc
from services.common.errors import Unavailable
from services.common.stage_client import STAGE_SERVICES, Deadline, StageCallError
from services.gateway.clients import StageClients
from services.gateway.config import GatewaySettings
from services.gateway.servicer import check_stages


@dataclass
class Behaviour:
    decide_s: float | None = 0.0  # None: never answer
    decide_code: grpc.StatusCode | None = None  # abort with this code instead of answering
    decide_details: str = "boom"
    health: str = "SERVING"  # SERVING, NOT_SERVING, or SILENT (the check never answers)


class Decision(decision_pb2_grpc.DecisionServicer):
    def __init__(self, behaviour: Behaviour) -> None:
        self.behaviour = behaviour

    async def Decide(self, request, context):  # type: ignore[no-untyped-def]
        if request.request_id == "quick":
            return decision_pb2.DecideResponse(answer="B")
        if self.behaviour.decide_s is None:
            await asyncio.Event().wait()
        await asyncio.sleep(self.behaviour.decide_s)
        if self.behaviour.decide_code is not None:
            await context.abort(self.behaviour.decide_code, self.behaviour.decide_details)
        return decision_pb2.DecideResponse(answer="A")


class Health(health.aio.HealthServicer):
    def __init__(self, behaviour: Behaviour) -> None:
        super().__init__()
        self.behaviour = behaviour
        self.checks = 0

    async def Check(self, request, context):  # type: ignore[no-untyped-def]
        self.checks += 1
        if self.behaviour.health == "SILENT":
            await asyncio.Event().wait()
        status = health_pb2.HealthCheckResponse.ServingStatus.Value(self.behaviour.health)
        return health_pb2.HealthCheckResponse(status=status)


@dataclass
class Stage:
    behaviour: Behaviour
    health: Health
    clients: StageClients
    server: grpc.aio.Server


@pytest.fixture
async def stage() -> AsyncIterator[Stage]:
    behaviour = Behaviour()
    server = grpc.aio.server()
    decision_pb2_grpc.add_DecisionServicer_to_server(Decision(behaviour), server)
    checker = Health(behaviour)
    health_pb2_grpc.add_HealthServicer_to_server(checker, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    settings = GatewaySettings()
    for name in STAGE_SERVICES:
        endpoint = getattr(settings, name)
        endpoint.stall_probe_ms, endpoint.probe_timeout_ms = 200, 300
    clients = StageClients(settings, f"127.0.0.1:{port}")
    try:
        yield Stage(behaviour, checker, clients, server)
    finally:
        await clients.close()
        await server.stop(None)


async def decide(
    stage: Stage, deadline_s: float = 10.0, request_id: str = ""
) -> tuple[float, decision_pb2.DecideResponse]:
    start = time.monotonic()
    resp = await stage.clients["decision"].call(
        "Decide",
        decision_pb2.DecideRequest(request_id=request_id),
        Deadline.after_ms(deadline_s * 1000),
    )
    return time.monotonic() - start, resp


async def test_a_stage_that_stops_answering_is_unavailable_naming_it_long_before_the_deadline(stage: Stage) -> None:
    stage.behaviour.decide_s, stage.behaviour.health = None, "SILENT"
    start = time.monotonic()
    with pytest.raises(StageCallError) as e:
        await decide(stage, deadline_s=10.0)
    took = time.monotonic() - start
    assert e.value.code == grpc.StatusCode.UNAVAILABLE
    assert str(e.value).startswith("decision stage: UNAVAILABLE: not serving (no answer to its health check")
    assert "Decide waited" in str(e.value)
    assert 0.4 < took < 2.0  # stall probe (0.2 s) + health timeout (0.3 s), far from the 10 s deadline


async def test_a_slow_stage_that_reports_serving_is_waited_for(stage: Stage) -> None:
    stage.behaviour.decide_s = 1.0  # five stall periods
    took, resp = await decide(stage)
    assert resp.answer == "A" and took >= 1.0
    assert 1 <= stage.health.checks <= 3  # probes share one check per second


async def test_a_stage_that_answers_other_calls_is_busy_not_gone_and_is_not_asked(stage: Stage) -> None:
    stage.behaviour.decide_s, stage.behaviour.health = 1.0, "SILENT"  # a health check would say "gone"
    slow = asyncio.ensure_future(decide(stage))
    while not slow.done():  # other calls keep being answered meanwhile
        await decide(stage, request_id="quick")
        await asyncio.sleep(0.05)
    took, resp = slow.result()
    assert resp.answer == "A" and took >= 1.0
    assert stage.health.checks == 0


async def test_a_stage_draining_after_sigterm_finishes_the_call_it_has(stage: Stage) -> None:
    stage.behaviour.decide_s = 1.0  # five stall periods, and the health check is refused once it stops listening
    slow = asyncio.ensure_future(decide(stage))
    await asyncio.sleep(0.1)
    stopping = asyncio.ensure_future(stage.server.stop(5.0))  # what SIGTERM does: no new calls, in-flight finish
    took, resp = await slow
    assert resp.answer == "A" and took >= 1.0
    await stopping


async def test_a_stalled_stage_whose_health_check_answers_not_serving_is_reachable_and_waited_for(
    stage: Stage,
) -> None:
    stage.behaviour.decide_s, stage.behaviour.health = 1.0, "NOT_SERVING"  # e.g. busy past its health timeout
    took, resp = await decide(stage)
    assert resp.answer == "A" and took >= 1.0  # a replica answered the check: it will answer the call too
    assert stage.health.checks >= 1


async def test_an_internal_error_is_unavailable_only_when_the_stage_is_not_serving(stage: Stage) -> None:
    stage.behaviour.decide_code = grpc.StatusCode.INTERNAL
    with pytest.raises(StageCallError) as e:
        await decide(stage)
    assert e.value.code == grpc.StatusCode.INTERNAL  # a bug in a serving stage stays what it is
    stage.clients["decision"]._health = None  # forget the cached SERVING
    stage.behaviour.health = "NOT_SERVING"  # e.g. the replica died while serving the call
    with pytest.raises(StageCallError) as e:
        await decide(stage)
    assert e.value.code == grpc.StatusCode.UNAVAILABLE
    assert "decision stage: UNAVAILABLE: not serving (health check: NOT_SERVING); Decide failed with INTERNAL" in str(
        e.value
    )


@pytest.mark.parametrize(
    "details",
    [  # what Ray Serve 2.60's proxy sends (str of Ray's ActorUnavailableError / ActorDiedError) for a lost replica
        "The actor 5a1f6c0e2b is unavailable: RPC Error message: Socket closed; RPC Error details: rpc_code: 14. "
        "The task may or may not have been executed on the actor.",
        "The actor died because its node has died. Node Id: 3c9e",
        "The actor died unexpectedly before finishing this task.",
    ],
)
async def test_a_replica_lost_mid_call_is_unavailable_naming_the_stage_even_while_health_says_serving(
    stage: Stage, details: str
) -> None:
    stage.behaviour.decide_code, stage.behaviour.decide_details = grpc.StatusCode.INTERNAL, details
    with pytest.raises(StageCallError) as e:
        await decide(stage)
    assert e.value.code == grpc.StatusCode.UNAVAILABLE
    assert str(e.value).startswith("decision stage: UNAVAILABLE: replica lost during Decide")
    assert "5a1f" not in str(e.value) and "3c9e" not in str(e.value)  # no actor or node ids leak to the line


async def test_the_deadline_bounds_a_stalled_call_when_no_health_verdict_fits(stage: Stage) -> None:
    stage.behaviour.decide_s, stage.behaviour.health = None, "SILENT"
    stage.clients["decision"].endpoint.probe_timeout_ms = 5000  # longer than the deadline
    start = time.monotonic()
    with pytest.raises(StageCallError) as e:
        await decide(stage, deadline_s=1.0)
    assert e.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
    assert time.monotonic() - start < 1.5


async def test_the_gateway_health_names_every_stage_that_is_not_serving(stage: Stage) -> None:
    stage.behaviour.health = "SILENT"
    start = time.monotonic()
    with pytest.raises(Unavailable) as e:
        await check_stages(stage.clients)
    assert time.monotonic() - start < 1.0  # every stage asked at once
    for name in STAGE_SERVICES:
        assert f"{name} stage: no answer to its health check within 0.3s" in str(e.value)
