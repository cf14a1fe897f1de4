"""The two-step pipeline: batch N+1 is prepared while batch N runs; order, per-item errors, back-pressure hold."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

import pytest

from services.common.batching import MicroBatcher
from services.common.errors import InvalidArgument, Unavailable
from services.common.pipeline import Pipeline, Prepared

WAIT_S = 10.0  # a generous bound: a test that needs it has already failed


class Steps:
    """prepare: negative items are refused; run: x -> 10x. Records what ran where, and can hold either step."""

    def __init__(self) -> None:
        self.prepared: list[list[int]] = []
        self.ran: list[list[int]] = []
        self.threads: dict[str, set[str]] = {"prepare": set(), "run": set()}
        self.on_prepare: Callable[[list[int]], None] = lambda items: None
        self.on_run: Callable[[list[int]], None] = lambda items: None
        self.fail_run: set[int] = set()

    def prepare(self, items: list[int]) -> Prepared[list[int]]:
        self.prepared.append(list(items))
        self.threads["prepare"].add(threading.current_thread().name)
        self.on_prepare(items)
        errors = [InvalidArgument("is negative", field=f"x[{i}]") if i < 0 else None for i in items]
        return Prepared([i for i in items if i >= 0], errors)

    def run(self, payload: list[int]) -> list[int | BaseException]:
        self.ran.append(list(payload))
        self.threads["run"].add(threading.current_thread().name)
        self.on_run(payload)
        if self.fail_run & set(payload):
            raise RuntimeError("model crashed")
        return [i * 10 for i in payload]


def pipeline(steps: Steps, max_batch_size: int = 2, depth: int = 2) -> Pipeline:
    return Pipeline(
        steps.prepare,
        steps.run,
        batcher_factory=MicroBatcher,
        max_batch_size=max_batch_size,
        max_wait_ms=0,
        stage="test",
        depth=depth,
    )


async def values(p: Pipeline, items: list[int]) -> list[Any]:
    return [d.value for d in await p.submit_many(items)]


async def test_batch_n_plus_1_is_prepared_while_the_model_runs_batch_n() -> None:
    steps = Steps()
    second_prepared = threading.Event()
    overlapped: list[bool] = []
    steps.on_prepare = lambda items: second_prepared.set() if len(steps.prepared) == 2 else None
    # The first model call waits until the second batch is being prepared: it can only see that if they overlap.
    steps.on_run = lambda items: overlapped.append(second_prepared.wait(WAIT_S)) if len(steps.ran) == 1 else None
    p = pipeline(steps)
    try:
        assert await asyncio.gather(values(p, [1, 2]), values(p, [3, 4])) == [[10, 20], [30, 40]]
        assert overlapped == [True]
        assert steps.threads["prepare"] == {"test-batch_0"} and steps.threads["run"] == {"test-model"}
        assert steps.ran == [[1, 2], [3, 4]]  # the model ran the batches in the order they were prepared
    finally:
        await p.close()


async def test_each_caller_gets_its_own_results_in_its_own_order() -> None:
    steps = Steps()
    p = pipeline(steps, max_batch_size=3)
    try:
        requests = [list(range(k * 10, k * 10 + n)) for k, n in enumerate([1, 4, 2, 5, 3])]
        results = await asyncio.gather(*(values(p, r) for r in requests))
        assert results == [[i * 10 for i in r] for r in requests]
        assert max(len(b) for b in steps.prepared) <= 3
    finally:
        await p.close()


async def test_an_item_that_cannot_be_prepared_fails_only_its_own_caller() -> None:
    steps = Steps()
    p = pipeline(steps, max_batch_size=8)
    try:
        good, bad = await asyncio.gather(values(p, [1, 2]), values(p, [3, -1]), return_exceptions=True)
        assert good == [10, 20]
        assert isinstance(bad, InvalidArgument) and "x[-1]: is negative" in str(bad)
        assert -1 not in [i for b in steps.ran for i in b]  # the refused item never reached the model
    finally:
        await p.close()


async def test_a_failed_model_call_fails_its_batch_and_the_pipeline_keeps_serving() -> None:
    steps = Steps()
    steps.fail_run = {7}
    p = pipeline(steps, max_batch_size=2)
    try:
        with pytest.raises(RuntimeError, match="model crashed"):
            await values(p, [6, 7])
        assert await values(p, [8]) == [80]
    finally:
        await p.close()


@pytest.mark.parametrize("depth", [1, 2])
async def test_a_slow_model_holds_back_preparing_beyond_depth_batches(depth: int) -> None:
    steps = Steps()
    release = threading.Event()
    steps.on_run = lambda items: release.wait(WAIT_S)
    p = pipeline(steps, max_batch_size=1, depth=depth)
    try:
        calls = [asyncio.ensure_future(values(p, [i])) for i in range(8)]
        for _ in range(200):  # until the prepare thread is stuck waiting for room
            await asyncio.sleep(0.01)
            if len(steps.prepared) == depth + 2:
                break
        await asyncio.sleep(0.1)
        # one batch in the model, `depth` waiting for it, one prepared and waiting for room; the rest not prepared
        assert len(steps.prepared) == depth + 2
        assert len(steps.ran) == 1
        release.set()
        assert await asyncio.gather(*calls) == [[i * 10] for i in range(8)]
    finally:
        release.set()
        await p.close()


async def test_other_model_calls_run_on_the_model_thread_between_batches() -> None:
    steps = Steps()
    p = pipeline(steps)
    try:
        assert await p.run_exclusive(lambda x: (x, threading.current_thread().name), 5) == (5, "test-model")
        assert await values(p, [1]) == [10]
    finally:
        await p.close()


async def test_a_closed_pipeline_is_unavailable() -> None:
    p = pipeline(Steps())
    await p.close()
    with pytest.raises(Unavailable):
        await p.submit_many([1])
