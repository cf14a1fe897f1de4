"""gRPC face of the Knowledge Guide: proto <-> domain conversion, one core call per RPC."""

from __future__ import annotations

import asyncio

import grpc

from echo.v1 import knowledge_pb2, knowledge_pb2_grpc
from services.common.enums import KNOWLEDGE_MODE_ENUM, QUESTION_TYPE_ENUM, to_name
from services.common.errors import InvalidArgument, grpc_errors
from services.knowledge.core import ContextRequest, ContextResult, KnowledgeGuide
from services.knowledge.entries import DEFECT_FIELDS, DefectFields, Entry, EntryFields

DEGRADED_METADATA_KEY = "echo-degraded"  # trailing metadata: why this stage served in a reduced way


def entry_to_proto(entry: Entry) -> knowledge_pb2.KnowledgeEntry:
    return knowledge_pb2.KnowledgeEntry(
        dataset=entry.dataset,
        category=entry.category,
        display_name=entry.display_name,
        normal=entry.normal,
        version=entry.version,
        id=entry.id,
        defects=[
            knowledge_pb2.DefectKnowledge(
                name=d.name, display_name=d.display_name, **{f: d.field(f) for f in DEFECT_FIELDS}
            )
            for d in entry.defects
        ],
    )


def fields_from_proto(msg: knowledge_pb2.KnowledgeEntry) -> EntryFields:
    """A proto entry as the caller's fields (the core validates them)."""
    return EntryFields(
        dataset=msg.dataset,
        category=msg.category,
        display_name=msg.display_name,
        normal=msg.normal,
        defects=tuple(
            DefectFields(d.name, d.display_name, {f: getattr(d, f) for f in DEFECT_FIELDS}) for d in msg.defects
        ),
    )


def result_to_proto(res: ContextResult) -> knowledge_pb2.GetContextResponse:
    return knowledge_pb2.GetContextResponse(
        text=res.text,
        entry_ids=list(res.entry_ids),
        passages=[knowledge_pb2.Passage(id=p.id, text=p.text, score=p.score) for p in res.passages],
        version=res.version,
        compute_ms=res.compute_ms,
        model_id=res.model_id,
        refined=res.refined,
    )


class KnowledgeServicer(knowledge_pb2_grpc.KnowledgeServicer):
    """Serves GetContext, PutEntry and ListEntries from a KnowledgeGuide."""

    def __init__(self, guide: KnowledgeGuide) -> None:
        self.guide = guide

    def _mark_degraded(self, context: grpc.aio.ServicerContext, extra: tuple[str, ...] = ()) -> None:
        reasons = [*self.guide.degraded(), *(f"knowledge: {r}" for r in extra)]
        if reasons:
            context.set_trailing_metadata(((DEGRADED_METADATA_KEY, "; ".join(reasons)),))

    @grpc_errors
    async def GetContext(
        self, request: knowledge_pb2.GetContextRequest, context: grpc.aio.ServicerContext
    ) -> knowledge_pb2.GetContextResponse:
        req = ContextRequest(
            dataset=request.dataset,
            category=request.category,
            question=request.question.text,
            options=dict(sorted(request.question.options.items())),
            question_type=to_name(QUESTION_TYPE_ENUM, request.question.type, "question.type"),
            mode=to_name(KNOWLEDGE_MODE_ENUM, request.mode, "mode"),
            token_budget=request.token_budget,
            refine=request.refine,
        )
        result = await self.guide.get_context(req)
        self._mark_degraded(context, result.degraded)
        return result_to_proto(result)

    @grpc_errors
    async def PutEntry(
        self, request: knowledge_pb2.PutEntryRequest, context: grpc.aio.ServicerContext
    ) -> knowledge_pb2.PutEntryResponse:
        if not request.HasField("entry"):
            raise InvalidArgument("is required", field="entry")
        stored = await asyncio.to_thread(self.guide.put_fields, fields_from_proto(request.entry))
        return knowledge_pb2.PutEntryResponse(id=stored.id, version=stored.version)

    @grpc_errors
    async def ListEntries(
        self, request: knowledge_pb2.ListEntriesRequest, context: grpc.aio.ServicerContext
    ) -> knowledge_pb2.ListEntriesResponse:
        self._mark_degraded(context)
        entries = await asyncio.to_thread(self.guide.list_entries, request.dataset)
        return knowledge_pb2.ListEntriesResponse(entries=[entry_to_proto(e) for e in entries])

    async def check_health(self) -> None:
        """A tiny real CSK request; a degraded store (Redis down, files served) still passes."""
        await self.guide.check()

    def degraded(self) -> list[str]:
        return self.guide.degraded()

    async def close(self) -> None:
        """Release the store and the refiner's channel."""
        self.guide.close()
        close = getattr(self.guide.refiner, "close", None)
        if close is not None:
            await close()
