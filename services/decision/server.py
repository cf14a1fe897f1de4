"""Bootstrap of the decision stage: `python -m services.decision.server --config FILE`."""

from __future__ import annotations

import asyncio
import logging

import grpc

from echo.v1 import decision_pb2_grpc
from services.common.serving import Stage, run_standalone
from services.config import EchoSettings, load_settings
from services.decision.core import Decider, build_decider
from services.decision.servicer import DecisionServicer

SERVICE_NAME = "echo.v1.Decision"
log = logging.getLogger(__name__)


def register(server: grpc.aio.Server, servicer: object) -> None:
    decision_pb2_grpc.add_DecisionServicer_to_server(servicer, server)


def stage_for(decider: Decider) -> Stage:
    """The stage around an already-built decider (tests and the gateway inject theirs)."""
    return Stage(SERVICE_NAME, DecisionServicer(decider), register)


async def build_stage(settings: EchoSettings) -> Stage:
    """Load the configured decider (a model load or the offline model's first build runs off the event loop)."""
    return stage_for(await asyncio.to_thread(build_decider, settings.decision))


def main() -> None:
    run_standalone(build_stage, "Run the decision stage alone.", load_settings)


if __name__ == "__main__":
    main()
