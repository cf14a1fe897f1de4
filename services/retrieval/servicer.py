"""gRPC face of the retrieval stage: proto <-> Memory, one call per RPC, run off the event loop (checks: the core).

Memory calls run on the stage's own threads: on the event loop's shared default pool, a
search waited behind other stages' slow work (knowledge extraction, audit fsyncs) in
embedded mode, which at 16 clients made a 1 ms search take 200 ms.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import grpc
import numpy as np

from echo.v1 import common_pb2, retrieval_pb2, retrieval_pb2_grpc
from services.common.enums import REFERENCE_MODE_ENUM, to_name
from services.common.errors import grpc_errors
from services.common.images import content_id
from services.retrieval.core import Memory
from services.retrieval.store import Hit, MemoryFilter, MemoryPoint

T = TypeVar("T")


def _timed_call(fn: Callable[[], T]) -> tuple[T, float]:
    start = time.perf_counter()
    out = fn()
    return out, (time.perf_counter() - start) * 1000.0


def _reference(hit: Hit) -> common_pb2.Reference:
    """A hit as callers see it: its content id, never where the image store keeps the file (issue 25)."""
    p = hit.point
    return common_pb2.Reference(
        id=p.id, score=hit.score, uri=content_id(p.sha256), category=p.category, sha256=p.sha256
    )


def _point_pb(p: MemoryPoint) -> retrieval_pb2.MemoryPoint:
    return retrieval_pb2.MemoryPoint(
        id=p.id,
        uri=content_id(p.sha256),
        sha256=p.sha256,
        label=p.label,
        line_id=p.line_id,
        dataset=p.dataset,
        category=p.category,
    )


class RetrievalServicer(retrieval_pb2_grpc.RetrievalServicer):
    def __init__(self, memory: Memory, threads: int = 2) -> None:
        self.memory = memory
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="retrieval")

    async def _timed(self, fn: Callable[[], T]) -> tuple[T, float]:
        """Run blocking memory work on the stage's threads; its result and its own milliseconds (compute_ms)."""
        return await asyncio.get_running_loop().run_in_executor(self._pool, _timed_call, fn)

    @grpc_errors
    async def Upsert(
        self, request: retrieval_pb2.UpsertRequest, context: grpc.aio.ServicerContext
    ) -> retrieval_pb2.UpsertResponse:
        points = [
            MemoryPoint(
                p.id, np.asarray(p.vector, np.float32), p.uri, p.sha256, p.label, p.line_id, p.dataset, p.category
            )
            for p in request.points
        ]
        res, _ = await self._timed(lambda: self.memory.upsert(points))
        return retrieval_pb2.UpsertResponse(ids=res.ids, added=res.added, existing=res.existing)

    @grpc_errors
    async def Search(
        self, request: retrieval_pb2.SearchRequest, context: grpc.aio.ServicerContext
    ) -> retrieval_pb2.SearchResponse:
        r = request
        mode = to_name(REFERENCE_MODE_ENUM, r.mode, "mode")
        hits, ms = await self._timed(
            lambda: self.memory.references(
                mode,
                r.vector,
                k=r.k,
                seed=r.seed,
                line_id=r.line_id,
                dataset=r.dataset,
                category=r.category,
                exclude_sha256=r.exclude_sha256,
            )
        )
        return retrieval_pb2.SearchResponse(hits=[_reference(h) for h in hits], compute_ms=ms)

    @grpc_errors
    async def Delete(
        self, request: retrieval_pb2.DeleteRequest, context: grpc.aio.ServicerContext
    ) -> retrieval_pb2.DeleteResponse:
        n, _ = await self._timed(
            lambda: self.memory.delete(request.line_id, request.dataset, request.category, list(request.ids))
        )
        return retrieval_pb2.DeleteResponse(deleted=n)

    @grpc_errors
    async def Stats(
        self, request: retrieval_pb2.StatsRequest, context: grpc.aio.ServicerContext
    ) -> retrieval_pb2.StatsResponse:
        r = request
        stats, _ = await self._timed(lambda: self.memory.stats(r.line_id, r.dataset, r.category, r.sha256))
        points: list[MemoryPoint] = []
        next_token = ""
        if r.list_limit:
            (points, next_token), _ = await self._timed(
                lambda: self.memory.list_points(r.line_id, r.dataset, r.category, r.list_limit, r.page_token, r.sha256)
            )
        return retrieval_pb2.StatsResponse(
            total=stats.total,
            counts=[
                retrieval_pb2.CategoryCount(line_id=c.line_id, dataset=c.dataset, category=c.category, count=c.count)
                for c in stats.counts
            ],
            dim=stats.dim,
            engine=stats.engine,
            points=[_point_pb(p) for p in points],
            next_page_token=next_token,
        )

    @grpc_errors
    async def InferCategory(
        self, request: retrieval_pb2.InferCategoryRequest, context: grpc.aio.ServicerContext
    ) -> retrieval_pb2.InferCategoryResponse:
        r = request
        texts = {name: list(v.values) for name, v in r.category_text_vectors.items()}
        guess, ms = await self._timed(lambda: self.memory.infer_category(r.vector, r.line_id, r.dataset, texts, r.k))
        return retrieval_pb2.InferCategoryResponse(
            category=guess.category,
            dataset=guess.dataset,
            confidence=guess.confidence,
            scores=guess.scores,
            compute_ms=ms,
        )

    def close(self) -> None:
        """Flush and unlock the store (Qdrant Edge holds its folder's write-ahead log)."""
        self._pool.shutdown(wait=True, cancel_futures=True)
        self.memory.close()

    async def check_health(self) -> None:
        """A real nearest-neighbour query against the index (an empty memory is healthy; a broken store is not)."""
        probe = np.zeros(self.memory.dim, np.float32)
        probe[0] = 1.0
        await self._timed(lambda: self.memory.store.search(probe, MemoryFilter(), 1))
