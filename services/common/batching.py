"""Dynamic batching: concurrent requests share one model call.

A stage is built with a `BatcherFactory` and never knows which batcher it got:
- `MicroBatcher` (here; the class is the default factory): an asyncio queue, for embedded mode and a stage run alone;
- `ServeBatcher` (services/common/serve_batching.py): Ray Serve's `@serve.batch`, inside a replica,
  so Serve's batch metrics describe the same calls.

Both run the stage's synchronous batch function `fn(key, items, abandoned)` on one
dedicated thread: model calls never overlap, the event loop stays free, and one
thread means one OpenMP pool (torch calls from rotating pool threads each spin up
their own and fight over the cores). Items with the same key share a batch (e.g.
"constrained answer" vs "generate up to 128 tokens"); `fn` returns one result per
item, in order, and a result that is an exception fails only that item's caller.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections import deque
from collections.abc import AsyncIterator, Callable, Hashable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractAsyncContextManager
from typing import Any, Literal, Protocol, TypeVar

from services.common.errors import Unavailable
from services.common.health import working
from services.common.telemetry import BATCH_SIZE, QUEUE_DEPTH

log = logging.getLogger(__name__)
R = TypeVar("R")

BatchFn = Callable[[Hashable, list[Any], Callable[[], bool]], Sequence[Any]]
"""fn(key, items, abandoned) -> one result (or exception) per item; `abandoned()` turns true once every caller
of the batch has given up (deadline, cancellation), so a long generation can stop early."""

Fill = Literal["time", "sessions", "idle"]
"""How long the first item of a batch waits for company, at most max_wait_ms:
"time": the whole wait (requests arrive independently);
"sessions": only while open sessions (decisions in flight) could still add an item, so a lone request never waits;
"idle": not at all: a batch is what is queued when the batch thread is free (items queue while a batch runs, so
batches grow with the load by themselves, and a lone request is never held)."""


BATCH_HISTORY = 1024  # batch sizes kept for tests and benchmarks; the metrics carry the full record


class Batcher(Protocol):
    """What a stage calls; `batches` holds the sizes of the recent batches (tests and benchmarks read it)."""

    batches: list[int]

    async def submit(self, item: Any, key: Hashable = None) -> Any:
        """One item; its result once its batch has run, or its error raised."""

    async def submit_many(self, items: Sequence[Any], key: Hashable = None) -> list[Any]:
        """Several items (they may ride in different batches); the results in order, or the first error raised."""

    def _ran(self, size: int) -> None:
        """Note a batch's size; only the last BATCH_HISTORY are kept (a server runs batches for months)."""
        self.batches.append(size)
        if len(self.batches) > 2 * BATCH_HISTORY:
            del self.batches[:-BATCH_HISTORY]

    async def run_exclusive(self, fn: Callable[..., R], *args: Any) -> R:
        """Another model call on the batch thread, between batches (e.g. the text tower)."""

    def session(self) -> AbstractAsyncContextManager[None]:
        """Brackets one request that will submit items (see Fill)."""

    async def close(self) -> None:
        """Stop; queued and later callers get UNAVAILABLE."""


class BatcherFactory(Protocol):
    def __call__(
        self, fn: BatchFn, *, max_batch_size: int, max_wait_ms: float, stage: str, fill: Fill = "time"
    ) -> Batcher: ...


def _all_done(futures: list[asyncio.Future[Any]]) -> bool:
    return all(f.done() for f in futures)


class BatcherBase:
    """What both batchers share: the settings, the one batch thread, and refusing work once closed."""

    def __init__(
        self, fn: BatchFn, *, max_batch_size: int, max_wait_ms: float, stage: str, fill: Fill = "time"
    ) -> None:
        self.fn = fn
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_ms / 1000.0
        self.stage = stage
        self.fill = fill
        self.batches: list[int] = []
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"{stage}-batch")
        self._closed = False

    def _check_open(self) -> None:
        if self._closed:
            raise Unavailable(f"{self.stage}: batcher is closed")

    def _ran(self, size: int) -> None:
        """Note a batch's size; only the last BATCH_HISTORY are kept (a server runs batches for months)."""
        self.batches.append(size)
        if len(self.batches) > 2 * BATCH_HISTORY:
            del self.batches[:-BATCH_HISTORY]

    async def run_exclusive(self, fn: Callable[..., R], *args: Any) -> R:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)


