"""The door before the body (services/common/gate.py): over server.max_concurrent_rpcs a call is refused, naming the
setting, before its body is read; health checks and ungated services still answer; the calls inside finish and
free their places."""

from __future__ import annotations

import asyncio

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from services.common.serving import new_server

SLOW_S = 1.0


async def _server(limit: int) -> tuple[grpc.aio.Server, int, list[int]]:
    decoded: list[int] = []  # sizes of the bodies the server read

    def decode(data: bytes) -> bytes:
        decoded.append(len(data))
        return data

    async def slow(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        await asyncio.sleep(SLOW_S)
        return request[:4]

    handler = grpc.unary_unary_rpc_method_handler(slow, request_deserializer=decode, response_serializer=bytes)
    server = new_server(interceptors=[], max_concurrent_rpcs=limit, gated=["test.Slow"])
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler("test.Slow", {"Call": handler})])
    stage = grpc.unary_unary_rpc_method_handler(slow, response_serializer=bytes)  # a stage the gateway calls
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler("test.Stage", {"Call": stage})])
    health_pb2_grpc.add_HealthServicer_to_server(health.aio.HealthServicer(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, port, decoded


async def test_a_call_over_the_limit_is_refused_unread_and_naming_the_setting_while_health_answers() -> None:
    server, port, decoded = await _server(limit=2)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            call = channel.unary_unary("/test.Slow/Call")
            inside = [asyncio.ensure_future(call(b"a" * 1000)) for _ in range(2)]
            await asyncio.sleep(0.3)  # both are in the handler now
            try:
                await call(b"b" * 2_000_000)
                raise AssertionError("a third call was let in")
            except grpc.aio.AioRpcError as e:
                assert e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
                assert "server.max_concurrent_rpcs (2)" in (e.details() or "")
            reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=2)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING  # a busy server is not a gone one
            assert await channel.unary_unary("/test.Stage/Call")(b"dddd") == b"dddd"  # only the line's door counts
            assert await asyncio.gather(*inside) == [b"aaaa", b"aaaa"]
            assert decoded == [1000, 1000]  # the refused body was never read
            assert await call(b"c" * 10) == b"cccc"  # the places are free again
    finally:
        await server.stop(None)


async def test_without_a_limit_every_call_is_let_in() -> None:
    server, port, decoded = await _server(limit=0)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            call = channel.unary_unary("/test.Slow/Call")
            assert await asyncio.gather(*(call(b"x" * 8) for _ in range(5))) == [b"xxxx"] * 5
            assert decoded == [8] * 5
    finally:
        await server.stop(None)
