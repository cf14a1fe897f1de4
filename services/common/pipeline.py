"""A two-step batch pipeline: batch N+1 is prepared (decoded, resized) while the model runs batch N.

Images reach a model in two steps of similar cost on a GPU (nvjpeg decode and resize,
then the forward pass); run one after the other, each waits for the other, which is
what held the embedding stage to 0.38x its raw forward on an H200 (issue 16). Here the
steps run on two threads joined by a bounded queue:

    callers --batcher--> prepare (the batcher's thread) --queue(depth)--> run (the model thread)

- Batching is the injected Batcher's (services/common/batching.py): the asyncio
  MicroBatcher, or Ray Serve's `@serve.batch` in a replica. Its batch function is
  `prepare`, which hands the prepared batch to the model thread and returns at once,
  so the batcher forms the next batch while the model runs this one.
- Back-pressure: at most `depth` prepared batches wait for the model; when they are
  there, the prepare thread waits, the batcher takes no new batch, and callers' items
  queue (and batch together) in the batcher. Memory on the device stays bounded.
- Ordering: the model runs batches in the order they were prepared; each item's
  result reaches its own caller, so a request gets its results in its own order.
- Per-item errors: an item that cannot be prepared fails only its caller, with the
  error `prepare` gave for it; a failed model call fails the items of that batch.
- Devices: `prepare` and `run` are the stage's own functions; on CUDA they use one
  stream each (services/common/devices.py), so the overlap is also on the GPU. The
  structure is the same on the CPU, where tests exercise it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import queue
import threading
import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from services.common.batching import Batcher, BatcherFactory, Fill
from services.common.errors import Unavailable
from services.common.health import working

log = logging.getLogger(__name__)
R = TypeVar("R")
P = TypeVar("P")


@dataclass
class Prepared(Generic[P]):
    """What `prepare` gives for one batch: the model's input for the items that passed, and the others' errors.

    `payload` holds the good items in their batch order; `errors[i]` is the error of the batch's i-th item,
    or None when it is in the payload.
    """

    payload: P
    errors: list[BaseException | None]
    prepare_ms: float = 0.0


@dataclass
class StageTimes:
    """Milliseconds spent in each step, summed over batches (benchmarks read it to show the overlap)."""

    prepare_ms: float = 0.0
    run_ms: float = 0.0
    batches: int = 0
    items: int = 0
    first_start: float | None = None
    last_end: float = 0.0

    def wall_ms(self) -> float:
        return 0.0 if self.first_start is None else (self.last_end - self.first_start) * 1000.0


@dataclass
class Done(Generic[R]):
    """One item's result and the milliseconds of the steps of the batch it rode in."""

    value: R
    prepare_ms: float
    run_ms: float


_STOP = object()


