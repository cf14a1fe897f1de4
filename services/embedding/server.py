"""Bootstrap of the embedding stage: build it from settings, or run it alone.

python -m services.embedding.server --config FILE
"""

from __future__ import annotations

import argparse
import asyncio
import logging

import grpc

from echo.v1 import embedding_pb2_grpc
from services.common.config import EchoSettings, load_settings
from services.common.serving import Stage, start_server, wait_for_termination
from services.common.telemetry import setup_logging, start_metrics_exporter
from services.embedding.core import EmbeddingService
from services.embedding.servicer import EmbeddingServicer

SERVICE_NAME = "echo.v1.Embedding"
log = logging.getLogger(__name__)


def _register(server: grpc.aio.Server, servicer: object) -> None:
    embedding_pb2_grpc.add_EmbeddingServicer_to_server(servicer, server)


async def build_stage(settings: EchoSettings) -> Stage:
    """Load the model (off the event loop) and wrap it as a hostable stage; ConfigError if weights are missing."""
    service = await asyncio.to_thread(EmbeddingService.from_settings, settings.embedding)
    return Stage(SERVICE_NAME, EmbeddingServicer(service), _register)


async def serve(settings: EchoSettings) -> None:
    stage = await build_stage(settings)
    server, port, _ = await start_server(
        [stage], settings.server.host, settings.server.port, settings.server.max_message_mb
    )
    log.info("embedding stage (%s) serving on %s:%d", stage.servicer.service.model_id, settings.server.host, port)
    try:
        await wait_for_termination(server, settings.server.grace_s)
    finally:
        await stage.servicer.service.close()


def main() -> None:
    parser = argparse.ArgumentParser(description="Run the embedding stage alone.")
    parser.add_argument("--config", default=None, help="YAML settings file (else $ECHO_IAD_CONFIG, else defaults).")
    args = parser.parse_args()
    settings = load_settings(args.config)
    setup_logging(settings.telemetry.log_level)
    start_metrics_exporter(settings.telemetry.metrics_port)
    asyncio.run(serve(settings))


if __name__ == "__main__":
    main()
