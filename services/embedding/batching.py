"""Dynamic batching for embedded mode: gather concurrent requests up to a size or a wait, run one call.

In the cluster, Ray Serve's `@serve.batch` drives the same synchronous batch
function; here an asyncio queue does it. The batch function runs in one
dedicated thread (model calls never overlap, and the event loop stays free),
and may return an exception in place of a result so that one bad item fails
only its own caller.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Generic, TypeVar

from services.common.errors import Unavailable
from services.common.telemetry import BATCH_SIZE, QUEUE_DEPTH

T = TypeVar("T")
R = TypeVar("R")


class MicroBatcher(Generic[T, R]):
    """Collects items from concurrent callers into batches for `fn(list[T]) -> list[R | Exception]`.

    Args:
        fn: the synchronous batch function; returns one result (or exception) per item, in order.
        max_batch_size: most items per call.
        max_wait_ms: how long the first item of a batch waits for company.
        stage: label for the batch-size and queue-depth metrics.
    """

    def __init__(
        self, fn: Callable[[list[T]], Sequence[R | BaseException]], max_batch_size: int, max_wait_ms: float, stage: str
    ) -> None:
        self.fn = fn
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_ms / 1000.0
        self.stage = stage
        self._queue: asyncio.Queue[tuple[T, asyncio.Future[R]]] | None = None
        self._task: asyncio.Task[None] | None = None
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"{stage}-batch")
        self._closed = False

    async def submit(self, item: T) -> R:
        """Queue one item; resolves with its result once its batch has run."""
        return (await self.submit_many([item]))[0]

    async def submit_many(self, items: Sequence[T]) -> list[R]:
        """Queue several items (they may land in different batches); resolves in order, or raises the first error."""
        if self._closed:
            raise Unavailable(f"{self.stage}: batcher is closed")
        loop = asyncio.get_running_loop()
        if self._queue is None:
            self._queue = asyncio.Queue()
        if self._task is None or self._task.done():
            self._task = loop.create_task(self._run(self._queue))
        futures: list[asyncio.Future[R]] = []
        for item in items:
            fut: asyncio.Future[R] = loop.create_future()
            self._queue.put_nowait((item, fut))
            futures.append(fut)
        QUEUE_DEPTH.labels(self.stage).set(self._queue.qsize())
        try:
            return list(await asyncio.gather(*futures))
        finally:
            for fut in futures:  # our caller gave up (deadline): its pending items are skipped
                fut.cancel()

    async def run_exclusive(self, fn: Callable[..., R], *args: Any) -> R:
        """Run another model call on the batch thread, so it never overlaps a batch (e.g. the text tower)."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def _collect(self, queue: asyncio.Queue[tuple[T, asyncio.Future[R]]]) -> list[tuple[T, asyncio.Future[R]]]:
        batch = [await queue.get()]
        deadline = time.monotonic() + self.max_wait_s
        while len(batch) < self.max_batch_size:
            if not queue.empty():
                batch.append(queue.get_nowait())
                continue
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                batch.append(await asyncio.wait_for(queue.get(), remaining))
            except TimeoutError:
                break
        return [(item, fut) for item, fut in batch if not fut.done()]

    async def _run(self, queue: asyncio.Queue[tuple[T, asyncio.Future[R]]]) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._collect(queue)
            QUEUE_DEPTH.labels(self.stage).set(queue.qsize())
            if not batch:
                continue
            BATCH_SIZE.labels(self.stage).observe(len(batch))
            try:
                results: Sequence[Any] = await loop.run_in_executor(self._executor, self.fn, [i for i, _ in batch])
                if len(results) != len(batch):
                    raise RuntimeError(f"batch function returned {len(results)} results for {len(batch)} items")
            except Exception as e:
                results = [e] * len(batch)
            for (_, fut), res in zip(batch, results, strict=True):
                if fut.done():
                    continue
                if isinstance(res, BaseException):
                    fut.set_exception(res)
                else:
                    fut.set_result(res)

    async def close(self) -> None:
        """Stop batching; queued callers get UNAVAILABLE."""
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, RuntimeError):
                await self._task
        if self._queue is not None:
            while not self._queue.empty():
                _, fut = self._queue.get_nowait()
                if not fut.done():
                    fut.set_exception(Unavailable(f"{self.stage}: shutting down"))
        self._executor.shutdown(wait=False, cancel_futures=True)
