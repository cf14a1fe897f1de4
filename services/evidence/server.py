"""Bootstrap of the evidence stage: build it from its own settings section (and the embedding backbone's).

Run it alone with `python -m services.stages evidence --config FILE`.
"""

from __future__ import annotations

import asyncio
import functools

import grpc

from echo.v1 import evidence_pb2_grpc
from services.common.batching import BatcherFactory, MicroBatcher
from services.common.serving import Stage
from services.embedding.config import EmbeddingSettings
from services.evidence.config import EvidenceSettings
from services.evidence.core import EvidenceService
from services.evidence.servicer import EvidenceServicer

SERVICE_NAME = "echo.v1.Evidence"


def _register(server: grpc.aio.Server, servicer: object) -> None:
    evidence_pb2_grpc.add_EvidenceServicer_to_server(servicer, server)


async def build_stage(
    settings: EvidenceSettings, embedding: EmbeddingSettings, batcher_factory: BatcherFactory = MicroBatcher
) -> Stage:
    """Load the backbone and open the bank store (off the event loop); ConfigError on missing weights or a bank
    built with another backbone.

    `batcher_factory`: how queries are batched (a Serve replica passes `@serve.batch`'s).
    """
    build = functools.partial(EvidenceService.from_settings, settings, embedding, batcher_factory)
    service = await asyncio.to_thread(build)
    return Stage(SERVICE_NAME, EvidenceServicer(service), _register)
