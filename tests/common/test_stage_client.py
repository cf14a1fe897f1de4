"""The one stage-client path: a caller outside the gateway (the knowledge stage's refiner) gets the same retry
policy and the same UNAVAILABLE naming the stage as the gateway's calls, over a real gRPC server."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest

from echo.v1 import decision_pb2, decision_pb2_grpc
from services.common.ports import free_port
from services.common.stage_client import StageCallError
from services.knowledge.decision_refiner import DecisionRefiner
from services.knowledge.refine import RefineInput

INPUT = RefineInput("Synthetic", "round_part", "Defect Classification", "What is the defect?", ("crack",), "A crack.")


class FlakyDecision(decision_pb2_grpc.DecisionServicer):
    """Complete answers UNAVAILABLE `failures` times (a replica restarting), then answers."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0

    async def Complete(self, request, context):  # type: ignore[no-untyped-def]
        self.calls += 1
        if self.calls <= self.failures:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "replica restarting")
        return decision_pb2.CompleteResponse(text=f"refined: {request.prompt[:8]}", model_id="flaky-model")


@pytest.fixture
async def flaky() -> AsyncIterator[tuple[FlakyDecision, str]]:
    servicer = FlakyDecision(failures=2)
    server = grpc.aio.server()
    decision_pb2_grpc.add_DecisionServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield servicer, f"127.0.0.1:{port}"
    finally:
        await server.stop(None)


async def test_the_refiner_retries_unavailable_as_the_gateway_does(flaky: tuple[FlakyDecision, str]) -> None:
    servicer, address = flaky
    refiner = DecisionRefiner(address, timeout_s=10)
    try:
        text = await refiner(INPUT)
    finally:
        await refiner.close()
    assert servicer.calls == 3 and text.startswith("refined: ") and refiner.model_id == "flaky-model"


async def test_the_refiner_names_the_decision_stage_when_nothing_answers() -> None:
    refiner = DecisionRefiner(f"127.0.0.1:{free_port()}", timeout_s=5)
    try:
        with pytest.raises(StageCallError) as err:
            await refiner(INPUT)
    finally:
        await refiner.close()
    assert err.value.code == grpc.StatusCode.UNAVAILABLE and err.value.stage == "decision"
    assert str(err.value).startswith("decision stage: UNAVAILABLE")
