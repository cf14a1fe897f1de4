"""Bootstrap of the embedding stage: build it from its own settings section.

Run it alone with `python -m services.stages embedding --config FILE`.
"""

from __future__ import annotations

import asyncio
import functools
import logging

import grpc

from echo.v1 import embedding_pb2_grpc
from services.common.batching import BatcherFactory, MicroBatcher
from services.common.serving import Stage
from services.embedding.config import EmbeddingSettings
from services.embedding.core import EmbeddingService
from services.embedding.servicer import EmbeddingServicer

SERVICE_NAME = "echo.v1.Embedding"
log = logging.getLogger(__name__)


def _register(server: grpc.aio.Server, servicer: object) -> None:
    embedding_pb2_grpc.add_EmbeddingServicer_to_server(servicer, server)


async def build_stage(settings: EmbeddingSettings, batcher_factory: BatcherFactory = MicroBatcher) -> Stage:
    """Load the model (off the event loop) and wrap it as a hostable stage; ConfigError if weights are missing.

    `batcher_factory`: how images are batched (a Serve replica passes `@serve.batch`'s).
    """
    build = functools.partial(EmbeddingService.from_settings, settings, batcher_factory)
    service = await asyncio.to_thread(build)
    return Stage(SERVICE_NAME, EmbeddingServicer(service), _register)
