"""The in-process channel keeps what a gRPC call means: serialized messages, interceptors, codes, deadlines."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from echo.v1 import common_pb2, embedding_pb2, embedding_pb2_grpc
from services.common.errors import InvalidArgument, grpc_errors
from services.common.inprocess import InProcessChannel, Tee
from services.common.serving import channel_options, retry_options

TIMEOUT_S = 30  # generous: a loaded machine takes seconds to connect the socket side


class Echoing(embedding_pb2_grpc.EmbeddingServicer):
    """EmbedImages answers one vector per image (its size in bytes); EmbedTexts shows its context to the caller."""

    def __init__(self) -> None:
        self.seen: list[Any] = []

    @grpc_errors
    async def EmbedImages(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        self.seen.append(request)
        if not request.images:
            raise InvalidArgument("is empty", field="images")
        request.images.pop()  # a servicer that changes its request must not change the caller's
        context.set_trailing_metadata((("echo-degraded", "pretend"),))
        return embedding_pb2.EmbedImagesResponse(
            embeddings=[common_pb2.Vector(values=[len(i.data)]) for i in request.images], dim=1
        )

    async def EmbedTexts(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        if request.texts[0] == "sleep":
            await asyncio.sleep(5)
        if request.texts[0] == "crash":
            raise RuntimeError("a bug")
        remaining = context.time_remaining()
        md = dict(context.invocation_metadata())
        return embedding_pb2.EmbedTextsResponse(model_id=f"{md.get('application', '')}|{remaining is not None}")


class Recording(grpc.aio.ServerInterceptor):
    def __init__(self) -> None:
        self.methods: list[str] = []

    async def intercept_service(self, continuation: Any, details: grpc.HandlerCallDetails) -> Any:
        self.methods.append(details.method)
        return await continuation(details)


@pytest.fixture
async def both() -> AsyncIterator[tuple[Echoing, Recording, grpc.aio.Channel, grpc.aio.Channel]]:
    """The same servicer and interceptor behind a real server (socket) and an in-process channel."""
    servicer, interceptor = Echoing(), Recording()
    server = grpc.aio.server(options=channel_options(1), interceptors=[interceptor])
    local = InProcessChannel([interceptor], max_message_bytes=1024 * 1024)
    embedding_pb2_grpc.add_EmbeddingServicer_to_server(servicer, Tee(server, local))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    remote = grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=channel_options(1))
    try:
        yield servicer, interceptor, remote, local
    finally:
        await remote.close()
        await server.stop(None)


async def test_a_call_gives_what_the_socket_gives_through_the_same_interceptors(both: Any) -> None:
    servicer, interceptor, remote, local = both
    request = embedding_pb2.EmbedImagesRequest(images=[common_pb2.Image(data=b"abc"), common_pb2.Image(data=b"de")])
    answers = []
    for channel in (remote, local):
        call = embedding_pb2_grpc.EmbeddingStub(channel).EmbedImages(request, timeout=TIMEOUT_S)
        answers.append((await call, tuple(await call.trailing_metadata())))
    assert answers[0] == answers[1]
    assert [list(v.values) for v in answers[1][0].embeddings] == [[3.0]]
    assert ("echo-degraded", "pretend") in answers[1][1]
    assert len(request.images) == 2  # the servicer got its own parsed copy, as over the wire
    assert servicer.seen[0] is not request and servicer.seen[1] is not request
    assert interceptor.methods == ["/echo.v1.Embedding/EmbedImages"] * 2


async def test_status_codes_deadlines_and_metadata_reach_the_caller(both: Any) -> None:
    _, _, remote, local = both
    for channel in (remote, local):
        stub = embedding_pb2_grpc.EmbeddingStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.EmbedImages(embedding_pb2.EmbedImagesRequest(), timeout=TIMEOUT_S)
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert refused.value.details() == "images: is empty"
        with pytest.raises(grpc.aio.AioRpcError) as late:
            await stub.EmbedTexts(embedding_pb2.EmbedTextsRequest(texts=["sleep"]), timeout=0.05)
        assert late.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        with pytest.raises(grpc.aio.AioRpcError) as crashed:
            await stub.EmbedTexts(embedding_pb2.EmbedTextsRequest(texts=["crash"]), timeout=TIMEOUT_S)
        assert crashed.value.code() == grpc.StatusCode.UNKNOWN
        seen = await stub.EmbedTexts(
            embedding_pb2.EmbedTextsRequest(texts=["x"]), timeout=TIMEOUT_S, metadata=(("application", "emb"),)
        )
        assert seen.model_id == "emb|True"


async def test_oversized_messages_and_unknown_methods_are_refused_as_grpc_refuses_them(both: Any) -> None:
    _, _, remote, local = both
    big = embedding_pb2.EmbedImagesRequest(images=[common_pb2.Image(data=b"x" * (2 * 1024 * 1024))])
    for channel in (remote, local):
        with pytest.raises(grpc.aio.AioRpcError) as too_big:
            await embedding_pb2_grpc.EmbeddingStub(channel).EmbedImages(big, timeout=TIMEOUT_S)
        assert too_big.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        with pytest.raises(grpc.aio.AioRpcError) as unknown:
            await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=TIMEOUT_S)
        assert unknown.value.code() == grpc.StatusCode.UNIMPLEMENTED


async def test_health_checks_run_in_process_and_streaming_calls_are_refused() -> None:
    local = InProcessChannel()
    servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, local)
    await servicer.set("echo.v1.Embedding", health_pb2.HealthCheckResponse.SERVING)
    stub = health_pb2_grpc.HealthStub(local)
    resp = await stub.Check(health_pb2.HealthCheckRequest(service="echo.v1.Embedding"), timeout=TIMEOUT_S)
    assert resp.status == health_pb2.HealthCheckResponse.SERVING
    with pytest.raises(grpc.aio.AioRpcError) as streaming:
        stub.Watch(health_pb2.HealthCheckRequest(service="echo.v1.Embedding"))
    assert streaming.value.code() == grpc.StatusCode.UNIMPLEMENTED
    await local.close()
    with pytest.raises(grpc.aio.AioRpcError) as closed:
        await stub.Check(health_pb2.HealthCheckRequest(), timeout=TIMEOUT_S)
    assert closed.value.code() == grpc.StatusCode.UNAVAILABLE


class Tagging(grpc.aio.UnaryUnaryClientInterceptor):
    """A client interceptor that adds metadata, as tracing's adds the trace context."""

    async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        md = grpc.aio.Metadata(*(details.metadata or ()), ("application", "tagged"))
        new = grpc.aio.ClientCallDetails(details.method, details.timeout, md, None, None)
        return await continuation(new, request)


