"""A storm of 1 ms deadlines leaves no `Task exception was never retrieved` behind: a stage call whose caller went
away still ends, and its status is consumed, not left for the garbage collector to print as a traceback."""

from __future__ import annotations

import asyncio
import gc
from typing import Any

import grpc
import pytest

from services.common.inprocess import InProcessChannel
from services.common.stage_client import Deadline, StageClient
from services.gateway.config import StageEndpoint


class _Call:
    """A stage call under way, driven by the test: it fails when the test says."""

    def __init__(self, fut: asyncio.Future[Any]) -> None:
        self.fut = fut

    def __await__(self) -> Any:
        return self.fut.__await__()

    def cancel(self) -> bool:
        return self.fut.cancel()


def _deadline_exceeded() -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(grpc.StatusCode.DEADLINE_EXCEEDED, grpc.aio.Metadata(), grpc.aio.Metadata(), "late")


@pytest.mark.parametrize("rounds", [200])
async def test_a_caller_leaving_as_its_stage_call_fails_leaves_no_unretrieved_task_exception(rounds: int) -> None:
    loop = asyncio.get_running_loop()
    reported: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, ctx: reported.append(ctx))
    client = StageClient("embedding", InProcessChannel(), StageEndpoint(stall_probe_ms=1000))
    for _ in range(rounds):  # the call fails in the same turn of the loop as its caller is cancelled
        fut: asyncio.Future[Any] = loop.create_future()
        watcher = asyncio.ensure_future(client._watch(_Call(fut), "EmbedTexts", Deadline.after_ms(5000)))
        await asyncio.sleep(0)
        fut.set_exception(_deadline_exceeded())
        watcher.cancel()
        with pytest.raises(asyncio.CancelledError):
            await watcher
    for _ in range(3):
        await asyncio.sleep(0.01)
        gc.collect()
    assert [c.get("message") for c in reported] == []
