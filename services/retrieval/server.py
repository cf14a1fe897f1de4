"""Bootstrap of the retrieval stage: open the memory from settings, or run the stage alone.

python -m services.retrieval.server --config FILE
"""

from __future__ import annotations

import asyncio
import logging

import grpc

from echo.v1 import retrieval_pb2_grpc
from services.common.errors import ConfigError
from services.common.images import ImageStore
from services.common.serving import Stage, run_standalone
from services.config import EchoSettings, load_settings
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


def main() -> None:
    run_standalone(build_stage, "Run the retrieval stage alone.", load_settings)


if __name__ == "__main__":
    main()
