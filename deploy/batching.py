"""Ray Serve's `@serve.batch` behind the batcher interfaces the stages already use.

The stages batch with their own asyncio micro-batchers in embedded mode. In the
cluster the same synchronous batch functions (`ClipEncoder.embed_items`,
`LocalModel.run_batch`) run under `@serve.batch` instead, so Serve's batch
metrics (`serve_actual_batch_size`, `serve_batch_queue_length`, ...) describe
them. Calls still run on one dedicated model thread: batches never overlap and
the replica's event loop stays free.

Unlike the embedded batchers, `@serve.batch` always waits `batch_wait_timeout_s`
for a batch to fill, so a lone request pays that wait: keep `max_wait_ms` small.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Hashable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ray import serve

from deploy.metrics import BATCH_SIZE, QUEUE_DEPTH
from services.common.errors import Unavailable

KeyedBatchFn = Callable[[Hashable, list[Any]], Sequence[Any]]


class ServeBatcher:
    """Items with the same key share a `@serve.batch` queue; each batch runs `fn(key, items)` on the model thread.

    Args:
        fn: blocking batch function; one result per item, in order; an exception in place of a result fails
            only that item's caller.
        max_batch_size: most items per call.
        max_wait_ms: how long the first item of a batch waits for company (`batch_wait_timeout_s`).
        stage: label of the batch-size and queue-depth metrics.
    """

    def __init__(self, fn: KeyedBatchFn, max_batch_size: int, max_wait_ms: float, stage: str) -> None:
        self.fn = fn
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_ms / 1000.0
        self.stage = stage
        self.batches: list[int] = []  # sizes of the batches run so far (tests read it)
        self._queues: dict[Hashable, Callable[[Any], Any]] = {}
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"{stage}-serve-batch")
        self._waiting = 0
        self._closed = False

    def _queue_for(self, key: Hashable) -> Callable[[Any], Any]:
        if key not in self._queues:

            async def run_batch(items: list[Any]) -> list[Any]:
                self.batches.append(len(items))
                BATCH_SIZE.observe(len(items), tags={"stage": self.stage})
                loop = asyncio.get_running_loop()
                try:
                    results = list(await loop.run_in_executor(self._executor, self.fn, key, items))
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

    async def run(self, key: Hashable, item: Any) -> Any:
        """Queue one item under `key`; its result, or its error raised."""
        if self._closed:
            raise Unavailable(f"{self.stage}: batcher is closed")
        self._waiting += 1
        QUEUE_DEPTH.set(self._waiting, tags={"stage": self.stage})
        try:
            result = await self._queue_for(key)(item)
        finally:
            self._waiting -= 1
            QUEUE_DEPTH.set(self._waiting, tags={"stage": self.stage})
        if isinstance(result, BaseException):
            raise result
        return result

    async def run_exclusive(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Another model call on the model thread, between batches (e.g. the text tower)."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    @contextlib.asynccontextmanager
    async def session(self) -> AsyncIterator[None]:
        """Brackets one decision; Serve's batch wait is time-based, so there is nothing to count."""
        yield

    async def close(self) -> None:
        self._closed = True
        self._executor.shutdown(wait=False, cancel_futures=True)


class EmbeddingBatcher(ServeBatcher):
    """The interface of `services.embedding.batching.MicroBatcher` over `@serve.batch`."""

    def __init__(self, fn: Callable[[list[Any]], Sequence[Any]], max_batch_size: int, max_wait_ms: float) -> None:
        super().__init__(lambda _key, items: fn(items), max_batch_size, max_wait_ms, stage="embedding")

    async def submit(self, item: Any) -> Any:
        return await self.run(None, item)

    async def submit_many(self, items: Sequence[Any]) -> list[Any]:
        """Several items (they may ride in different batches), in order; the first error is raised."""
        return list(await asyncio.gather(*(self.run(None, i) for i in items)))


class DecisionBatcher(ServeBatcher):
    """The interface of `services.decision.batching.MicroBatcher` over `@serve.batch` (batches grouped by key)."""

    def __init__(self, fn: KeyedBatchFn, max_batch_size: int, max_wait_ms: float) -> None:
        super().__init__(fn, max_batch_size, max_wait_ms, stage="decision")

    async def submit(self, key: Hashable, item: Any) -> Any:
        return await self.run(key, item)
