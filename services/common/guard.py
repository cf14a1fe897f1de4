"""The server interceptor every call passes before a servicer: who is calling, can the body be read, may they.

Order per call: the bearer token (UNAUTHENTICATED), then the body (bytes that
are not the method's request message: INVALID_ARGUMENT with one log line, where
gRPC alone would answer UNKNOWN and log a traceback), then what the token may do
(PERMISSION_DENIED). Streaming methods (health Watch, reflection) get the token
check only.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from services.common.auth import CALLER, Authorizer
from services.common.errors import EchoError, InvalidArgument
from services.common.telemetry import split_method

log = logging.getLogger(__name__)


class Undecodable:
    """What a request deserializer returns instead of raising: the bytes could not be decoded."""

    def __init__(self, error: Exception, size: int) -> None:
        self.error = error
        self.size = size


class RequestGuard(grpc.aio.ServerInterceptor):
    def __init__(self, authorizer: Authorizer) -> None:
        self.authorizer = authorizer

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        if handler is None:
            return handler
        service, method = split_method(details.method)
        if handler.unary_unary is not None:
            return self._unary(handler, service, method)
        if not self.authorizer.enabled:
            return handler
        return self._streaming(handler, service)

    def _unary(self, handler: grpc.RpcMethodHandler, service: str, method: str) -> grpc.RpcMethodHandler:
        inner, decode = handler.unary_unary, handler.request_deserializer
        auth = self.authorizer

        def safe_decode(data: bytes) -> Any:
            try:
                return decode(data) if decode is not None else data
            except Exception as e:
                return Undecodable(e, len(data))

        async def guarded(request: Any, context: grpc.aio.ServicerContext) -> Any:
            try:
                identity = auth.authenticate(service, context.invocation_metadata())
                if isinstance(request, Undecodable):
                    log.info(
                        "%s/%s from %s: %d request bytes are not a valid message (%s)",
                        service, method, context.peer(), request.size, type(request.error).__name__,
                    )  # fmt: skip
                    raise InvalidArgument(
                        f"cannot be decoded as the request message of {service}/{method} "
                        f"({type(request.error).__name__}: {str(request.error)[:200]})",
                        field="request",
                    )
                auth.authorize(identity, service, method, request)
            except EchoError as e:
                await context.abort(e.code, e.message)
            caller = CALLER.set(identity)  # the servicer reads who asks
            try:
                return await inner(request, context)
            finally:  # an in-process call runs in its caller's task: give it back its own identity
                CALLER.reset(caller)

        return grpc.unary_unary_rpc_method_handler(
            guarded, request_deserializer=safe_decode, response_serializer=handler.response_serializer
        )

    def _streaming(self, handler: grpc.RpcMethodHandler, service: str) -> grpc.RpcMethodHandler:
        auth = self.authorizer
        kind = next(k for k in ("unary_stream", "stream_unary", "stream_stream") if getattr(handler, k) is not None)
        inner = getattr(handler, kind)

        async def check(context: grpc.aio.ServicerContext) -> None:
            try:
                auth.authenticate(service, context.invocation_metadata())
            except EchoError as e:
                await context.abort(e.code, e.message)

        if inspect.isasyncgenfunction(inner):

            async def guarded_gen(request: Any, context: grpc.aio.ServicerContext) -> Any:
                await check(context)
                async for item in inner(request, context):
                    yield item

            guarded: Any = guarded_gen
        else:

            async def guarded_call(request: Any, context: grpc.aio.ServicerContext) -> Any:
                await check(context)
                return await inner(request, context)

            guarded = guarded_call
        make = getattr(grpc, f"{kind}_rpc_method_handler")
        return make(
            guarded,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
