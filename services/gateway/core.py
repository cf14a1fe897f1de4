"""The Inspector: validate, plan, fan out to the experts, decide, and trace it all.

Embedding then retrieval run in sequence (the search needs the vector); the
knowledge lookup runs beside them when the category is known, after category
inference when it is not. Optional experts that fail are dropped and the trace
says "degraded"; the decision stage is required.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import grpc

from echo.v1 import (
    common_pb2,
    decision_pb2,
    embedding_pb2,
    inspector_pb2,
    knowledge_pb2,
    retrieval_pb2,
)
from services.common.errors import FailedPrecondition, InvalidArgument, ResourceExhausted
from services.common.images import ImageLimits, ImageStore, check_header, image_bytes, sha256_hex
from services.gateway.clients import Deadline, StageCallError, StageClients
from services.gateway.config import GatewaySettings
from services.gateway.planner import Plan, QuestionTypeClassifier, TypeGuess, plan_experts
from services.gateway.validation import check_name, check_question, check_settings
from services.mmad.types import QUESTION_TYPES

T = TypeVar("T")

_TYPE_ENUM_TO_NAME = {i + 1: name for i, name in enumerate(QUESTION_TYPES)}
_TYPE_NAME_TO_ENUM = {name: i for i, name in _TYPE_ENUM_TO_NAME.items()}
_REFERENCE_MODES = {
    "0-shot": common_pb2.ZERO_SHOT,
    "1-shot": common_pb2.ONE_SHOT_RANDOM,
    "1-shot*": common_pb2.ONE_SHOT_SIMILAR,
    "k-shot": common_pb2.K_SHOT,
}
# Optional experts whose failure with these codes is the caller's problem, not a degradation.
_FATAL_REFERENCE_CODES = {grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.INVALID_ARGUMENT}
_CATEGORY_CACHE_S = 30.0
_EMBED_CHUNK = 32


def type_name(enum_value: int) -> str:
    return _TYPE_ENUM_TO_NAME[enum_value]


def type_enum(name: str) -> int:
    return _TYPE_NAME_TO_ENUM[name]


@dataclass
class _Run:
    """Mutable state of one inspection, turned into the trace at the end."""

    trace: common_pb2.Trace = field(default_factory=common_pb2.Trace)

    async def timed(self, stage: str, aw: Awaitable[T]) -> T:
        start = time.perf_counter()
        try:
            return await aw
        finally:
            self.trace.timings.add(stage=stage, ms=(time.perf_counter() - start) * 1000.0)

    def set_compute(self, stage: str, compute_ms: float) -> None:
        for t in self.trace.timings:
            if t.stage == stage:
                t.compute_ms = compute_ms

    def degrade(self, expert: str, err: StageCallError) -> None:
        self.trace.degraded.append(f"{expert}: {err.message}")


class Inspector:
    """Plans and runs one inspection over the stage clients; also the memory-management RPCs."""

    def __init__(
        self,
        clients: StageClients,
        classifier: QuestionTypeClassifier,
        settings: GatewaySettings,
        image_store: ImageStore,
        limits: ImageLimits = ImageLimits(),
    ) -> None:
        self.clients = clients
        self.classifier = classifier
        self.settings = settings
        self.image_store = image_store
        self.limits = limits
        self._in_flight = 0
        self._category_vectors: dict[tuple[str, str], tuple[float, dict[str, Any]]] = {}

    # ------------------------------------------------------------------ inspect
    async def inspect(
        self, req: inspector_pb2.InspectRequest, grpc_time_remaining: float | None = None
    ) -> inspector_pb2.InspectResponse:
        if self._in_flight >= self.settings.max_concurrent:
            raise ResourceExhausted(
                f"gateway: {self._in_flight} inspections in flight (max_concurrent={self.settings.max_concurrent}); "
                "retry with backoff"
            )
        self._in_flight += 1
        try:
            return await self._inspect(req, grpc_time_remaining)
        finally:
            self._in_flight -= 1

    def _deadline(self, req: inspector_pb2.InspectRequest, grpc_time_remaining: float | None) -> Deadline:
        candidates = [self.settings.default_deadline_ms] if not req.settings.deadline_ms else []
        if req.settings.deadline_ms:
            candidates.append(req.settings.deadline_ms)
        if grpc_time_remaining is not None:
            candidates.append(grpc_time_remaining * 1000.0)
        return Deadline.after_ms(min(candidates))

    async def _inspect(
        self, req: inspector_pb2.InspectRequest, grpc_time_remaining: float | None
    ) -> inspector_pb2.InspectResponse:
        started = time.perf_counter()
        deadline = self._deadline(req, grpc_time_remaining)
        run = _Run()
        trace = run.trace
        request_id = req.request_id or uuid.uuid4().hex

        # validate
        check_name(req.line_id, "line_id", required=True)
        check_name(req.dataset, "dataset", required=False)
        check_name(req.category, "category", required=False)
        check_question(req.question)
        check_settings(req.settings)
        data = (
            image_bytes(req.image, field="image")
            if req.image.data
            else await asyncio.to_thread(image_bytes, req.image, field="image")
        )
        check_header(data, self.limits, field="image")  # the stages that need pixels decode them once
        query_sha = sha256_hex(data)

        # plan
        s = req.settings
        if req.question.type:
            guess = TypeGuess(type_name(req.question.type), 1.0, "client")
        else:
            guess = await run.timed("plan", asyncio.to_thread(self.classifier.classify, req.question.text))
        switches = {
            name: (getattr(s.experts, name) if s.experts.HasField(name) else None)
            for name in ("reference", "knowledge", "reasoning")
        }
        plan = plan_experts(guess, self.settings.expert_map, switches)
        ref_mode = s.reference_mode or _REFERENCE_MODES[self.settings.default_reference_mode]
        knowledge_mode = s.knowledge_mode or common_pb2.CONTEXT_SPECIFIC
        use_reference = "reference" in plan.experts and ref_mode != common_pb2.ZERO_SHOT
        use_knowledge = "knowledge" in plan.experts and knowledge_mode != common_pb2.KNOWLEDGE_NONE
        trace.question_type = type_enum(guess.type)
        trace.type_confidence = guess.confidence
        trace.type_from_client = guess.method == "client"
        trace.reference_mode = ref_mode if use_reference else common_pb2.ZERO_SHOT
        trace.knowledge_mode = knowledge_mode if use_knowledge else common_pb2.KNOWLEDGE_NONE
        trace.answer_format = s.answer_format or common_pb2.MULTIPLE_CHOICE
        trace.dataset = req.dataset or self.settings.default_dataset
        trace.category = req.category

        # fan out
        references: list[common_pb2.Reference] = []
        knowledge_text = ""
        need_category = not req.category and (use_reference or use_knowledge)

        async def reference_branch() -> None:
            nonlocal references
            vector = await self._embed_query(run, data, deadline)
            if need_category:
                await self._infer_category(run, req.line_id, vector, deadline)
            if use_reference:
                references = await self._search(run, req, vector, ref_mode, query_sha, deadline)

        async def knowledge_branch() -> None:
            nonlocal knowledge_text
            knowledge_text = await self._knowledge(
                run, req.question, trace.dataset, trace.category, knowledge_mode, deadline
            )

        if need_category or use_reference:
            ref_task = asyncio.ensure_future(self._optional(run, "reference", reference_branch()))
            if use_knowledge and not need_category:
                await asyncio.gather(ref_task, self._optional(run, "knowledge", knowledge_branch()))
            else:
                await ref_task
                if use_knowledge and trace.category:
                    await self._optional(run, "knowledge", knowledge_branch())
                elif use_knowledge:
                    trace.degraded.append("knowledge: skipped, the category is unknown")
        elif use_knowledge:
            await self._optional(run, "knowledge", knowledge_branch())

        if use_reference and references:
            trace.experts_used.append("reference")
            trace.references.extend(references)
        if use_knowledge and knowledge_text:
            trace.experts_used.append("knowledge")
        use_reasoning = "reasoning" in plan.experts

        # decide (required)
        decide = decision_pb2.DecideRequest(
            request_id=request_id,
            query_image=common_pb2.Image(data=data),
            reference_images=[common_pb2.Image(uri=r.uri) for r in references],
            knowledge=knowledge_text,
            question=common_pb2.Question(
                text=req.question.text, options=req.question.options, type=trace.question_type
            ),
            reasoning=use_reasoning,
            answer_format=trace.answer_format,
            return_prompt=s.return_prompt,
            category=trace.category,
        )
        decided = await run.timed(
            "decision", self.clients["decision"].call("Decide", decide, deadline, idempotent=False)
        )
        run.set_compute("decision", decided.compute_ms)
        if use_reasoning:
            trace.experts_used.append("reasoning")
        trace.experts_used.append("decision")
        trace.model_ids["decision"] = decided.model_id
        trace.unparsed = decided.unparsed
        trace.raw_reply = decided.raw_reply
        trace.reasoning = decided.reasoning
        trace.prompt = decided.prompt
        trace.option_scores.update(decided.scores)
        if decided.preprocess_ms:
            trace.timings.add(stage="decision.preprocess", ms=decided.preprocess_ms, compute_ms=decided.preprocess_ms)
        trace.timings.add(stage="total", ms=(time.perf_counter() - started) * 1000.0)
        answer = decided.answer if decided.answer in req.question.options else ""
        return inspector_pb2.InspectResponse(
            request_id=request_id, answer=answer, answer_text=req.question.options.get(answer, ""), trace=trace
        )

    async def _optional(self, run: _Run, expert: str, aw: Awaitable[None]) -> None:
        """Run an optional expert; a stage outage degrades the answer, a caller error fails it."""
        try:
            await aw
        except StageCallError as e:
            if expert == "reference" and e.code in _FATAL_REFERENCE_CODES:
                raise
            run.degrade(expert, e)

    async def _embed_query(self, run: _Run, data: bytes, deadline: Deadline) -> list[float]:
        resp = await run.timed(
            "embedding",
            self.clients["embedding"].call(
                "EmbedImages", embedding_pb2.EmbedImagesRequest(images=[common_pb2.Image(data=data)]), deadline
            ),
        )
        run.set_compute("embedding", resp.compute_ms)
        run.trace.model_ids["embedding"] = resp.model_id
        return list(resp.embeddings[0].values)

    async def _infer_category(self, run: _Run, line_id: str, vector: list[float], deadline: Deadline) -> None:
        text_vectors = await self._category_text_vectors(line_id, run.trace.dataset, deadline)
        resp = await run.timed(
            "category",
            self.clients["retrieval"].call(
                "InferCategory",
                retrieval_pb2.InferCategoryRequest(
                    vector=vector, line_id=line_id, dataset=run.trace.dataset, category_text_vectors=text_vectors
                ),
                deadline,
            ),
        )
        run.set_compute("category", resp.compute_ms)
        run.trace.category = resp.category
        run.trace.category_confidence = resp.confidence
        run.trace.category_inferred = True
        if not run.trace.dataset:
            run.trace.dataset = resp.dataset

    async def _category_text_vectors(self, line_id: str, dataset: str, deadline: Deadline) -> dict[str, Any]:
        """Text embeddings of the line's category names, cached briefly (the set changes on onboarding)."""
        key = (line_id, dataset)
        cached = self._category_vectors.get(key)
        if cached and time.monotonic() - cached[0] < _CATEGORY_CACHE_S:
            return cached[1]
        stats = await self.clients["retrieval"].call(
            "Stats", retrieval_pb2.StatsRequest(line_id=line_id, dataset=dataset), deadline
        )
        names = sorted({c.category for c in stats.counts if c.count > 0})
        if not names:
            raise StageCallError(
                "retrieval", grpc.StatusCode.FAILED_PRECONDITION, f"line {line_id!r} has no normal images in memory"
            )
        texts = [f"a photo of a {n.replace('_', ' ')}" for n in names]
        emb = await self.clients["embedding"].call("EmbedTexts", embedding_pb2.EmbedTextsRequest(texts=texts), deadline)
        vectors = {n: common_pb2.Vector(values=e.values) for n, e in zip(names, emb.embeddings, strict=True)}
        self._category_vectors[key] = (time.monotonic(), vectors)
        return vectors

    async def _search(
        self,
        run: _Run,
        req: inspector_pb2.InspectRequest,
        vector: list[float],
        mode: int,
        query_sha: str,
        deadline: Deadline,
    ) -> list[common_pb2.Reference]:
        k = (req.settings.k_shots or self.settings.default_k_shots) if mode == common_pb2.K_SHOT else 1
        seed = req.settings.seed or int(query_sha[:8], 16)
        resp = await run.timed(
            "retrieval",
            self.clients["retrieval"].call(
                "Search",
                retrieval_pb2.SearchRequest(
                    vector=vector,
                    line_id=req.line_id,
                    dataset=run.trace.dataset,
                    category=run.trace.category,
                    k=k,
                    mode=mode,
                    seed=seed,
                    exclude_sha256=query_sha,
                ),
                deadline,
            ),
        )
        run.set_compute("retrieval", resp.compute_ms)
        return list(resp.hits)

    async def _knowledge(
        self, run: _Run, question: common_pb2.Question, dataset: str, category: str, mode: int, deadline: Deadline
    ) -> str:
        resp = await run.timed(
            "knowledge",
            self.clients["knowledge"].call(
                "GetContext",
                knowledge_pb2.GetContextRequest(dataset=dataset, category=category, question=question, mode=mode),
                deadline,
                degraded=run.trace.degraded,
            ),
        )
        run.set_compute("knowledge", resp.compute_ms)
        run.trace.knowledge_entry_ids.extend(resp.entry_ids)
        run.trace.knowledge_passage_ids.extend(p.id for p in resp.passages)
        if resp.model_id:
            run.trace.model_ids["knowledge"] = resp.model_id
        return resp.text

    # ------------------------------------------------------------------ memory
    async def add_normal_images(
        self, req: inspector_pb2.AddNormalImagesRequest, deadline: Deadline
    ) -> inspector_pb2.AddNormalImagesResponse:
        check_name(req.line_id, "line_id", required=True)
        check_name(req.dataset, "dataset", required=False)
        check_name(req.category, "category", required=True)
        if not req.images:
            raise InvalidArgument("is empty: send at least one normal image", field="images")
        blobs: list[bytes] = []
        for i, img in enumerate(req.images):
            data = await asyncio.to_thread(image_bytes, img, field=f"images[{i}]")
            check_header(
                data, self.limits, field=f"images[{i}]"
            )  # the embedding stage decodes before anything is stored
            blobs.append(data)
        points = []
        for start in range(0, len(blobs), _EMBED_CHUNK):
            chunk = blobs[start : start + _EMBED_CHUNK]
            emb = await self.clients["embedding"].call(
                "EmbedImages",
                embedding_pb2.EmbedImagesRequest(images=[common_pb2.Image(data=b) for b in chunk]),
                deadline,
            )
            for data, vec in zip(chunk, emb.embeddings, strict=True):
                uri = await asyncio.to_thread(self.image_store.put, data, _suffix(data))
                points.append(
                    retrieval_pb2.MemoryPoint(
                        vector=vec.values,
                        uri=uri,
                        sha256=sha256_hex(data),
                        label="good",
                        line_id=req.line_id,
                        dataset=req.dataset or self.settings.default_dataset,
                        category=req.category,
                    )
                )
        resp = await self.clients["retrieval"].call(
            "Upsert", retrieval_pb2.UpsertRequest(points=points), deadline, idempotent=True
        )
        self._category_vectors.pop((req.line_id, req.dataset or self.settings.default_dataset), None)
        self._category_vectors.pop((req.line_id, ""), None)
        return inspector_pb2.AddNormalImagesResponse(ids=resp.ids, added=resp.added, existing=resp.existing)

    async def list_normal_images(
        self, req: inspector_pb2.ListNormalImagesRequest, deadline: Deadline
    ) -> inspector_pb2.ListNormalImagesResponse:
        check_name(req.line_id, "line_id", required=True)
        check_name(req.dataset, "dataset", required=False)
        check_name(req.category, "category", required=False)
        if req.limit < 0:
            raise InvalidArgument(f"must be >= 0, got {req.limit}", field="limit")
        stats = await self.clients["retrieval"].call(
            "Stats",
            retrieval_pb2.StatsRequest(
                line_id=req.line_id,
                dataset=req.dataset,
                category=req.category,
                list_limit=req.limit or 100,
                page_token=req.page_token,
            ),
            deadline,
        )
        items = [
            inspector_pb2.MemoryItem(
                id=p.id,
                uri=p.uri,
                sha256=p.sha256,
                line_id=p.line_id,
                dataset=p.dataset,
                category=p.category,
                label=p.label,
            )
            for p in stats.points
        ]
        return inspector_pb2.ListNormalImagesResponse(
            items=items, total=stats.total, next_page_token=stats.next_page_token
        )

    async def delete_normal_images(
        self, req: inspector_pb2.DeleteNormalImagesRequest, deadline: Deadline
    ) -> inspector_pb2.DeleteNormalImagesResponse:
        check_name(req.line_id, "line_id", required=True)
        check_name(req.dataset, "dataset", required=False)
        if not req.ids:
            check_name(req.category, "category", required=True)  # never delete a whole line by accident
        resp = await self.clients["retrieval"].call(
            "Delete",
            retrieval_pb2.DeleteRequest(line_id=req.line_id, dataset=req.dataset, category=req.category, ids=req.ids),
            deadline,
            idempotent=True,
        )
        self._category_vectors.clear()
        return inspector_pb2.DeleteNormalImagesResponse(deleted=resp.deleted)

    async def check_memory(self, line_id: str, dataset: str, category: str, deadline: Deadline) -> int:
        stats = await self.clients["retrieval"].call(
            "Stats", retrieval_pb2.StatsRequest(line_id=line_id, dataset=dataset, category=category), deadline
        )
        if stats.total == 0:
            raise FailedPrecondition(f"line {line_id!r} has no normal images for category {category!r}")
        return stats.total


def _suffix(data: bytes) -> str:
    if data[:3] == b"\xff\xd8\xff":
        return ".jpg"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return ".png"
    return ".img"


__all__ = ["Inspector", "Plan", "type_enum", "type_name"]
