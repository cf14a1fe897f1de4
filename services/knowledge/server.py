"""Bootstrap of the knowledge stage: open the store and the embedder from settings, or run the stage alone.

python -m services.knowledge.server --config FILE
"""

from __future__ import annotations

import asyncio
import logging

from echo.v1 import knowledge_pb2_grpc
from services.common.serving import Stage, run_standalone
from services.config import EchoSettings, load_settings
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
    servicer = KnowledgeServicer(guide)
    return Stage(SERVICE_NAME, servicer, _register)


def _register(server: object, servicer: object) -> None:
    knowledge_pb2_grpc.add_KnowledgeServicer_to_server(servicer, server)


def main() -> None:
    run_standalone(build_stage, "Run the knowledge stage alone.", load_settings)


if __name__ == "__main__":
    main()
