"""The Decision gRPC service on a real socket: health runs a real decision; bad input names the field."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from echo.v1 import common_pb2, decision_pb2, decision_pb2_grpc
from services.common.serving import channel_options, start_server
from services.decision.backends.local import TransformersBackend
from services.decision.core import DecisionMaker
from services.decision.server import SERVICE_NAME, build_stage, stage_for

YN = {"A": "Yes.", "B": "No."}


@pytest.fixture
async def channel(settings, local_model) -> AsyncIterator[grpc.aio.Channel]:
    """The stage as build_stage makes it, over the session's already-loaded model, on a free port."""
    decider = DecisionMaker(TransformersBackend.from_settings(settings, local_model), settings)
    stage = stage_for(decider)
    server, port, _ = await start_server([stage], "127.0.0.1", 0)
    ch = grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=channel_options())
    yield ch
    await ch.close()
    await server.stop(0)
    await decider.close()


async def test_build_stage_loads_the_configured_backend_and_passes_health(settings) -> None:
    stage = await build_stage(settings)
    try:
        assert stage.service_name == "echo.v1.Decision"
        assert await stage.healthy()
    finally:
        await stage.servicer.decider.close()  # type: ignore[attr-defined]
    random_stage = await build_stage(settings.model_copy(update={"backend": "random"}))
    assert await random_stage.healthy()


def _request(png, **kw) -> decision_pb2.DecideRequest:
    kw.setdefault("query_image", common_pb2.Image(data=png(1)))
    kw.setdefault("question", common_pb2.Question(text="Is there any defect in the object?", options=YN))
    return decision_pb2.DecideRequest(**kw)


async def test_health_is_serving_after_a_real_decision(channel: grpc.aio.Channel) -> None:
    health = health_pb2_grpc.HealthStub(channel)
    resp = await health.Check(health_pb2.HealthCheckRequest(service=SERVICE_NAME))
    assert resp.status == health_pb2.HealthCheckResponse.SERVING


async def test_decide_with_bytes_and_uri_returns_answer_timings_and_prompt(
    channel: grpc.aio.Channel, png, tmp_path: Path
) -> None:
    ref = tmp_path / "ref.png"
    ref.write_bytes(png(2, 84))
    stub = decision_pb2_grpc.DecisionStub(channel)
    r = await stub.Decide(
        _request(
            png,
            reference_images=[common_pb2.Image(uri=str(ref))],
            knowledge="Normal: even grey.",
            return_prompt=True,
            category="tile",
            request_id="t1",
        )
    )
    assert r.answer in YN and not r.unparsed and r.raw_reply == r.answer
    assert r.prompt.count("<|vision_start|><|image_pad|><|vision_end|>") == 2 and "Normal: even grey." in r.prompt
    assert r.model_id == "echo-tiny-qwen2-vl" and r.compute_ms > 0 and r.preprocess_ms > 0
    assert r.prompt_tokens > 0 and r.completion_tokens == 1
    quiet = await stub.Decide(_request(png))
    assert quiet.prompt == ""  # only on request


async def test_reasoning_and_answer_formats_over_grpc(channel: grpc.aio.Channel, png) -> None:
    stub = decision_pb2_grpc.DecisionStub(channel)
    r = await stub.Decide(_request(png, reasoning=True, max_reasoning_tokens=6))
    assert r.reasoning and r.completion_tokens <= 7
    tf = await stub.Decide(_request(png, answer_format=common_pb2.TRUE_FALSE))
    assert tf.raw_reply.startswith("A: ") and tf.answer in YN


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"query_image": common_pb2.Image()}, "query_image: is missing"),
        ({"question": common_pb2.Question(text=" ", options=YN)}, "question.text: is empty"),
        ({"question": common_pb2.Question(text="Q?")}, "question.options: is empty"),
        ({"question": common_pb2.Question(text="Q?", options={"1": "x"})}, "question.options: key '1'"),
        ({"reference_images": [common_pb2.Image(data=b"x")] * 4}, "reference_images: has 5 images"),
        ({"reference_images": [common_pb2.Image(uri="/nope/missing.png")]}, "reference_images[0].uri: no image"),
        ({"max_reasoning_tokens": -1}, "max_reasoning_tokens: is -1"),
    ],
)
async def test_bad_input_is_refused_naming_the_field(channel: grpc.aio.Channel, png, kw, message: str) -> None:
    stub = decision_pb2_grpc.DecisionStub(channel)
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await stub.Decide(_request(png, **kw))
    assert e.value.code() in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND)
    assert message in e.value.details()


async def test_undecodable_reference_and_image_limit_messages(channel: grpc.aio.Channel, png) -> None:
    stub = decision_pb2_grpc.DecisionStub(channel)
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await stub.Decide(_request(png, reference_images=[common_pb2.Image(data=png(3)), common_pb2.Image(data=b"xx")]))
    assert (
        e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        and "reference_images[1]: cannot be decoded" in e.value.details()
    )
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await stub.Decide(_request(png, reference_images=[common_pb2.Image(data=png(i)) for i in range(4)]))
    assert "the model allows 4" in e.value.details()


async def test_a_client_deadline_bounds_the_decision(channel: grpc.aio.Channel, png) -> None:
    stub = decision_pb2_grpc.DecisionStub(channel)
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await stub.Decide(_request(png, reasoning=True, max_reasoning_tokens=400), timeout=0.05)
    assert e.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