async def test_client_interceptors_run_and_see_the_call_they_made() -> None:
    local = InProcessChannel(client_interceptors=[Tagging()])
    embedding_pb2_grpc.add_EmbeddingServicer_to_server(Echoing(), local)
    call = embedding_pb2_grpc.EmbeddingStub(local).EmbedTexts(
        embedding_pb2.EmbedTextsRequest(texts=["x"]), timeout=TIMEOUT_S
    )
    assert (await call).model_id == "tagged|True"
    assert await call.code() == grpc.StatusCode.OK
    refused = embedding_pb2_grpc.EmbeddingStub(local).EmbedImages(embedding_pb2.EmbedImagesRequest(), timeout=TIMEOUT_S)
    with pytest.raises(grpc.aio.AioRpcError):
        await refused
    assert await refused.code() == grpc.StatusCode.INVALID_ARGUMENT


class Flaky(embedding_pb2_grpc.EmbeddingServicer):
    """Answers UNAVAILABLE `failures` times per method, then succeeds; counts the attempts it saw."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.attempts: dict[str, int] = {}

    async def _answer(self, method: str, context: grpc.aio.ServicerContext) -> None:
        self.attempts[method] = self.attempts.get(method, 0) + 1
        if self.attempts[method] <= self.failures:
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"{method}: not yet")

    async def EmbedTexts(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        await self._answer("EmbedTexts", context)
        return embedding_pb2.EmbedTextsResponse(model_id="ok")

    async def EmbedImages(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        await self._answer("EmbedImages", context)
        return embedding_pb2.EmbedImagesResponse(dim=1)


@pytest.mark.parametrize(
    ("failures", "retries", "code"), [(2, 2, grpc.StatusCode.OK), (3, 2, grpc.StatusCode.UNAVAILABLE)]
)
async def test_unavailable_is_retried_by_the_callers_retry_policy_as_over_the_socket(
    failures: int, retries: int, code: grpc.StatusCode
) -> None:
    # The gateway's backoff (0.02 s): with 1 ms, grpcio's own retry at times stalls until the deadline.
    options = channel_options(1) + retry_options(
        {"echo.v1.Embedding": retries}, never=["echo.v1.Embedding/EmbedImages"], initial_backoff_s=0.02
    )
    outcomes = []
    for in_process in (False, True):
        servicer = Flaky(failures)
        server = grpc.aio.server()
        local = InProcessChannel()
        embedding_pb2_grpc.add_EmbeddingServicer_to_server(servicer, Tee(server, local))
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        channel = local.with_options(options) if in_process else grpc.aio.insecure_channel(f"127.0.0.1:{port}", options)
        await channel.channel_ready()
        stub = embedding_pb2_grpc.EmbeddingStub(channel)
        try:
            texts = await stub.EmbedTexts(embedding_pb2.EmbedTextsRequest(texts=["x"]), timeout=TIMEOUT_S)
            got = (grpc.StatusCode.OK, texts.model_id)
        except grpc.aio.AioRpcError as e:
            got = (e.code(), e.details())
        with pytest.raises(grpc.aio.AioRpcError) as never:  # a method the policy leaves out is tried once
            await stub.EmbedImages(embedding_pb2.EmbedImagesRequest(), timeout=TIMEOUT_S)
        outcomes.append((got, dict(servicer.attempts), never.value.code()))
        await channel.close()
        await server.stop(None)
    assert outcomes[0] == outcomes[1]
    (got_code, _), attempts, never_code = outcomes[1]
    assert got_code == code and attempts == {"EmbedTexts": min(failures, retries) + 1, "EmbedImages": 1}
    assert never_code == grpc.StatusCode.UNAVAILABLE
    assert local.get_state() == grpc.ChannelConnectivity.SHUTDOWN  # closing a view closes the channel


async def test_retries_stay_within_the_callers_deadline() -> None:
    local = InProcessChannel()
    embedding_pb2_grpc.add_EmbeddingServicer_to_server(Flaky(failures=100), local)
    slow = local.with_options(retry_options({"echo.v1.Embedding": 4}, initial_backoff_s=0.15, max_backoff_s=0.15))
    start = time.perf_counter()
    with pytest.raises(grpc.aio.AioRpcError) as late:
        await embedding_pb2_grpc.EmbeddingStub(slow).EmbedTexts(
            embedding_pb2.EmbedTextsRequest(texts=["x"]), timeout=0.2
        )
    assert time.perf_counter() - start < 0.35  # up to four backoffs of up to 0.15 s would take 0.6 s
    assert late.value.code() in (grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.UNAVAILABLE)


async def test_a_trace_crosses_the_in_process_hop_as_it_crosses_a_socket() -> None:
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.trace import SpanKind

    from services.common import telemetry
    from services.common.config import TelemetrySettings

    exporter = InMemorySpanExporter()
    assert telemetry.setup_tracing(TelemetrySettings(tracing=True), "inprocess-test", exporter=exporter)
    try:
        local = InProcessChannel(telemetry.server_interceptors(), client_interceptors=telemetry.client_interceptors())
        embedding_pb2_grpc.add_EmbeddingServicer_to_server(Echoing(), local)
        with telemetry.tracer().start_as_current_span("caller"):
            await embedding_pb2_grpc.EmbeddingStub(local).EmbedTexts(
                embedding_pb2.EmbedTextsRequest(texts=["x"]), timeout=TIMEOUT_S
            )
    finally:
        telemetry.stop_tracing()
    spans = {s.name + "/" + s.kind.name: s for s in exporter.get_finished_spans()}
    server = spans["/echo.v1.Embedding/EmbedTexts/" + SpanKind.SERVER.name]
    client = spans["/echo.v1.Embedding/EmbedTexts/" + SpanKind.CLIENT.name]
    caller = spans["caller/" + SpanKind.INTERNAL.name]
    assert server.parent.span_id == client.context.span_id  # the context went through the call's metadata
    assert client.parent.span_id == caller.context.span_id
    assert {s.context.trace_id for s in spans.values()} == {caller.context.trace_id}
