"""gRPC server plumbing shared by every stage: options, TLS and tokens, health, reflection, shutdown."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from services.common.auth import Authorizer, Identity, TokenBook, new_token
from services.common.config import ServerSettings, TlsSettings
from services.common.errors import ConfigError
from services.common.gate import CallGate
from services.common.guard import RequestGuard
from services.common.health import NOT_SERVING, SERVING, HealthMonitor, StageHealth
from services.common.inprocess import InProcessChannel, Tee
from services.common.memory import limit_arenas
from services.common.telemetry import client_interceptors, server_interceptors

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


def interceptor_chain(guard: RequestGuard | None = None) -> list[grpc.aio.ServerInterceptor]:
    """Our server interceptors, outermost first: tracing and metrics, then the guard (tokens, undecodable bodies)."""
    return [*server_interceptors(), guard or RequestGuard(Authorizer(None))]


def new_server(
    max_message_mb: int = 32,
    guard: RequestGuard | None = None,
    *,
    interceptors: Sequence[grpc.aio.ServerInterceptor] | None = None,
    max_concurrent_rpcs: int = 0,
    gated: Iterable[str] = (),
) -> grpc.aio.Server:
    """A gRPC server with our interceptors: interceptor_chain(guard), or the very list given (shared with an
    in-process channel), behind a CallGate for the `gated` services when `max_concurrent_rpcs` is set (the
    server's calls only)."""
    chosen = interceptor_chain(guard) if interceptors is None else list(interceptors)
    if max_concurrent_rpcs and gated:  # outermost: a call over the limit is refused before anything reads its body
        chosen.insert(0, CallGate(max_concurrent_rpcs, gated))
    # no BDP probing: each stream's receive window stays small, so the bodies of calls the gate or admission
    # refuses are not buffered by the transport ahead of them (the memory drill's burst peak: +2.75 -> +2.22 GB)
    options = [*channel_options(max_message_mb), ("grpc.http2.bdp_probe", 0)]
    return grpc.aio.server(options=options, interceptors=chosen)


def add_health_and_reflection(
    server: grpc.aio.Server, service_names: Iterable[str], in_process: InProcessChannel | None = None
) -> health.aio.HealthServicer:
    """Standard health (every service starts NOT_SERVING until marked ready; also on `in_process`) and reflection."""
    names = list(service_names)
    servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server if in_process is None else Tee(server, in_process))
    reflection.enable_server_reflection([*names, health.SERVICE_NAME, reflection.SERVICE_NAME], server)
    return servicer


async def set_serving(servicer: health.aio.HealthServicer, names: Iterable[str], serving: bool = True) -> None:
    for name in names:
        await servicer.set(name, SERVING if serving else NOT_SERVING)


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
    may expose `close()` (sync or async) to release its resources. `health`
    runs that check in every mode (services/common/health.py). `public`: factory-line
    tokens may call it (the Inspector); the others are stages only the gateway calls. `shared_methods`: its
    RPCs any valid token may call without naming a line (they read what no line owns).
    """

    def __init__(
        self,
        service_name: str,
        servicer: object,
        register: Callable[[grpc.aio.Server, object], None],
        *,
        public: bool = False,
        shared_methods: tuple[str, ...] = (),
    ):
        self.service_name = service_name
        self.servicer = servicer
        self.register = register
        self.public = public
        self.shared_methods = tuple(f"{service_name}/{m}" for m in shared_methods)
        self.health = StageHealth(service_name, self._probe)

    async def _probe(self) -> None:
        await self.servicer.check_health()  # type: ignore[attr-defined]

    async def close(self) -> None:
        """Release what the servicer holds (batchers, stores, models), if it says how."""
        close = getattr(self.servicer, "close", None)
        if close is not None:
            result = close()
            if asyncio.iscoroutine(result):
                await result

    async def healthy(self) -> bool:
        return await self.health.check() is None


@dataclass(frozen=True)
class Internal:
    """How a caller inside this process (the embedded gateway) reaches the server's own stages."""

    address: str
    token: str  # the bearer token minted for it; "" when tokens are off
    channel: InProcessChannel | None = None  # the same services and interceptors, without a socket


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_exposure(host: str, settings: ServerSettings) -> None:
    """A server reachable beyond this machine must use TLS and tokens, unless the config says insecure."""
    if is_loopback(host) or settings.insecure or (settings.tls.enabled and settings.auth.enabled):
        return
    checks = (("server.tls", settings.tls.enabled), ("server.auth", settings.auth.enabled))
    missing = [name for name, on in checks if not on]
    raise ConfigError(
        f"server.host {host!r} is not loopback and {' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} "
        "not set: configure TLS and bearer tokens (docs/security.md), or pass --insecure (server.insecure: true) "
        "on a network you trust"
    )


