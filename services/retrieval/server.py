"""Bootstrap of the retrieval stage: open the memory from settings, or run the stage alone.

python -m services.retrieval.server --config FILE
"""

from __future__ import annotations

import argparse
import asyncio
import logging

import grpc

from echo.v1 import retrieval_pb2_grpc
from services.common.config import EchoSettings, load_settings
from services.common.errors import ConfigError
from services.common.images import ImageStore
from services.common.serving import Stage, start_server, wait_for_termination
from services.common.telemetry import setup_logging, start_metrics_exporter
from services.retrieval.core import EmbedImages, Memory
from services.retrieval.servicer import RetrievalServicer
from services.retrieval.store import open_store

SERVICE_NAME = "echo.v1.Retrieval"
log = logging.getLogger(__name__)


def _register(server: grpc.aio.Server, servicer: object) -> None:
    retrieval_pb2_grpc.add_RetrievalServicer_to_server(servicer, server)


def model_dim(settings: EchoSettings) -> int:
    """The vector size the memory must hold: retrieval.dim if set, else the embedding model's (from its config).

    0 when the model's config cannot be read here (a cluster replica without the model files): an existing
    collection is then trusted as it is.
    """
    if settings.retrieval.dim:
        return settings.retrieval.dim
    from services.embedding.model import embedding_dim

    try:
        return embedding_dim(settings.embedding)
    except ConfigError as e:
        log.warning("cannot read the embedding model's size (%s); trusting the collection's", e)
        return 0


def open_memory(settings: EchoSettings, embed_images: EmbedImages | None = None) -> Memory:
    """Open the configured memory; ConfigError when its vector size differs from the embedding model's."""
    store = open_store(settings.retrieval, model_dim(settings))
    return Memory(store, settings.retrieval, ImageStore(settings.retrieval.image_store), embed_images)


async def build_stage(settings: EchoSettings) -> Stage:
    memory = await asyncio.to_thread(open_memory, settings)
    return Stage(SERVICE_NAME, RetrievalServicer(memory), _register)


async def serve(settings: EchoSettings) -> None:
    stage = await build_stage(settings)
    server, port, _ = await start_server(
        [stage], settings.server.host, settings.server.port, settings.server.max_message_mb
    )
    memory = stage.servicer.memory
    log.info("retrieval stage (%s, %d-d) serving on %s:%d", memory.store.engine, memory.dim, settings.server.host, port)
    try:
        await wait_for_termination(server, settings.server.grace_s)
    finally:
        memory.close()


def main() -> None:
    parser = argparse.ArgumentParser(description="Run the retrieval stage alone.")
    parser.add_argument("--config", default=None, help="YAML settings file (else $ECHO_IAD_CONFIG, else defaults).")
    args = parser.parse_args()
    settings = load_settings(args.config)
    setup_logging(settings.telemetry.log_level)
    start_metrics_exporter(settings.telemetry.metrics_port)
    asyncio.run(serve(settings))


if __name__ == "__main__":
    main()
