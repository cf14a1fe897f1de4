"""The door before the body: at most `server.max_concurrent_rpcs` calls inside a server, refused unread beyond it.

Why here and not in the gateway's admission: a unary call's body is received and parsed before any handler runs,
so a burst of large requests held every body in memory (two copies) until admission refused it; 188 refused 5 MB
Inspects were ~1.5 GB of the memory drill's peak. This interceptor serves every unary method as client-streaming
(the same bytes on the wire: one message, then half-close), so its handler runs *before* the body is read: over
the limit it answers RESOURCE_EXHAUSTED at once, naming the setting, and the body stays in the client's buffers
(HTTP/2 flow control: the server never asks for it). gRPC's own `maximum_concurrent_rpcs` does the same but answers
"Concurrent RPC limit exceeded!", which names no setting.

Two more things kept refused bodies in memory, both handled here or in `new_server`: the refusal's traceback held
each request until the cyclic collector ran (its frames are cleared), and HTTP/2 BDP probing grew every stream's
receive window so the transport buffered bodies ahead of the handler (the server turns it off). The memory drill's
200 x 5 MB burst, per step (2026-12-08, 2 cores): peak +4.6 GB; gate and 2 malloc arenas +2.9 GB; the charge
calibrated to bursts (services/gateway/limits.py) +2.6-2.7 GB; without BDP probing +2.47 GB; frames cleared
+2.22 GB, within the 2 GB budget + 20%.

Only the line's services are gated (the Inspector: `services`): health checks are never refused (a busy server is
not a gone one), and the gateway's own calls to its stages never count, whether in-process (the in-process channel
has its own interceptor list) or over the embedded server's private socket.
"""

from __future__ import annotations

import traceback
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any

import grpc

from services.common.telemetry import split_method

SETTING = "server.max_concurrent_rpcs"


class CallGate(grpc.aio.ServerInterceptor):
    def __init__(self, limit: int, services: Iterable[str]) -> None:
        self.limit = limit
        self.services = frozenset(services)  # full names, e.g. echo.v1.Inspector
        self.active = 0

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        if handler is None or handler.unary_unary is None or split_method(details.method)[0] not in self.services:
            return handler
        inner = handler.unary_unary
        gate = self

        async def gated(requests: AsyncIterator[Any], context: grpc.aio.ServicerContext) -> Any:
            if gate.active >= gate.limit:
                await context.abort(
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    f"server: {gate.active} calls in flight, the limit of {SETTING} ({gate.limit}); retry with backoff",
                )
            gate.active += 1
            request = None
            try:
                request = await context.read()
                if request is grpc.aio.EOF:
                    await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "request: no request message was sent")
                return await inner(request, context)
            except BaseException as e:
                # the error's traceback keeps every frame it passed, and with them the request (megabytes of
                # image bytes) until the cyclic collector runs: a burst of refusals held them all at once
                traceback.clear_frames(e.__traceback__)
                raise
            finally:
                request = None
                gate.active -= 1

        return grpc.stream_unary_rpc_method_handler(
            gated, request_deserializer=handler.request_deserializer, response_serializer=handler.response_serializer
        )
