"""Bootstrap of the retrieval stage: open the memory from its own settings section (and the embedding model's,
whose vector size the memory must hold).

Run it alone with `python -m services.stages retrieval --config FILE`.
"""

from __future__ import annotations

import asyncio
import logging

import grpc

from echo.v1 import retrieval_pb2_grpc
from services.common.errors import ConfigError
from services.common.images import ImageStore
from services.common.serving import Stage
from services.embedding.config import EmbeddingSettings
from services.retrieval.config import RetrievalSettings
from services.retrieval.core import EmbedImages, Memory
from services.retrieval.servicer import RetrievalServicer
from services.retrieval.store import open_store

SERVICE_NAME = "echo.v1.Retrieval"
log = logging.getLogger(__name__)


def _register(server: grpc.aio.Server, servicer: object) -> None:
    retrieval_pb2_grpc.add_RetrievalServicer_to_server(servicer, server)


def model_dim(settings: RetrievalSettings, embedding: EmbeddingSettings) -> int:
    """The vector size the memory must hold: retrieval.dim if set, else the embedding model's (from its config).

    0 when the model's config cannot be read here (a cluster replica without the model files): an existing
    collection is then trusted as it is.
    """
    if settings.dim:
        return settings.dim
    from services.embedding.model import embedding_dim

    try:
        return embedding_dim(embedding)
    except ConfigError as e:
        log.warning("cannot read the embedding model's size (%s); trusting the collection's", e)
        return 0


def open_memory(
    settings: RetrievalSettings, embedding: EmbeddingSettings, embed_images: EmbedImages | None = None
) -> Memory:
    """Open the configured memory; ConfigError when its vector size differs from the embedding model's."""
    store = open_store(settings, model_dim(settings, embedding))
    return Memory(store, settings, ImageStore(settings.image_store), embed_images)


async def build_stage(settings: RetrievalSettings, embedding: EmbeddingSettings) -> Stage:
    memory = await asyncio.to_thread(open_memory, settings, embedding)
    return Stage(SERVICE_NAME, RetrievalServicer(memory), _register)