class MicroBatcher(BatcherBase):
    """An asyncio micro-batcher: groups queued items by key, runs up to max_batch_size of them per call.

    Args:
        fn: the blocking batch function (see BatchFn).
        max_batch_size: most items per call.
        max_wait_ms: how long the first item of a batch may wait for company (see Fill).
        stage: label of the batch-size and queue-depth metrics and of the batch thread.
        fill: "time" or "sessions" (see Fill).
    """

    def __init__(
        self, fn: BatchFn, *, max_batch_size: int, max_wait_ms: float, stage: str, fill: Fill = "time"
    ) -> None:
        super().__init__(fn, max_batch_size=max_batch_size, max_wait_ms=max_wait_ms, stage=stage, fill=fill)
        self.sessions = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: asyncio.Queue[tuple[Hashable, Any, asyncio.Future[Any]]] | None = None
        self._pending: deque[tuple[Hashable, Any, asyncio.Future[Any]]] = deque()  # taken, other key
        self._worker: asyncio.Task[None] | None = None

    @contextlib.asynccontextmanager
    async def session(self) -> AsyncIterator[None]:
        self.sessions += 1
        try:
            yield
        finally:
            self.sessions -= 1

    async def submit(self, item: Any, key: Hashable = None) -> Any:
        return (await self.submit_many([item], key))[0]

    async def submit_many(self, items: Sequence[Any], key: Hashable = None) -> list[Any]:
        self._check_open()
        loop = asyncio.get_running_loop()
        if self._loop is not loop or self._worker is None or self._worker.done():
            self._start(loop)
        assert self._queue is not None
        futures: list[asyncio.Future[Any]] = []
        for item in items:
            fut: asyncio.Future[Any] = loop.create_future()
            self._queue.put_nowait((key, item, fut))
            futures.append(fut)
        QUEUE_DEPTH.set(self._depth(), stage=self.stage)
        try:
            return list(await asyncio.gather(*futures))
        finally:
            for fut in futures:  # our caller gave up (deadline) or one item failed: the rest are skipped
                fut.cancel()

    def _start(self, loop: asyncio.AbstractEventLoop) -> None:
        # A new event loop (tests run one per test) gets its own queue and worker.
        self._loop = loop
        self._queue = asyncio.Queue()
        self._pending.clear()
        self._worker = loop.create_task(self._work(), name=f"{self.stage}-batcher")

    def _depth(self) -> int:
        return (self._queue.qsize() if self._queue else 0) + len(self._pending)

    async def _next(self) -> tuple[Hashable, Any, asyncio.Future[Any]]:
        assert self._queue is not None
        return self._pending.popleft() if self._pending else await self._queue.get()

    def _take(self, key: Hashable) -> tuple[Any, asyncio.Future[Any]] | None:
        """The next queued item with this key, without waiting; others are set aside in order."""
        assert self._queue is not None
        for i, (k, item, fut) in enumerate(self._pending):
            if k == key:
                del self._pending[i]
                return item, fut
        while not self._queue.empty():
            k, item, fut = self._queue.get_nowait()
            if k == key:
                return item, fut
            self._pending.append((k, item, fut))
        return None

    async def _fill(self, key: Hashable, batch: list[tuple[Any, asyncio.Future[Any]]]) -> None:
        assert self._queue is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.max_wait_s
        while len(batch) < self.max_batch_size:
            nxt = self._take(key)
            if nxt is not None:
                batch.append(nxt)
                continue
            remaining = deadline - loop.time()
            if remaining <= 0 or self.fill == "idle" or (self.fill == "sessions" and self.sessions <= len(batch)):
                return  # nobody else could join in time
            try:
                k, item, fut = await asyncio.wait_for(self._queue.get(), remaining)
            except TimeoutError:
                return
            if k == key:
                batch.append((item, fut))
            else:
                self._pending.append((k, item, fut))

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            key, item, fut = await self._next()
            # health: from its first item on, a batch is work under way (filling one waits for the decisions in
            # flight upstream), so a probe queued behind it finds the stage busy, not stuck (services/common/health.py)
            with working(self.stage):
                await self._batch(loop, key, [(item, fut)])

    async def _batch(
        self, loop: asyncio.AbstractEventLoop, key: Hashable, batch: list[tuple[Any, asyncio.Future[Any]]]
    ) -> None:
        await self._fill(key, batch)
        batch = [(i, f) for i, f in batch if not f.done()]  # callers that gave up are skipped
        QUEUE_DEPTH.set(self._depth(), stage=self.stage)
        if not batch:
            return
        BATCH_SIZE.observe(len(batch), stage=self.stage)
        self._ran(len(batch))
        futures = [f for _, f in batch]
        try:
            results: Sequence[Any] = await loop.run_in_executor(
                self._executor, self.fn, key, [i for i, _ in batch], functools.partial(_all_done, futures)
            )
            if len(results) != len(batch):
                raise RuntimeError(f"batch of {len(batch)} returned {len(results)} results")
        except Exception as e:  # the whole call failed: every caller hears why
            log.warning("%s batch of %d failed: %s", self.stage, len(batch), e)
            results = [e] * len(batch)
        for f, r in zip(futures, results, strict=True):
            if f.done():
                continue
            if isinstance(r, BaseException):
                f.set_exception(r)
            else:
                f.set_result(r)

    async def close(self) -> None:
        self._closed = True
        if self._worker is not None and not self._worker.done():
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError, RuntimeError):
                await self._worker
        waiting = list(self._pending)
        while self._queue is not None and not self._queue.empty():
            waiting.append(self._queue.get_nowait())
        for _, _, fut in waiting:
            if not fut.done():
                fut.set_exception(Unavailable(f"{self.stage}: shutting down"))
        self._pending.clear()
        self._executor.shutdown(wait=False, cancel_futures=True)
