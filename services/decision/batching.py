"""An asyncio micro-batcher: concurrent requests share one model call.

Items with the same key (e.g. "constrained answer" or "generate up to 128
tokens") are grouped, up to max_batch_size. The worker waits up to max_wait_ms
for more only while open sessions (decisions in flight) have nothing queued, so
a lone request never waits and a burst of concurrent ones shares a call. The
model call runs off the event loop on one dedicated thread, one batch at a
time (one thread also means one OpenMP pool: torch calls from rotating pool
threads each spin up their own and fight over the cores); what arrives
meanwhile forms the next batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections import deque
from collections.abc import AsyncIterator, Callable, Hashable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Generic, TypeVar

from services.common.telemetry import BATCH_SIZE, QUEUE_DEPTH

log = logging.getLogger(__name__)
T = TypeVar("T")
R = TypeVar("R")

RunBatch = Callable[[Hashable, list[Any], Callable[[], bool]], Sequence[Any]]


def _all_done(futures: list[asyncio.Future[Any]]) -> bool:
    return all(f.done() for f in futures)


class MicroBatcher(Generic[T, R]):
    """Groups submitted items by key and runs each group with `run(key, items, abandoned) -> results`.

    `run` is blocking (it runs in a worker thread) and returns one result per
    item, in order; a result that is an exception is raised to that item's
    caller alone. `abandoned()` turns true once every caller of the batch has
    given up (deadline, cancellation), so a long generation can stop early.
    """

    def __init__(self, run: RunBatch, *, max_batch_size: int = 8, max_wait_ms: float = 10.0, stage: str = "decision"):
        self.run = run
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_ms / 1000
        self.stage = stage
        self.sessions = 0
        self.batches: list[int] = []  # sizes of the batches run so far (tests and benchmarks read it)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: asyncio.Queue[tuple[Hashable, T, asyncio.Future[R]]] | None = None
        self._pending: deque[tuple[Hashable, T, asyncio.Future[R]]] = deque()
        self._worker: asyncio.Task[None] | None = None
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"{stage}-model")

    @contextlib.asynccontextmanager
    async def session(self) -> AsyncIterator[None]:
        self.sessions += 1
        try:
            yield
        finally:
            self.sessions -= 1

    async def submit(self, key: Hashable, item: T) -> R:
        loop = asyncio.get_running_loop()
        if self._loop is not loop or self._worker is None or self._worker.done():
            self._start(loop)
        assert self._queue is not None
        fut: asyncio.Future[R] = loop.create_future()
        await self._queue.put((key, item, fut))
        QUEUE_DEPTH.labels(self.stage).set(self._depth())
        return await fut

    def _start(self, loop: asyncio.AbstractEventLoop) -> None:
        # A new event loop (tests run one per test) gets its own queue and worker.
        self._loop = loop
        self._queue = asyncio.Queue()
        self._pending.clear()
        self._worker = loop.create_task(self._work(), name=f"{self.stage}-batcher")

    def _depth(self) -> int:
        return (self._queue.qsize() if self._queue else 0) + len(self._pending)

    async def _next(self) -> tuple[Hashable, T, asyncio.Future[R]]:
        assert self._queue is not None
        return self._pending.popleft() if self._pending else await self._queue.get()

    def _take(self, key: Hashable) -> tuple[T, asyncio.Future[R]] | None:
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

    async def _fill(self, key: Hashable, batch: list[tuple[T, asyncio.Future[R]]]) -> None:
        assert self._queue is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.max_wait_s
        while len(batch) < self.max_batch_size:
            nxt = self._take(key)
            if nxt is not None:
                batch.append(nxt)
                continue
            remaining = deadline - loop.time()
            if self.sessions <= len(batch) or remaining <= 0:
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
        while True:
            key, item, fut = await self._next()
            batch = [(item, fut)]
            await self._fill(key, batch)
            batch = [(i, f) for i, f in batch if not f.done()]  # callers that gave up (deadline) are skipped
            QUEUE_DEPTH.labels(self.stage).set(self._depth())
            if not batch:
                continue
            BATCH_SIZE.labels(self.stage).observe(len(batch))
            self.batches.append(len(batch))
            try:
                futures = [f for _, f in batch]
                results = await asyncio.get_running_loop().run_in_executor(
                    self._thread, self.run, key, [i for i, _ in batch], functools.partial(_all_done, futures)
                )
                if len(results) != len(batch):
                    raise RuntimeError(f"batch of {len(batch)} returned {len(results)} results")
            except Exception as e:  # the whole call failed: every caller hears why
                log.warning("%s batch of %d failed: %s", self.stage, len(batch), e)
                results = [e] * len(batch)
            for (_, f), r in zip(batch, results, strict=True):
                if f.done():
                    continue
                if isinstance(r, BaseException):
                    f.set_exception(r)
                else:
                    f.set_result(r)

    async def close(self) -> None:
        if self._worker is not None and not self._worker.done():
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError, RuntimeError):
                await self._worker
        self._worker = None
        self._thread.shutdown(wait=False, cancel_futures=True)
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"{self.stage}-model")