class Pipeline:
    """Prepare on the batcher's thread, run on the model thread, at most `depth` prepared batches in between.

    Args:
        prepare: items of one batch -> Prepared (blocking; on the batcher's thread).
        run: a Prepared's payload -> one result (or exception) per good item, in order (blocking; model thread).
        batcher_factory: how items are batched (MicroBatcher, or ServeBatcher in a Ray Serve replica).
        max_batch_size / max_wait_ms / fill: the batcher's (see services/common/batching.py).
        depth: prepared batches that may wait for the model (1 or 2 is enough to keep it busy).
        stage: label of the batch metrics; the batcher's thread prepares, `<stage>-model` runs the model.
    """

    def __init__(
        self,
        prepare: Callable[[list[Any]], Prepared[Any]],
        run: Callable[[Any], Sequence[Any]],
        *,
        batcher_factory: BatcherFactory,
        max_batch_size: int,
        max_wait_ms: float,
        stage: str,
        depth: int = 2,
        fill: Fill = "idle",
    ) -> None:
        self.prepare = prepare
        self.run = run
        self.stage = stage
        self.times = StageTimes()
        self._handoff: queue.Queue[Any] = queue.Queue(maxsize=max(1, depth))
        self._closed = False
        self._model = threading.Thread(target=self._model_loop, name=f"{stage}-model", daemon=True)
        self._model.start()
        self.batcher: Batcher = batcher_factory(
            self._prepare_batch,
            max_batch_size=max_batch_size,
            max_wait_ms=max_wait_ms,
            stage=stage,
            fill=fill,
        )

    @property
    def batches(self) -> list[int]:
        """Sizes of the batches prepared (each one also runs as one model call)."""
        return self.batcher.batches

    # ---- the caller's side ------------------------------------------------------------------------------------
    async def submit_many(self, items: Sequence[Any], key: Hashable = None) -> list[Done[Any]]:
        """Each item's result, in order; the first failed item's error is raised (the others are still run)."""
        if self._closed:
            raise Unavailable(f"{self.stage}: pipeline is closed")
        pending = await self.batcher.submit_many(items, key)  # raises the first item prepare refused
        return list(await asyncio.gather(*(asyncio.wrap_future(f) for f in pending)))

    async def run_exclusive(self, fn: Callable[..., R], *args: Any) -> R:
        """Another model call (e.g. the text tower) on the model thread, between two batches."""
        if self._closed:
            raise Unavailable(f"{self.stage}: pipeline is closed")
        fut: concurrent.futures.Future[R] = concurrent.futures.Future()
        await asyncio.to_thread(self._handoff.put, (fn, args, fut))  # waits, off the loop, when the queue is full
        return await asyncio.wrap_future(fut)

    async def close(self) -> None:
        """Stop: queued callers get UNAVAILABLE; the batch under way finishes."""
        self._closed = True
        await self.batcher.close()
        await asyncio.to_thread(self._handoff.put, _STOP)
        await asyncio.to_thread(self._model.join, 30)

    # ---- the prepare step (on the batcher's thread) --------------------------------------------------------------
    def _prepare_batch(self, _key: Hashable, items: list[Any], _abandoned: Callable[[], bool]) -> list[Any]:
        """Prepare a batch, queue it for the model (waiting while `depth` batches are queued), return at once.

        Returns, per item, a future of its result, or the error that kept it out of the batch.
        """
        start = time.perf_counter()
        if self.times.first_start is None:
            self.times.first_start = start
        prepared = self.prepare(items)
        prepared.prepare_ms = (time.perf_counter() - start) * 1000.0
        if len(prepared.errors) != len(items):
            raise RuntimeError(f"prepare gave {len(prepared.errors)} outcomes for {len(items)} items")
        self.times.prepare_ms += prepared.prepare_ms
        futures: list[concurrent.futures.Future[Any]] = [
            concurrent.futures.Future() for e in prepared.errors if e is None
        ]
        if futures:
            if self._closed:
                raise Unavailable(f"{self.stage}: pipeline is closed")
            self._handoff.put((prepared, futures))  # back-pressure: blocks while the model is `depth` batches behind
        it = iter(futures)
        return [e if e is not None else next(it) for e in prepared.errors]

    # ---- the run step (on the model thread) ------------------------------------------------------------------
    def _model_loop(self) -> None:
        while True:
            job = self._handoff.get()
            if job is _STOP:
                return
            if len(job) == 3:  # run_exclusive
                fn, args, fut = job
                _settle(fut, fn, *args)
                continue
            prepared, futures = job
            start = time.perf_counter()
            try:
                with working(self.stage):  # health: busy, not stuck, whether or not the callers still wait
                    results = list(self.run(prepared.payload))
                if len(results) != len(futures):
                    raise RuntimeError(f"run gave {len(results)} results for a batch of {len(futures)}")
            except Exception as e:  # the whole call failed: every item of the batch hears why
                log.warning("%s: a model call on %d items failed: %s", self.stage, len(futures), e)
                results = [e] * len(futures)
            end = time.perf_counter()
            run_ms = (end - start) * 1000.0
            t = self.times
            t.run_ms += run_ms
            t.batches += 1
            t.items += len(futures)
            t.last_end = end
            for fut, r in zip(futures, results, strict=True):
                _deliver(fut, r if isinstance(r, BaseException) else Done(r, prepared.prepare_ms, run_ms))


def _deliver(fut: concurrent.futures.Future[Any], outcome: Any) -> None:
    """Settle a future with a result or an exception, unless its caller gave up (deadline) and cancelled it."""
    try:
        if isinstance(outcome, BaseException):
            fut.set_exception(outcome)
        else:
            fut.set_result(outcome)
    except concurrent.futures.InvalidStateError:
        pass  # cancelled by a caller who left


def _settle(fut: concurrent.futures.Future[Any], fn: Callable[..., Any], *args: Any) -> None:
    try:
        outcome = fn(*args)
    except Exception as e:
        outcome = e
    _deliver(fut, outcome)
