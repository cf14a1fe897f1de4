"""Hosting the Inspector: alone (cluster), or with every stage in one process (embedded).

`echo-iad serve` runs the embedded server: one gRPC port, six services, the
gateway reaching the stages through their gRPC contracts as it reaches separate
deployments in the cluster: by default over an in-process channel to the same
server (the same handlers, interceptors, serialized messages and status codes,
without the socket's cost), or over that port with gateway.in_process off.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import grpc

from services.common.auth import read_secret
from services.common.images import ImageLimits, ImageStore
from services.common.inprocess import InProcessChannel
from services.common.serving import Internal, Stage, set_openmp_policy, start_server, wait_for_termination
from services.config import EchoSettings
from services.gateway.audit import AuditTrail
from services.gateway.clients import StageClients
from services.gateway.core import Inspector
from services.gateway.planner import QuestionTypeClassifier
from services.gateway.servicer import InspectorServicer, register

log = logging.getLogger(__name__)
SERVICE_NAME = "echo.v1.Inspector"
STAGE_TOKEN_ENV = "ECHO_IAD_STAGE_TOKEN"
SHARED_METHODS = ("GetKnowledge",)  # a product type's knowledge belongs to no line: any valid token reads it


def build_classifier() -> QuestionTypeClassifier:
    """Rules, the MiniLM prototype classifier (loaded lazily on the first free-form question) and option evidence
    that knows the shipped knowledge base's defect and product names."""
    from services.gateway.option_evidence import name_vocabulary
    from services.knowledge.embedder import get_embedder
    from services.knowledge.entries import default_root, load_dir

    entries = load_dir(default_root()).values()
    return QuestionTypeClassifier(
        embed=lambda texts: get_embedder().encode(list(texts)),
        defect_names=name_vocabulary(x for e in entries for d in e.defects for x in (d.name, d.display_name)),
        product_names=name_vocabulary(x for e in entries for x in (e.category, e.display_name)),
    )


def build_inspector(
    settings: EchoSettings, default_address: str, token: str | None = None, local: InProcessChannel | None = None
) -> Inspector:
    """The Inspector over its stage clients; `token`: what it sends the stages (None: gateway.stage_token_file
    or $ECHO_IAD_STAGE_TOKEN, the cluster's way; the embedded server mints its own); `local`: an in-process
    channel to this process's own stages."""
    if token is None:
        token = read_secret(settings.gateway.stage_token_file, STAGE_TOKEN_ENV)
    clients = StageClients(settings.gateway, default_address, settings.server.max_message_mb, local=local, token=token)
    keep = settings.audit.enabled and settings.gateway.audit_evidence_images
    return Inspector(
        clients=clients,
        classifier=build_classifier(),
        settings=settings.gateway,
        image_store=ImageStore(settings.retrieval.image_store),
        # the gateway refuses what the stages would refuse, before any fan-out
        limits=ImageLimits(settings.embedding.max_image_bytes, settings.embedding.max_image_pixels, "embedding"),
        keep_evidence_images=keep,
    )


def open_audit(settings: EchoSettings) -> AuditTrail | None:
    """The audit trail (files: recovered and locked; redis: durability checked); None with audit.enabled off."""
    if not settings.audit.enabled:
        return None
    audit = AuditTrail.open(settings.audit, ImageStore(settings.retrieval.image_store))
    log.info("audit log: %s", audit.log.description)
    return audit


async def build_stage(settings: EchoSettings, default_address: str = "") -> Stage:
    """The Inspector alone; stage addresses come from settings.gateway (cluster mode)."""
    servicer = InspectorServicer(build_inspector(settings, default_address), open_audit(settings))
    return Stage(SERVICE_NAME, servicer, register, public=True, shared_methods=SHARED_METHODS)


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
    from services.decision.server import build_stage as build_decision
    from services.embedding.server import build_stage as build_embedding
    from services.evidence.server import build_stage as build_evidence
    from services.knowledge.server import build_stage as build_knowledge
    from services.knowledge.server import connect_refiner
    from services.retrieval.server import build_stage as build_retrieval

    stages = [
        await build_embedding(settings),
        await build_retrieval(settings),
        await build_knowledge(settings),
        await build_decision(settings),
        await build_evidence(settings),
    ]
    gateway = InspectorServicer(None, open_audit(settings))  # type: ignore[arg-type]

    def connect(internal: Internal) -> None:  # the gateway's stage clients, and the knowledge refiner, use this server
        local = internal.channel if settings.gateway.in_process else None
        gateway.inspector = build_inspector(settings, internal.address, internal.token, local)
        connect_refiner(stages[2], internal.address, internal.token)

    inspector_stage = Stage(SERVICE_NAME, gateway, register, public=True, shared_methods=SHARED_METHODS)
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
