"""Bootstrap of the decision stage, from its own settings section.

Run it alone with `python -m services.stages decision --config FILE`.
"""

from __future__ import annotations

import asyncio
import logging

import grpc

from echo.v1 import decision_pb2_grpc
from services.common.batching import BatcherFactory, MicroBatcher
from services.common.errors import InvalidArgument
from services.common.serving import Stage
from services.decision.config import DecisionSettings
from services.decision.core import Decider, DecisionMaker
from services.decision.servicer import DecisionServicer

SERVICE_NAME = "echo.v1.Decision"
log = logging.getLogger(__name__)


def register(server: grpc.aio.Server, servicer: object) -> None:
    decision_pb2_grpc.add_DecisionServicer_to_server(servicer, server)


def stage_for(decider: Decider) -> Stage:
    """The stage around an already-built decider (tests and the gateway inject theirs)."""
    return Stage(SERVICE_NAME, DecisionServicer(decider), register)


def build_decider(settings: DecisionSettings, batcher_factory: BatcherFactory = MicroBatcher) -> Decider:
    """The configured decider; blocking (it may load or build a model), so call it off the event loop.

    `batcher_factory`: how the transformers backend batches (a Serve replica passes `@serve.batch`'s).
    """
    backend = settings.backend
    if backend == "random":
        from services.decision.baselines import RandomDecider

        return RandomDecider(settings)
    if backend == "oracle":
        from services.decision.baselines import OracleDecider

        return OracleDecider(settings)
    if backend == "evidence":
        from services.decision.evidence_answer import EvidenceDecider

        return EvidenceDecider()
    if backend == "transformers":
        from services.decision.backends.local import TransformersBackend

        return DecisionMaker(TransformersBackend.from_settings(settings, batcher_factory=batcher_factory), settings)
    if backend == "openai":
        from services.decision.backends.openai_compat import OpenAIBackend

        return DecisionMaker(OpenAIBackend.from_settings(settings), settings)
    if backend == "vllm":
        from services.decision.backends.vllm_serve import VLLMBackend

        return DecisionMaker(VLLMBackend(settings), settings)
    raise InvalidArgument(f"unknown backend {backend!r}", field="decision.backend")


async def build_stage(settings: DecisionSettings, batcher_factory: BatcherFactory = MicroBatcher) -> Stage:
    """Load the configured decider (a model load or the offline model's first build runs off the event loop)."""
    return stage_for(await asyncio.to_thread(build_decider, settings, batcher_factory))
