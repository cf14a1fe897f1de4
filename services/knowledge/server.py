"""Bootstrap of the knowledge stage: open the store and the embedder from settings, or run the stage alone.

python -m services.knowledge.server --config FILE
"""

from __future__ import annotations

import argparse
import asyncio
import logging

from echo.v1 import knowledge_pb2_grpc
from services.common.config import EchoSettings, load_settings
from services.common.serving import Stage, start_server, wait_for_termination
from services.common.telemetry import setup_logging, start_metrics_exporter
from services.knowledge.core import KnowledgeGuide
from services.knowledge.refine import Refiner
from services.knowledge.servicer import KnowledgeServicer

SERVICE_NAME = "echo.v1.Knowledge"
log = logging.getLogger(__name__)


async def build_stage(settings: EchoSettings, refiner: Refiner | None = None) -> Stage:
    """Load and validate the knowledge files (a malformed file fails here, naming file and field), open the
    store (Redis unreachable: degraded, served from the files) and load MiniLM.

    Args:
        settings: the whole configuration; this stage reads settings.knowledge.
        refiner: optional LLM refinement of CSK (the gateway passes one backed by the decision stage).
    """
    guide = await asyncio.to_thread(KnowledgeGuide.from_settings, settings.knowledge, refiner)
    servicer = KnowledgeServicer(guide, settings.knowledge.max_token_budget)
    return Stage(SERVICE_NAME, servicer, _register)


def _register(server: object, servicer: object) -> None:
    knowledge_pb2_grpc.add_KnowledgeServicer_to_server(servicer, server)


async def serve(settings: EchoSettings) -> None:
    stage = await build_stage(settings)
    server, port, _ = await start_server(
        [stage], settings.server.host, settings.server.port, settings.server.max_message_mb
    )
    guide: KnowledgeGuide = stage.servicer.guide  # type: ignore[attr-defined]
    status = guide.status()
    log.info(
        "knowledge stage (%s store%s, %d entries) serving on %s:%d",
        status.kind,
        ", DEGRADED" if status.degraded else "",
        len(guide.list_entries()),
        settings.server.host,
        port,
    )
    try:
        await wait_for_termination(server, settings.server.grace_s)
    finally:
        guide.close()


def main() -> None:
    parser = argparse.ArgumentParser(description="Run the knowledge stage alone.")
    parser.add_argument("--config", default=None, help="YAML settings file (else $ECHO_IAD_CONFIG, else defaults).")
    args = parser.parse_args()
    settings = load_settings(args.config)
    setup_logging(settings.telemetry.log_level)
    start_metrics_exporter(settings.telemetry.metrics_port)
    asyncio.run(serve(settings))


if __name__ == "__main__":
    main()
