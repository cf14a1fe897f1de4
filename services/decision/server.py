"""Bootstrap of the decision stage: `python -m services.decision.server --config FILE`."""

from __future__ import annotations

import argparse
import asyncio
import logging

import grpc

from echo.v1 import decision_pb2_grpc
from services.common.config import EchoSettings, load_settings
from services.common.serving import Stage, start_server, wait_for_termination
from services.common.telemetry import setup_logging, start_metrics_exporter
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


async def serve(settings: EchoSettings) -> None:
    stage = await build_stage(settings)
    server, port, _ = await start_server(
        [stage], settings.server.host, settings.server.port, settings.server.max_message_mb
    )
    log.info("decision stage (%s backend) on %s:%d", settings.decision.backend, settings.server.host, port)
    try:
        await wait_for_termination(server, settings.server.grace_s)
    finally:
        await stage.servicer.decider.close()  # type: ignore[attr-defined]


def main() -> None:
    parser = argparse.ArgumentParser(description="Run the decision stage alone.")
    parser.add_argument("--config", help="YAML settings file (default: $ECHO_IAD_CONFIG or built-in defaults)")
    args = parser.parse_args()
    settings = load_settings(args.config)
    setup_logging(settings.telemetry.log_level)
    start_metrics_exporter(settings.telemetry.metrics_port)
    asyncio.run(serve(settings))


if __name__ == "__main__":
    main()