def _read(path: str, key: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as e:
        raise ConfigError(f"{key}: cannot read {path}: {e}") from e


def server_credentials(tls: TlsSettings) -> grpc.ServerCredentials | None:
    """TLS (or mutual TLS with client_ca_file) from PEM files; None when TLS is off."""
    if not tls.enabled:
        return None
    pair = (_read(tls.key_file, "server.tls.key_file"), _read(tls.cert_file, "server.tls.cert_file"))
    ca = _read(tls.client_ca_file, "server.tls.client_ca_file") if tls.client_ca_file else None
    return grpc.ssl_server_credentials([pair], root_certificates=ca, require_client_auth=ca is not None)


_MONITORS: set[asyncio.Task[None]] = set()  # strong references to the running health monitors


async def _monitor(monitor: HealthMonitor, server: grpc.aio.Server, interval_s: float, socket_dir: str) -> None:
    try:
        await monitor.run(interval_s, server.wait_for_termination)
    finally:
        if socket_dir:
            shutil.rmtree(socket_dir, ignore_errors=True)


async def start_server(
    stages: list[Stage],
    host: str = "127.0.0.1",
    port: int = 0,
    max_message_mb: int = 32,
    on_bound: Callable[[Internal], None] | None = None,
    *,
    settings: ServerSettings | None = None,
) -> tuple[grpc.aio.Server, int, health.aio.HealthServicer]:
    """Start one gRPC server hosting `stages`, guarded (tokens, TLS, undecodable bodies), health re-checked.

    on_bound(internal) runs after binding and before the first health check: the
    embedded gateway uses it to point its stage clients at this very server: through
    `internal.channel`, an in-process channel to the same services behind the same
    interceptors (tracing, metrics, tokens), or over `internal.address` (a private Unix
    socket when the public port speaks TLS or faces the network).
    `settings` brings TLS, tokens, the exposure rule and the health interval (defaults: none, 5 s).
    Returns the server, the bound port (useful with port=0) and the health servicer.
    """
    cfg = settings or ServerSettings()
    check_exposure(host, cfg)
    book = TokenBook.from_file(cfg.auth.tokens_file) if cfg.auth.enabled else None
    internal_token = ""
    if book is not None and on_bound is not None:
        internal_token = new_token()
        book.add(internal_token, Identity("in-process gateway", frozenset({"*"}), stages=True))
    authorizer = Authorizer(
        book, [st.service_name for st in stages if st.public], [m for st in stages for m in st.shared_methods]
    )
    interceptors = interceptor_chain(RequestGuard(authorizer))
    # the line's door only (the Inspector): stages are called by gateways whose own admission bounds them
    public = [st.service_name for st in stages if st.public]
    server = new_server(
        max_message_mb, interceptors=interceptors, max_concurrent_rpcs=cfg.max_concurrent_rpcs, gated=public
    )
    in_process = (
        InProcessChannel(interceptors, max_message_mb * 1024 * 1024, client_interceptors())
        if on_bound is not None
        else None
    )
    target = server if in_process is None else Tee(server, in_process)
    for st in stages:
        st.register(target, st.servicer)  # type: ignore[arg-type]
        st.health.timeout_s = cfg.health_timeout_s
    names = [st.service_name for st in stages]
    health_servicer = add_health_and_reflection(server, names, in_process)
    credentials = server_credentials(cfg.tls)
    address = f"{host}:{port}"
    bound = server.add_secure_port(address, credentials) if credentials else server.add_insecure_port(address)
    if bound == 0:
        raise OSError(f"cannot bind gRPC server to {host}:{port}")
    socket_dir = ""
    if on_bound is not None:
        internal = f"127.0.0.1:{bound}"
        if credentials is not None or not is_loopback(host):
            socket_dir = tempfile.mkdtemp(prefix="echo-iad-")  # 0700: only this user reaches the socket
            internal = f"unix:{socket_dir}/grpc.sock"
            server.add_insecure_port(internal)
        on_bound(Internal(internal, internal_token, in_process))
    await server.start()
    monitor = HealthMonitor([st.health for st in stages], health_servicer)
    await monitor.check_all()
    task = asyncio.create_task(_monitor(monitor, server, cfg.health_interval_s, socket_dir))
    _MONITORS.add(task)
    task.add_done_callback(_MONITORS.discard)
    return server, bound, health_servicer


def set_openmp_policy(settings: ServerSettings) -> None:
    """Apply server.omp_wait_policy, server.intra_op_threads and server.malloc_arenas to this process; only works
    before torch loads (OpenMP reads them once) and before the threads that allocate start."""
    limit_arenas(settings.malloc_arenas)
    wanted = {}
    if settings.omp_wait_policy and "OMP_WAIT_POLICY" not in os.environ:
        wanted["OMP_WAIT_POLICY"] = settings.omp_wait_policy.upper()
    if settings.intra_op_threads and "OMP_NUM_THREADS" not in os.environ:
        wanted["OMP_NUM_THREADS"] = str(settings.intra_op_threads)
    if not wanted:
        return
    if "torch" in sys.modules:
        log.warning(
            "server.omp_wait_policy, server.intra_op_threads: torch is already loaded here, so OpenMP keeps its "
            "defaults"
        )
        return
    os.environ.update(wanted)


async def serve_stage(build_stage: Callable[[Any], Awaitable[Stage]], settings: Any) -> None:
    """One stage alone on settings.server.host/port until SIGTERM; then release it."""
    set_openmp_policy(settings.server)
    stage = await build_stage(settings)
    server, port, _ = await start_server(
        [stage], settings.server.host, settings.server.port, settings.server.max_message_mb, settings=settings.server
    )
    log.info("%s serving on %s:%d", stage.service_name, settings.server.host, port)
    try:
        await wait_for_termination(server, settings.server.grace_s)
    finally:
        await stage.close()


def run_standalone(build_stage: Callable[[Any], Awaitable[Stage]], name: str, settings: Any) -> None:
    """One stage alone (`python -m services.stages <name>`): logging, metrics and tracing set up, then served.

    `settings` is the whole settings tree, already read (services.config.load_settings); it is passed in
    because services/common knows no stage.
    """
    from services.common.telemetry import setup_logging, setup_tracing, start_metrics_exporter

    setup_logging(settings.telemetry.log_level)
    start_metrics_exporter(settings.telemetry.metrics_port)
    setup_tracing(settings.telemetry, f"echo-iad.{name}")
    asyncio.run(serve_stage(build_stage, settings))
