"""Every stage built from the whole settings tree: each stage's bootstrap reads its own section, this picks it out.

The embedded server (app/embedded.py), the ingest path (app/ingest.py) and Ray Serve (deploy/deployments.py)
build their stages here, one way; so does `python -m services.stages <stage> [--config FILE]`, one stage alone.
The stages' bootstraps are imported inside the builders, so reading this table loads no model library.
"""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING

from services.common.batching import BatcherFactory, MicroBatcher
from services.common.images import ImageLimits, ImageStore
from services.common.inprocess import InProcessChannel
from services.common.serving import Stage, run_standalone
from services.config import EchoSettings, load_settings

if TYPE_CHECKING:
    from services.gateway.audit import AuditTrail
    from services.gateway.core import Inspector
    from services.knowledge.refine import Refiner


async def embedding(settings: EchoSettings, batcher_factory: BatcherFactory = MicroBatcher) -> Stage:
    from services.embedding.server import build_stage

    return await build_stage(settings.embedding, batcher_factory)


async def retrieval(settings: EchoSettings) -> Stage:
    from services.retrieval.server import build_stage

    return await build_stage(settings.retrieval, settings.embedding)


async def knowledge(settings: EchoSettings, refiner: Refiner | None = None) -> Stage:
    from services.knowledge.server import build_stage

    return await build_stage(settings.knowledge, refiner)


async def decision(settings: EchoSettings, batcher_factory: BatcherFactory = MicroBatcher) -> Stage:
    from services.decision.server import build_stage

    return await build_stage(settings.decision, batcher_factory)


async def evidence(settings: EchoSettings, batcher_factory: BatcherFactory = MicroBatcher) -> Stage:
    from services.evidence.server import build_stage

    return await build_stage(settings.evidence, settings.embedding, batcher_factory)


def image_limits(settings: EchoSettings) -> ImageLimits:
    """What the embedding stage refuses; the gateway refuses it first, before any fan-out."""
    return ImageLimits(settings.embedding.max_image_bytes, settings.embedding.max_image_pixels, "embedding")


def inspector(
    settings: EchoSettings, default_address: str, token: str | None = None, local: InProcessChannel | None = None
) -> Inspector:
    """The Inspector over its stage clients (see services.gateway.server.build_inspector for the arguments)."""
    from services.gateway.server import build_inspector

    return build_inspector(
        settings.gateway,
        default_address,
        image_store=ImageStore(settings.retrieval.image_store),
        limits=image_limits(settings),
        max_message_mb=settings.server.max_message_mb,
        keep_evidence_images=settings.audit.enabled and settings.gateway.audit_evidence_images,
        token=token,
        local=local,
    )


def audit_trail(settings: EchoSettings) -> AuditTrail | None:
    """The audit trail the gateway writes; None with audit.enabled off."""
    from services.gateway.server import open_audit

    return open_audit(settings.audit, ImageStore(settings.retrieval.image_store))


async def gateway(settings: EchoSettings, default_address: str = "") -> Stage:
    """The Inspector alone; stage addresses come from settings.gateway (cluster mode)."""
    from services.gateway.server import build_stage

    return build_stage(
        settings.gateway,
        settings.audit,
        default_address,
        image_store=ImageStore(settings.retrieval.image_store),
        limits=image_limits(settings),
        max_message_mb=settings.server.max_message_mb,
    )


# The stages one can run alone, each built from the whole tree.
STAGES: dict[str, Callable[[EchoSettings], Awaitable[Stage]]] = {
    "embedding": embedding,
    "retrieval": retrieval,
    "knowledge": knowledge,
    "decision": decision,
    "evidence": evidence,
    "gateway": gateway,
}


def main(argv: Sequence[str] | None = None) -> None:
    """`python -m services.stages <stage> [--config FILE]`: one stage alone, until SIGTERM."""
    parser = argparse.ArgumentParser(description="Run one Echo-IAD stage alone.")
    parser.add_argument("stage", choices=sorted(STAGES))
    parser.add_argument("--config", default=None, help="YAML settings file (else $ECHO_IAD_CONFIG, else defaults).")
    args = parser.parse_args(argv)
    run_standalone(STAGES[args.stage], args.stage, load_settings(args.config))


if __name__ == "__main__":
    main()
