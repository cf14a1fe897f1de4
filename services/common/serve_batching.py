"""Ray Serve's `@serve.batch` behind the Batcher protocol, for stages built inside a Serve replica.

The stage's batch function is the same one the embedded MicroBatcher runs; here
`@serve.batch` gathers the calls, so Serve's batch metrics
(`serve_actual_batch_size`, `serve_batch_queue_length`, ...) describe them.
Calls still run on one dedicated model thread: batches never overlap and the
replica's event loop stays free. Ray is imported only when a batcher is built.

Unlike the MicroBatcher, `@serve.batch` always waits `batch_wait_timeout_s` for a
batch to fill (it knows no sessions), so a lone request pays that wait: keep
`max_wait_ms` small.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Hashable, Sequence
from typing import Any

from services.common.batching import BatcherBase, BatchFn, Fill
from services.common.health import working
from services.common.telemetry import BATCH_SIZE, QUEUE_DEPTH


def _never() -> bool:
    return False  # Serve does not say when a batch's callers gave up


class ServeBatcher(BatcherBase):
    """Items with the same key share a `@serve.batch` queue; each batch runs `fn(key, items, abandoned)`.

    Args: as MicroBatcher's; `fill` is accepted for the factory protocol and ignored (see the module docstring).
    """

    def __init__(
        self, fn: BatchFn, *, max_batch_size: int, max_wait_ms: float, stage: str, fill: Fill = "time"
    ) -> None:
        super().__init__(fn, max_batch_size=max_batch_size, max_wait_ms=max_wait_ms, stage=stage, fill=fill)
        self._queues: dict[Hashable, Callable[[Any], Any]] = {}
        self._waiting = 0

    def _queue_for(self, key: Hashable) -> Callable[[Any], Any]:
        if key not in self._queues:
            from ray import serve

            async def run_batch(items: list[Any]) -> list[Any]:
                self._ran(len(items))
                BATCH_SIZE.observe(len(items), stage=self.stage)
                loop = asyncio.get_running_loop()
                try:
                    with working(self.stage):  # health: busy while a batch runs, not stuck
                        results = list(await loop.run_in_executor(self._executor, self.fn, key, items, _never))
                    if len(results) != len(items):
                        raise RuntimeError(f"batch of {len(items)} returned {len(results)} results")
                except Exception as e:  # the whole call failed: every caller hears why
                    results = [e] * len(items)
                return results

            run_batch.__name__ = f"{self.stage}_batch"
            self._queues[key] = serve.batch(max_batch_size=self.max_batch_size, batch_wait_timeout_s=self.max_wait_s)(
                run_batch
            )
        return self._queues[key]

    async def submit(self, item: Any, key: Hashable = None) -> Any:
        self._check_open()
        self._waiting += 1
        QUEUE_DEPTH.set(self._waiting, stage=self.stage)
        try:
            result = await self._queue_for(key)(item)
        finally:
            self._waiting -= 1
            QUEUE_DEPTH.set(self._waiting, stage=self.stage)
        if isinstance(result, BaseException):
            raise result
        return result

    async def submit_many(self, items: Sequence[Any], key: Hashable = None) -> list[Any]:
        return list(await asyncio.gather(*(self.submit(i, key) for i in items)))

    @contextlib.asynccontextmanager
    async def session(self) -> AsyncIterator[None]:
        yield

    async def close(self) -> None:
        self._closed = True
        self._executor.shutdown(wait=False, cancel_futures=True)
