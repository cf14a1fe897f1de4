"""gRPC server plumbing shared by every stage: options, health, reflection, shutdown."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from services.common.telemetry import server_interceptors

log = logging.getLogger(__name__)


def channel_options(max_message_mb: int = 32) -> list[tuple[str, Any]]:
    """Message-size limits set on both ends (image payloads exceed gRPC's 4 MB default)."""
    size = max_message_mb * 1024 * 1024
    return [("grpc.max_send_message_length", size), ("grpc.max_receive_message_length", size)]


def retry_options(
    retries: Mapping[str, int],
    codes: Sequence[str] = ("UNAVAILABLE",),
    *,
    never: Iterable[str] = (),
    initial_backoff_s: float = 0.05,
    max_backoff_s: float = 1.0,
) -> list[tuple[str, Any]]:
    """Channel options for gRPC's own retry policy (a service config): the one way we retry calls.

    Args:
        retries: full service name (e.g. echo.v1.Embedding) -> retries of its calls (0: none; gRPC allows 4 at most).
        codes: status codes that are retried, with exponential backoff and jitter, within the call's deadline.
        never: methods that must not be retried (not idempotent), as "echo.v1.Decision/Decide".
    """
    config: list[dict[str, Any]] = []
    for service, n in retries.items():
        if n > 0:
            policy = {
                "maxAttempts": max(2, min(5, n + 1)),
                "initialBackoff": f"{initial_backoff_s}s",
                "maxBackoff": f"{max_backoff_s}s",
                "backoffMultiplier": 2,
                "retryableStatusCodes": list(codes),
            }
            config.append({"name": [{"service": service}], "retryPolicy": policy})
    if not config:
        return [("grpc.enable_retries", 0)]
    for full in never:  # a method's own entry wins over its service's
        service, _, method = full.partition("/")
        config.append({"name": [{"service": service, "method": method}]})
    return [("grpc.enable_retries", 1), ("grpc.service_config", json.dumps({"methodConfig": config}))]


def new_server(max_message_mb: int = 32) -> grpc.aio.Server:
    return grpc.aio.server(options=channel_options(max_message_mb), interceptors=server_interceptors())


def add_health_and_reflection(server: grpc.aio.Server, service_names: Iterable[str]) -> health.aio.HealthServicer:
    """Standard health (every service starts NOT_SERVING until marked ready) and server reflection."""
    names = list(service_names)
    servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    reflection.enable_server_reflection([*names, health.SERVICE_NAME, reflection.SERVICE_NAME], server)
    return servicer


async def set_serving(servicer: health.aio.HealthServicer, names: Iterable[str], serving: bool = True) -> None:
    status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
    for name in names:
        await servicer.set(name, status)


async def wait_for_termination(server: grpc.aio.Server, grace_s: float) -> None:
    """Serve until SIGTERM/SIGINT, then stop accepting and let in-flight requests finish for grace_s."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    waiter = asyncio.create_task(server.wait_for_termination())
    stopper = asyncio.create_task(stop.wait())
    await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
    if stop.is_set():
        log.info("shutting down: finishing in-flight requests (grace %.1fs)", grace_s)
        await server.stop(grace_s)
    for t in (waiter, stopper):
        t.cancel()


class Stage:
    """One stage hosted by a gRPC server: its servicer and how to register it.

    A servicer exposes `async check_health()`, which runs a tiny real request
    and raises when the stage cannot serve (a live process is not enough), and
    may expose `close()` (sync or async) to release its resources.
    """

    def __init__(self, service_name: str, servicer: object, register: Callable[[grpc.aio.Server, object], None]):
        self.service_name = service_name
        self.servicer = servicer
        self.register = register

    async def close(self) -> None:
        """Release what the servicer holds (batchers, stores, models), if it says how."""
        close = getattr(self.servicer, "close", None)
        if close is not None:
            result = close()
            if asyncio.iscoroutine(result):
                await result

    async def healthy(self) -> bool:
        try:
            await self.servicer.check_health()  # type: ignore[attr-defined]
            return True
        except Exception as e:
            log.warning("%s not ready: %s", self.service_name, e)
            return False


async def start_server(
    stages: list[Stage],
    host: str = "127.0.0.1",
    port: int = 0,
    max_message_mb: int = 32,
    on_bound: Callable[[int], None] | None = None,
) -> tuple[grpc.aio.Server, int, health.aio.HealthServicer]:
    """Start one gRPC server hosting `stages`; mark each SERVING once its health check passes.

    on_bound(port) runs after binding and before the health checks: the embedded
    gateway uses it to point its stage clients at this very server.
    Returns the server, the bound port (useful with port=0) and the health servicer.
    """
    server = new_server(max_message_mb)
    for st in stages:
        st.register(server, st.servicer)
    names = [st.service_name for st in stages]
    health_servicer = add_health_and_reflection(server, names)
    bound = server.add_insecure_port(f"{host}:{port}")
    if bound == 0:
        raise OSError(f"cannot bind gRPC server to {host}:{port}")
    if on_bound is not None:
        on_bound(bound)
    await server.start()
    all_ok = True
    for st in stages:
        ok = await st.healthy()
        all_ok &= ok
        await set_serving(health_servicer, [st.service_name], ok)
    await set_serving(health_servicer, [""], all_ok)  # "" is the whole server
    return server, bound, health_servicer


async def serve_stage(build_stage: Callable[[Any], Awaitable[Stage]], settings: Any) -> None:
    """One stage alone on settings.server.host/port until SIGTERM; then release it."""
    stage = await build_stage(settings)
    server, port, _ = await start_server(
        [stage], settings.server.host, settings.server.port, settings.server.max_message_mb
    )
    log.info("%s serving on %s:%d", stage.service_name, settings.server.host, port)
    try:
        await wait_for_termination(server, settings.server.grace_s)
    finally:
        await stage.close()


def run_standalone(
    build_stage: Callable[[Any], Awaitable[Stage]], description: str, load_settings: Callable[[str | None], Any]
) -> None:
    """`python -m services.<stage>.server [--config FILE]`: the bootstrap every stage shares.

    `load_settings` reads the whole settings tree (services.config.load_settings); it is passed in
    because services/common knows no stage.
    """
    import argparse

    from services.common.telemetry import setup_logging, setup_tracing, start_metrics_exporter

    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--config", default=None, help="YAML settings file (else $ECHO_IAD_CONFIG, else defaults).")
    settings = load_settings(parser.parse_args().config)
    setup_logging(settings.telemetry.log_level)
    start_metrics_exporter(settings.telemetry.metrics_port)
    setup_tracing(settings.telemetry, f"echo-iad.{build_stage.__module__.split('.')[-2]}")  # services.<stage>.server
    asyncio.run(serve_stage(build_stage, settings))
