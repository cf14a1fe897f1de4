"""The embedded server: every stage in one process, on one gRPC port (what `echo-iad serve` runs).

The gateway reaches the stages through their gRPC contracts as it reaches separate deployments in the
cluster: by default over an in-process channel to the same server (the same handlers, interceptors,
serialized messages and status codes, without the socket's cost), or over that port with
gateway.in_process off. Each stage is built from its own settings section (services/stages.py).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import grpc

from services import stages as build
from services.common.serving import Internal, Stage, set_openmp_policy, start_server, wait_for_termination
from services.config import EchoSettings
from services.gateway.audit import AuditTrail
from services.gateway.core import Inspector
from services.gateway.server import stage_for as gateway_stage
from services.gateway.servicer import InspectorServicer

log = logging.getLogger(__name__)


@dataclass
class EmbeddedServer:
    server: grpc.aio.Server
    port: int
    stages: list[Stage]  # the Inspector last

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def inspector(self) -> Inspector:
        return self.stages[-1].servicer.inspector  # type: ignore[attr-defined]

    @property
    def audit(self) -> AuditTrail | None:
        return self.stages[-1].servicer.audit  # type: ignore[attr-defined]

    async def release(self) -> None:
        """Release every stage (batchers, stores, models, channels), the gateway first."""
        for stage in reversed(self.stages):
            await stage.close()

    async def stop(self, grace: float | None = None) -> None:
        """Stop accepting, let in-flight requests finish for `grace` seconds, then release every stage."""
        await self.server.stop(grace)
        await self.release()


async def start_embedded(settings: EchoSettings) -> EmbeddedServer:
    """Every stage in this process on one gRPC port; the gateway calls them in-process (or over that port)."""
    from services.knowledge.server import connect_refiner

    stages = [
        await build.embedding(settings),
        await build.retrieval(settings),
        await build.knowledge(settings),
        await build.decision(settings),
        await build.evidence(settings),
    ]
    gateway = InspectorServicer(None, build.audit_trail(settings))  # type: ignore[arg-type]

    def connect(internal: Internal) -> None:  # the gateway's stage clients, and the knowledge refiner, use this server
        local = internal.channel if settings.gateway.in_process else None
        gateway.inspector = build.inspector(settings, internal.address, internal.token, local)
        connect_refiner(stages[2], internal.address, internal.token)

    inspector_stage = gateway_stage(gateway)
    server, port, _ = await start_server(
        [*stages, inspector_stage],
        host=settings.server.host,
        port=settings.server.port,
        max_message_mb=settings.server.max_message_mb,
        on_bound=connect,
        settings=settings.server,
    )
    log.info("Echo-IAD embedded server on %s:%d", settings.server.host, port)
    return EmbeddedServer(server, port, [*stages, inspector_stage])


async def serve_embedded(settings: EchoSettings) -> None:
    """Run until SIGTERM; in-flight requests get settings.server.grace_s to finish."""
    set_openmp_policy(settings.server)  # before the stages load torch
    embedded = await start_embedded(settings)
    print(f"Echo-IAD serving on {settings.server.host}:{embedded.port} (embedded: all six services)", flush=True)
    await wait_for_termination(embedded.server, settings.server.grace_s)
    await embedded.release()


def main() -> None:
    from services.common.telemetry import setup_logging, setup_tracing
    from services.config import load_settings

    settings = load_settings()
    setup_logging(settings.telemetry.log_level)
    setup_tracing(settings.telemetry)
    asyncio.run(serve_embedded(settings))


if __name__ == "__main__":
    main()
