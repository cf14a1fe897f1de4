"""Health that tells the truth while busy: a stage whose model works through a burst stays SERVING even though its
tiny health request queues behind the burst; a stage whose model is stuck (a batch running past stuck_after_s with
nothing finished meanwhile) goes NOT_SERVING."""

from __future__ import annotations

import asyncio
import threading
import time

from services.common.batching import MicroBatcher
from services.common.health import StageHealth
from services.common.pipeline import Pipeline, Prepared

PROBE_TIMEOUT_S = 0.5
STUCK_AFTER_S = 1.0  # a batch running longer, with nothing finished meanwhile, is stuck


class _Model:
    """A batch of one takes `batch_s`; `held` stops it until released (a stuck model)."""

    def __init__(self, batch_s: float) -> None:
        self.batch_s = batch_s
        self.released = threading.Event()
        self.released.set()

    def prepare(self, items: list[int]) -> Prepared[list[int]]:
        return Prepared(list(items), [None] * len(items))

    def run(self, payload: list[int]) -> list[int]:
        self.released.wait(30)
        time.sleep(self.batch_s)
        return payload


def _stage(model: _Model, stage: str) -> tuple[Pipeline, StageHealth]:
    pipeline = Pipeline(
        model.prepare, model.run, batcher_factory=MicroBatcher, max_batch_size=1, max_wait_ms=0, stage=stage, depth=1
    )

    async def probe() -> None:  # the stage's tiny real request, through the same pipeline as the work
        await pipeline.submit_many([0])

    health = StageHealth(f"echo.v1.{stage.capitalize()}", probe, timeout_s=PROBE_TIMEOUT_S, stuck_after_s=STUCK_AFTER_S)
    return pipeline, health


async def test_a_stage_working_through_a_burst_stays_serving_though_its_probe_queues_behind_it() -> None:
    model = _Model(batch_s=0.1)
    pipeline, health = _stage(model, "busyburst")
    burst = [asyncio.ensure_future(pipeline.submit_many([i])) for i in range(40)]  # 4 s of work queued
    await asyncio.sleep(0.05)
    try:
        for _ in range(3):  # each probe waits past its timeout behind the burst, while batches finish
            started = time.monotonic()
            assert await health.check() is None
            assert time.monotonic() - started >= PROBE_TIMEOUT_S * 0.9  # it did queue: the burst was real
        assert not all(b.done() for b in burst)
    finally:
        await asyncio.gather(*burst)
        await pipeline.close()


async def test_a_stage_whose_model_is_stuck_goes_not_serving_under_the_same_load() -> None:
    model = _Model(batch_s=0.1)
    pipeline, health = _stage(model, "stuckburst")
    model.released.clear()  # the model hangs on its next batch
    burst = [asyncio.ensure_future(pipeline.submit_many([i])) for i in range(40)]
    await asyncio.sleep(STUCK_AFTER_S)  # the hung batch has run this long
    try:
        problem = await health.check()
        assert problem is not None and "health check took over" in problem
        assert not health.serving
    finally:
        model.released.set()
        await asyncio.gather(*burst)
        await pipeline.close()
