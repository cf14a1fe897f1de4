"""Bootstrap of the knowledge stage: open the store and the embedder from its own settings section.

Run it alone with `python -m services.stages knowledge --config FILE`.
"""

from __future__ import annotations

import asyncio
import logging

from echo.v1 import knowledge_pb2_grpc
from services.common.serving import Stage
from services.knowledge.config import KnowledgeSettings
from services.knowledge.core import KnowledgeGuide
from services.knowledge.decision_refiner import DecisionRefiner
from services.knowledge.refine import Refiner
from services.knowledge.servicer import KnowledgeServicer

SERVICE_NAME = "echo.v1.Knowledge"
log = logging.getLogger(__name__)


async def build_stage(settings: KnowledgeSettings, refiner: Refiner | None = None) -> Stage:
    """Load and validate the knowledge files (a malformed file fails here, naming file and field), open the
    store (Redis unreachable: degraded, served from the files) and load MiniLM.

    Args:
        settings: the knowledge section.
        refiner: LLM refinement of CSK; default: the decision stage's model over its Complete RPC, at
            knowledge.refine_address (embedded mode: connect_refiner() once the port is bound).
    """
    ks = settings
    if refiner is None:
        refiner = DecisionRefiner(
            ks.refine_address,
            application=ks.refine_application,
            timeout_s=ks.refine_timeout_s,
            max_tokens=ks.refine_max_tokens,
        )
    guide = await asyncio.to_thread(KnowledgeGuide.from_settings, ks, refiner)
    servicer = KnowledgeServicer(guide)
    return Stage(SERVICE_NAME, servicer, _register)


def connect_refiner(stage: Stage, address: str, token: str = "") -> None:
    """Embedded mode: the decision stage shares this stage's port, known once the server is bound (and the token
    the server minted for its own stages, when it checks tokens)."""
    refiner = stage.servicer.guide.refiner  # type: ignore[attr-defined]
    if isinstance(refiner, DecisionRefiner):
        refiner.connect(address, token)


def _register(server: object, servicer: object) -> None:
    knowledge_pb2_grpc.add_KnowledgeServicer_to_server(servicer, server)
