"""An in-process gRPC channel: calls this process's own services without a socket.

The embedded gateway calls the stages hosted by its own server. Over the loopback
port each call costs about 0.7 ms of CPU in grpc.aio (client and server halves,
both on this event loop: loadtests/bench/gateway.py); at 16 clients that plumbing
queued on the event loop was most of the gateway's overhead. This channel keeps
what the contract means and drops only the socket: the request and response are
serialized and parsed as on the wire (same message-size limits), the server's own
handlers and interceptors run, with the caller's metadata and deadline, and the
caller gets an `AioRpcError` with the status the servicer set, and its trailing
metadata. A caller's channel options bring gRPC's retry policy (`with_options`:
the `grpc.service_config` that serving.retry_options writes), so a stage that
answers UNAVAILABLE is retried as over the socket. Unary-unary calls only: that
is all the gateway makes.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import functools
import json
import logging
import random
import time
from collections.abc import Awaitable, Callable, Generator, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import grpc

log = logging.getLogger(__name__)

Metadata = Sequence[tuple[str, str | bytes]]


class _Metadatum(NamedTuple):
    """One metadata entry as a grpc.aio server hands it over: a (key, value) pair with named fields."""

    key: str
    value: str | bytes


class _CallDetails(NamedTuple):
    """grpc.HandlerCallDetails, as server interceptors receive it."""

    method: str
    invocation_metadata: Metadata


class InProcessContext(grpc.aio.ServicerContext):
    """The server side of one call we run ourselves: what a servicer and an interceptor may ask of their context.

    The one stand-in context: the in-process channel's calls, and a Ray Serve replica's (deploy/deployments.py
    runs the servicer with one and copies the status it ends with onto Serve's own context).

    Args:
        metadata: the caller's metadata, (key, value) pairs.
        deadline: when the call must end, on the monotonic clock (None: no deadline).
        peer: who called, as a gRPC server names its peer.
    """

    def __init__(self, metadata: Metadata, deadline: float | None, peer: str = "in-process") -> None:
        self._metadata = tuple(_Metadatum(k, v) for k, v in metadata)
        self._peer = peer
        self._deadline = deadline  # on the monotonic clock
        self._code: grpc.StatusCode | None = None
        self._details: str | None = None
        self._trailing: tuple[tuple[str, str | bytes], ...] = ()
        self._done_callbacks: list[Callable[[Any], None]] = []
        self._done = False

    async def abort(self, code: grpc.StatusCode, details: str = "", trailing_metadata: Metadata = ()) -> None:
        if code == grpc.StatusCode.OK:
            raise ValueError("abort() needs a status code other than OK")
        self._code, self._details = code, details
        if trailing_metadata:
            self._trailing = tuple(trailing_metadata)
        raise grpc.aio.AbortError(details)

    async def abort_with_status(self, status: Any) -> None:
        await self.abort(status.code, status.details, status.trailing_metadata)

    def set_code(self, code: grpc.StatusCode) -> None:
        self._code = code

    def set_details(self, details: str) -> None:
        self._details = details

    def code(self) -> grpc.StatusCode | None:
        return self._code

    def details(self) -> str | None:
        return self._details

    def set_trailing_metadata(self, trailing_metadata: Metadata) -> None:
        self._trailing = tuple(trailing_metadata)

    def trailing_metadata(self) -> Metadata:
        return self._trailing

    def invocation_metadata(self) -> Metadata:
        return self._metadata

    def time_remaining(self) -> float | None:
        return None if self._deadline is None else max(0.0, self._deadline - time.monotonic())

    def peer(self) -> str:
        return self._peer

    def peer_identities(self) -> None:
        return None

    def peer_identity_key(self) -> None:
        return None

    def auth_context(self) -> dict[str, Any]:
        return {}

    def cancelled(self) -> bool:
        return False

    def done(self) -> bool:
        return self._done

    def add_done_callback(self, callback: Callable[[Any], None]) -> None:
        self._done_callbacks.append(callback)

    def _restart(self) -> None:
        """A new attempt of the same call (a retry): what the previous attempt set is gone."""
        self._code, self._details, self._trailing = None, None, ()
        self._done_callbacks, self._done = [], False

    def _finish(self) -> None:
        self._done = True
        for cb in self._done_callbacks:
            with contextlib.suppress(Exception):
                cb(self)

    def set_compression(self, compression: Any) -> None:
        return None

    def disable_next_message_compression(self) -> None:
        return None

    async def send_initial_metadata(self, initial_metadata: Metadata) -> None:
        return None

    async def read(self) -> Any:
        raise NotImplementedError("in-process calls are unary")

    async def write(self, message: Any) -> None:
        raise NotImplementedError("in-process calls are unary")


def _error(code: grpc.StatusCode, details: str, trailing: Metadata = ()) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(
        code, grpc.aio.Metadata(), grpc.aio.Metadata(*trailing), details=details, debug_error_string="in-process"
    )


class InProcessCall(grpc.aio.UnaryUnaryCall):
    """One call under way: awaitable like grpc.aio's, with its code, details and trailing metadata."""

    def __init__(self, run: Awaitable[Any], context: InProcessContext) -> None:
        self._context = context
        self._task: asyncio.Task[Any] = asyncio.ensure_future(run)

    def __await__(self) -> Generator[Any, None, Any]:
        return self._task.__await__()

    def cancel(self) -> bool:
        return self._task.cancel()

    def cancelled(self) -> bool:
        return self._task.cancelled()

    def done(self) -> bool:
        return self._task.done()

    def add_done_callback(self, callback: Callable[[Any], None]) -> None:
        self._task.add_done_callback(lambda _t: callback(self))

    def time_remaining(self) -> float | None:
        return self._context.time_remaining()

    async def initial_metadata(self) -> grpc.aio.Metadata:
        return grpc.aio.Metadata()

    async def trailing_metadata(self) -> grpc.aio.Metadata:
        with contextlib.suppress(BaseException):
            await asyncio.shield(self._task)
        return grpc.aio.Metadata(*self._context.trailing_metadata())

    async def code(self) -> grpc.StatusCode:
        try:
            await asyncio.shield(self._task)
        except grpc.aio.AioRpcError as e:
            return e.code()
        except asyncio.CancelledError:
            return grpc.StatusCode.CANCELLED
        return grpc.StatusCode.OK

    async def details(self) -> str:
        try:
            await asyncio.shield(self._task)
        except grpc.aio.AioRpcError as e:
            return e.details() or ""
        return ""

    async def wait_for_connection(self) -> None:
        return None


class _InterceptedCall(InProcessCall):
    """A call that first passes the channel's client interceptors; its status is that of the call they make."""

    def __init__(self, chain: Awaitable[Any]) -> None:
        self._inner: InProcessCall | None = None
        self._context = InProcessContext((), None)
        self._task = asyncio.ensure_future(self._through(chain))

    async def _through(self, chain: Awaitable[Any]) -> Any:
        out = await chain
        if not isinstance(out, InProcessCall):
            return out  # an interceptor may answer with the response itself
        self._inner, self._context = out, out._context
        return await out

    def cancel(self) -> bool:
        if self._inner is not None:
            self._inner.cancel()
        return self._task.cancel()


@dataclass(frozen=True)
class _RetryPolicy:
    """One gRPC retryPolicy (https://github.com/grpc/proposal/blob/master/A6-client-retries.md)."""

    attempts: int
    initial_s: float
    max_s: float
    multiplier: float
    codes: frozenset[grpc.StatusCode]

    def backoff_s(self, retry: int) -> float:
        """Before retry n (1, 2, ...): uniformly random up to the capped exponential, as gRPC waits."""
        return random.uniform(0, min(self.initial_s * self.multiplier ** (retry - 1), self.max_s))


def _retry_policies(options: Sequence[tuple[str, Any]]) -> dict[tuple[str, str], _RetryPolicy | None]:
    """(service, method or "") -> its retry policy, or None for none, from channel options as gRPC reads them."""
    opts = dict(options)
    if not opts.get("grpc.enable_retries") or "grpc.service_config" not in opts:
        return {}
    out: dict[tuple[str, str], _RetryPolicy | None] = {}
    for entry in json.loads(opts["grpc.service_config"]).get("methodConfig", []):
        p = entry.get("retryPolicy")
        policy = None
        if p is not None:
            policy = _RetryPolicy(
                attempts=min(5, int(p["maxAttempts"])),  # gRPC caps attempts at 5
                initial_s=float(p["initialBackoff"].rstrip("s")),
                max_s=float(p["maxBackoff"].rstrip("s")),
                multiplier=float(p["backoffMultiplier"]),
                codes=frozenset(grpc.StatusCode[c] for c in p["retryableStatusCodes"]),
            )
        for name in entry.get("name", []):
            out[(name.get("service", ""), name.get("method", ""))] = policy
    return out


class InProcessChannel(grpc.aio.Channel):
    """A grpc.aio channel whose calls run this process's registered handlers, through the server's interceptors.

    Register services on it exactly as on a server (`add_XServicer_to_server(servicer, channel)` works, as
    does `Tee(server, channel)` for both at once).

    Args:
        interceptors: the server's interceptors, outermost first, run for every call as the server runs them.
        max_message_bytes: the largest request or response (the server's grpc.max_*_message_length).
        client_interceptors: what a grpc.aio channel to the server would be given (e.g. tracing's, which puts
            the caller's trace context in the metadata); unary-unary ones run, outermost first.
    """

    def __init__(
        self,
        interceptors: Sequence[Any] = (),
        max_message_bytes: int = 4 * 1024 * 1024,
        client_interceptors: Sequence[Any] = (),
    ) -> None:
        self._handlers: list[grpc.GenericRpcHandler] = []
        self._interceptors = list(interceptors)
        self._client_interceptors = [i for i in client_interceptors if hasattr(i, "intercept_unary_unary")]
        self._max = max_message_bytes
        self._state = {"closed": False}  # shared with the with_options views
        self._policies: dict[tuple[str, str], _RetryPolicy | None] = {}

    def with_options(self, options: Sequence[tuple[str, Any]]) -> InProcessChannel:
        """The same services and interceptors under a caller's channel options: gRPC's retry policy
        (grpc.enable_retries, grpc.service_config) applies to the calls made through the view."""
        view = copy.copy(self)
        view._policies = _retry_policies(options)
        return view

    def _policy(self, method: str) -> _RetryPolicy | None:
        _, service, name = method.split("/", 2)
        key = (service, name)
        return self._policies[key] if key in self._policies else self._policies.get((service, ""))

    # ---- registration (the grpc.aio.Server methods generated add_*_to_server calls) -----------------------------
    def add_generic_rpc_handlers(self, handlers: Sequence[grpc.GenericRpcHandler]) -> None:
        self._handlers.extend(handlers)

    def add_registered_method_handlers(self, service: str, handlers: dict[str, Any]) -> None:
        return None  # the generic handlers registered beside them resolve the same methods

    # ---- calls ---------------------------------------------------------------------------------------------------
    def unary_unary(
        self,
        method: str,
        request_serializer: Callable[[Any], bytes] | None = None,
        response_deserializer: Callable[[bytes], Any] | None = None,
        _registered_method: bool | None = False,
    ) -> grpc.aio.UnaryUnaryMultiCallable:
        return _UnaryUnary(self, method, request_serializer, response_deserializer)

    def unary_stream(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """Stubs make every method's callable up front; calling a streaming one is what fails."""

        def refuse(*_args: Any, **_kwargs: Any) -> Any:
            raise _error(grpc.StatusCode.UNIMPLEMENTED, f"{method}: the in-process channel carries unary calls only")

        return refuse

    stream_unary = stream_stream = unary_stream

    async def _lookup(self, details: _CallDetails) -> grpc.RpcMethodHandler | None:
        async def find(d: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
            for h in self._handlers:
                handler = h.service(d)
                if handler is not None:
                    return handler
            return None

        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler | None]] = find
        for interceptor in reversed(self._interceptors):  # the first one listed runs outermost, as on a server
            continuation = _bind(interceptor, continuation)
        return await continuation(details)

    def _check_size(self, size: int, what: str) -> None:
        if size > self._max:
            raise _error(grpc.StatusCode.RESOURCE_EXHAUSTED, f"{what} larger than max ({size} vs. {self._max})")

    async def _invoke(
        self,
        method: str,
        payload: bytes,
        response_deserializer: Callable[[bytes], Any] | None,
        context: InProcessContext,
    ) -> Any:
        if self._state["closed"]:
            raise _error(grpc.StatusCode.UNAVAILABLE, "the in-process channel is closed")
        handler = await self._lookup(_CallDetails(method, context.invocation_metadata()))
        if handler is None or handler.unary_unary is None:
            raise _error(grpc.StatusCode.UNIMPLEMENTED, f"Method not found: {method}")
        request = handler.request_deserializer(payload) if handler.request_deserializer else payload
        try:
            response = await handler.unary_unary(request, context)
        except grpc.aio.AbortError:
            code = context.code() or grpc.StatusCode.UNKNOWN
            raise _error(code, context.details() or "", context.trailing_metadata()) from None
        except asyncio.CancelledError:
            raise
        except Exception as e:  # what a grpc.aio server answers when a handler raises
            log.exception("in-process call %s raised", method)
            raise _error(grpc.StatusCode.UNKNOWN, f"Unexpected {type(e)}: {e}", context.trailing_metadata()) from None
        finally:
            context._finish()
        code = context.code()
        if code is not None and code != grpc.StatusCode.OK:  # set_code without abort, as a servicer may
            raise _error(code, context.details() or "", context.trailing_metadata())
        data = handler.response_serializer(response) if handler.response_serializer else response
        self._check_size(len(data), "Received message")
        return response_deserializer(data) if response_deserializer else data

    async def close(self, grace: float | None = None) -> None:
        self._state["closed"] = True

    async def __aenter__(self) -> InProcessChannel:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def get_state(self, try_to_connect: bool = False) -> grpc.ChannelConnectivity:
        return grpc.ChannelConnectivity.SHUTDOWN if self._state["closed"] else grpc.ChannelConnectivity.READY

    async def wait_for_state_change(self, last_observed_state: grpc.ChannelConnectivity) -> None:
        await asyncio.Event().wait()  # an in-process channel never changes state on its own

    async def channel_ready(self) -> None:
        return None


def _bind(interceptor: Any, continuation: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    async def next_(details: grpc.HandlerCallDetails) -> Any:
        return await interceptor.intercept_service(continuation, details)

    return next_


class _UnaryUnary(grpc.aio.UnaryUnaryMultiCallable):
    def __init__(
        self,
        channel: InProcessChannel,
        method: str,
        request_serializer: Callable[[Any], bytes] | None,
        response_deserializer: Callable[[bytes], Any] | None,
    ) -> None:
        self._channel = channel
        self._method = method
        self._serialize = request_serializer
        self._deserialize = response_deserializer

    def __call__(
        self,
        request: Any,
        *,
        timeout: float | None = None,
        metadata: Metadata | None = None,
        credentials: Any = None,
        wait_for_ready: bool | None = None,
        compression: Any = None,
    ) -> InProcessCall:
        interceptors = self._channel._client_interceptors
        if not interceptors:
            return self._start(request, timeout, metadata)

        async def innermost(details: grpc.aio.ClientCallDetails, req: Any) -> InProcessCall:
            return self._start(req, details.timeout, details.metadata)

        chain: Callable[..., Awaitable[Any]] = innermost
        for interceptor in reversed(interceptors):
            chain = functools.partial(interceptor.intercept_unary_unary, chain)
        details = grpc.aio.ClientCallDetails(
            self._method, timeout, grpc.aio.Metadata(*(metadata or ())), credentials, wait_for_ready
        )
        return _InterceptedCall(chain(details, request))

    def _start(self, request: Any, timeout: float | None, metadata: Metadata | None) -> InProcessCall:
        payload = self._serialize(request) if self._serialize else request
        deadline = None if timeout is None else time.monotonic() + timeout
        context = InProcessContext(tuple(metadata or ()), deadline)
        return InProcessCall(self._run(payload, timeout, context), context)

    async def _run(self, payload: bytes, timeout: float | None, context: InProcessContext) -> Any:
        self._channel._check_size(len(payload), "Sent message")
        policy = self._channel._policy(self._method)
        try:
            async with asyncio.timeout(timeout):
                attempt = 1
                while True:
                    try:
                        return await self._channel._invoke(self._method, payload, self._deserialize, context)
                    except grpc.aio.AioRpcError as e:
                        if policy is None or attempt >= policy.attempts or e.code() not in policy.codes:
                            raise
                    await asyncio.sleep(policy.backoff_s(attempt))
                    attempt += 1
                    context._restart()
        except TimeoutError:
            raise _error(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded") from None


class Tee:
    """Registers services on a server and an in-process channel at once (pass it where a server is expected)."""

    def __init__(self, *targets: Any) -> None:
        self._targets = targets

    def add_generic_rpc_handlers(self, handlers: Sequence[grpc.GenericRpcHandler]) -> None:
        for t in self._targets:
            t.add_generic_rpc_handlers(handlers)

    def add_registered_method_handlers(self, service: str, handlers: dict[str, Any]) -> None:
        for t in self._targets:
            t.add_registered_method_handlers(service, handlers)
