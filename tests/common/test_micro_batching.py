"""Concurrent requests are gathered up to a batch size or a wait; one bad item fails only its caller."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from services.common.batching import BATCH_HISTORY, MicroBatcher
from services.common.errors import InvalidArgument, Unavailable


class Recorder:
    def __init__(self, delay_s: float = 0.0) -> None:
        self.batches: list[list[int]] = []
        self.threads: set[str] = set()
        self.delay_s = delay_s

    def __call__(self, key: object, items: list[int], abandoned: object) -> list[int | BaseException]:
        self.batches.append(list(items))
        self.threads.add(threading.current_thread().name)
        time.sleep(self.delay_s)
        return [InvalidArgument("is negative", field=f"x[{i}]") if i < 0 else i * 10 for i in items]


async def test_concurrent_requests_share_batches_no_larger_than_the_maximum() -> None:
    fn = Recorder(delay_s=0.01)
    batcher = MicroBatcher(fn, max_batch_size=8, max_wait_ms=20, stage="test")
    results = await asyncio.gather(*(batcher.submit(i) for i in range(30)))
    assert results == [i * 10 for i in range(30)]
    assert max(len(b) for b in fn.batches) == 8
    assert len(fn.batches) <= 5  # 30 items, not 30 calls
    assert sorted(i for b in fn.batches for i in b) == list(range(30))
    assert fn.threads == {"test-batch_0"}  # one model thread, off the event loop
    await batcher.close()


async def test_a_lone_request_waits_at_most_max_wait() -> None:
    batcher = MicroBatcher(Recorder(), max_batch_size=64, max_wait_ms=30, stage="test")
    start = time.perf_counter()
    assert await batcher.submit(4) == 40
    assert time.perf_counter() - start < 0.5
    await batcher.close()


async def test_zero_wait_runs_what_is_queued_right_away() -> None:
    fn = Recorder()
    batcher = MicroBatcher(fn, max_batch_size=64, max_wait_ms=0, stage="test")
    assert await batcher.submit_many([1, 2, 3]) == [10, 20, 30]
    assert fn.batches == [[1, 2, 3]]
    await batcher.close()


async def test_a_bad_item_fails_only_its_own_request() -> None:
    batcher = MicroBatcher(Recorder(), max_batch_size=8, max_wait_ms=10, stage="test")
    good, bad = await asyncio.gather(batcher.submit_many([1, 2]), batcher.submit_many([3, -1]), return_exceptions=True)
    assert good == [10, 20]
    assert isinstance(bad, InvalidArgument) and "x[-1]: is negative" in str(bad)
    await batcher.close()


async def test_a_crashing_batch_function_fails_that_batch_and_the_batcher_keeps_serving() -> None:
    calls = {"n": 0}

    def flaky(key: object, items: list[int], abandoned: object) -> list[int]:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("device lost")
        return items

    batcher = MicroBatcher(flaky, max_batch_size=4, max_wait_ms=1, stage="test")
    with pytest.raises(RuntimeError, match="device lost"):
        await batcher.submit(1)
    assert await batcher.submit(2) == 2
    await batcher.close()


async def test_closed_batcher_is_unavailable() -> None:
    batcher = MicroBatcher(Recorder(), max_batch_size=4, max_wait_ms=1, stage="test")
    await batcher.close()
    with pytest.raises(Unavailable):
        await batcher.submit(1)


async def test_the_batch_size_history_is_bounded() -> None:
    batcher = MicroBatcher(lambda key, items, abandoned: list(items), max_batch_size=1, max_wait_ms=0, stage="t")
    try:
        for i in range(2 * BATCH_HISTORY + 10):
            assert await batcher.submit(i) == i
    finally:
        await batcher.close()
    assert BATCH_HISTORY <= len(batcher.batches) <= 2 * BATCH_HISTORY
