"""The one ingest path of normal images, in this process: what `echo-iad memory build` (and the demo) run.

AddNormalImages and `echo-iad product add` reach Inspector.add_normal_images over gRPC; this serves the
stages it calls (embedding, retrieval, evidence) on a private loopback port in this process and calls that
same method, so the memory of normal images and the evidence banks are built one way whoever asks.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from services import stages as build
from services.common.serving import Internal, start_server
from services.config import EchoSettings
from services.gateway.core import Inspector


@asynccontextmanager
async def ingest_inspector(settings: EchoSettings) -> AsyncIterator[Inspector]:
    """An Inspector over the ingest stages served here (no decision or knowledge stage is loaded)."""
    stages = [await build.embedding(settings), await build.retrieval(settings), await build.evidence(settings)]
    bound: list[Internal] = []
    try:
        server, _, _ = await start_server(stages, "127.0.0.1", 0, settings.server.max_message_mb, on_bound=bound.append)
        inspector = build.inspector(settings, bound[0].address, bound[0].token)
        try:
            yield inspector
        finally:
            await inspector.clients.close()
            await server.stop(0)
    finally:
        for stage in reversed(stages):
            await stage.close()
