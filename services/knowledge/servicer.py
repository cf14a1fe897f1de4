"""gRPC face of the Knowledge Guide: proto <-> domain conversion, input validation, one core call per RPC."""

from __future__ import annotations

import asyncio

import grpc

from echo.v1 import common_pb2, knowledge_pb2, knowledge_pb2_grpc
from services.common.errors import InvalidArgument, grpc_errors
from services.knowledge.core import ContextRequest, ContextResult, KnowledgeGuide
from services.knowledge.entries import DEFECT_FIELDS, Entry, SchemaError, canonical_dataset, humanize, parse_entry

MODE_OF = {
    common_pb2.KNOWLEDGE_MODE_UNSPECIFIED: "",
    common_pb2.KNOWLEDGE_NONE: "none",
    common_pb2.DOMAIN_KNOWLEDGE: "dk",
    common_pb2.CONTEXT_SPECIFIC: "csk",
}
QUESTION_TYPE_OF = {
    common_pb2.QUESTION_TYPE_UNSPECIFIED: "",
    common_pb2.ANOMALY_DETECTION: "Anomaly Detection",
    common_pb2.DEFECT_CLASSIFICATION: "Defect Classification",
    common_pb2.DEFECT_LOCALIZATION: "Defect Localization",
    common_pb2.DEFECT_DESCRIPTION: "Defect Description",
    common_pb2.DEFECT_ANALYSIS: "Defect Analysis",
    common_pb2.OBJECT_CLASSIFICATION: "Object Classification",
    common_pb2.OBJECT_ANALYSIS: "Object Analysis",
}
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


def entry_from_proto(msg: knowledge_pb2.KnowledgeEntry, existing: Entry | None = None) -> Entry:
    """Validate a proto entry against the schema; InvalidArgument names the field (e.g. entry.defects[1].cause)."""
    old_names = {d.name: d.display_name for d in existing.defects} if existing else {}
    defects: dict[str, dict[str, str]] = {}
    for i, d in enumerate(msg.defects):
        if not d.name.strip():
            raise InvalidArgument("is empty", field=f"entry.defects[{i}].name")
        if d.name in defects:
            raise InvalidArgument(f"defect type {d.name!r} appears twice", field=f"entry.defects[{i}].name")
        # A missing display name keeps the stored one, or is derived from the snake_case name.
        defects[d.name] = {
            "display_name": d.display_name or old_names.get(d.name) or humanize(d.name),
            **{f: getattr(d, f) for f in DEFECT_FIELDS},
        }
    data = {
        "dataset": msg.dataset,
        "category": msg.category,
        "display_name": msg.display_name or (existing.display_name if existing else humanize(msg.category)),
        "normal": msg.normal,
        "defects": defects,
    }
    try:
        return parse_entry(data)
    except SchemaError as e:
        field = e.field
        if field.startswith("defects."):  # report the proto's list index, not our mapping key
            name, _, rest = field.removeprefix("defects.").partition(".")
            index = list(defects).index(name) if name in defects else 0
            field = f"defects[{index}]" + (f".{rest}" if rest else "")
        raise InvalidArgument(e.problem, field=f"entry.{field}") from None


def result_to_proto(res: ContextResult) -> knowledge_pb2.GetContextResponse:
    return knowledge_pb2.GetContextResponse(
        text=res.text,
        entry_ids=list(res.entry_ids),
        passages=[knowledge_pb2.Passage(id=p.id, text=p.text, score=p.score) for p in res.passages],
        version=res.version,
        compute_ms=res.compute_ms,
        model_id=res.model_id,
    )


class KnowledgeServicer(knowledge_pb2_grpc.KnowledgeServicer):
    """Serves GetContext, PutEntry and ListEntries from a KnowledgeGuide.

    Args:
        guide: the core.
        max_token_budget: the largest token_budget a request may ask for.
    """

    def __init__(self, guide: KnowledgeGuide, max_token_budget: int = 4096) -> None:
        self.guide = guide
        self.max_token_budget = max_token_budget

    def _mark_degraded(self, context: grpc.aio.ServicerContext) -> None:
        reasons = self.guide.degraded()
        if reasons:
            context.set_trailing_metadata(((DEGRADED_METADATA_KEY, "; ".join(reasons)),))

    @grpc_errors
    async def GetContext(
        self, request: knowledge_pb2.GetContextRequest, context: grpc.aio.ServicerContext
    ) -> knowledge_pb2.GetContextResponse:
        if request.mode not in MODE_OF:
            raise InvalidArgument(f"unknown knowledge mode {request.mode}", field="mode")
        if request.question.type not in QUESTION_TYPE_OF:
            raise InvalidArgument(f"unknown question type {request.question.type}", field="question.type")
        if not 0 <= request.token_budget <= self.max_token_budget:
            raise InvalidArgument(f"must be between 0 and {self.max_token_budget}", field="token_budget")
        for letter, text in request.question.options.items():
            if not letter.strip():
                raise InvalidArgument("an option has an empty letter", field="question.options")
            if not text.strip():
                raise InvalidArgument("is empty", field=f"question.options[{letter}]")
        req = ContextRequest(
            dataset=request.dataset,
            category=request.category,
            question=request.question.text,
            options=dict(sorted(request.question.options.items())),
            question_type=QUESTION_TYPE_OF[request.question.type],
            mode=MODE_OF[request.mode],
            token_budget=request.token_budget,
            refine=request.refine,
        )
        result = await self.guide.get_context(req)
        self._mark_degraded(context)
        return result_to_proto(result)

    @grpc_errors
    async def PutEntry(
        self, request: knowledge_pb2.PutEntryRequest, context: grpc.aio.ServicerContext
    ) -> knowledge_pb2.PutEntryResponse:
        if not request.HasField("entry"):
            raise InvalidArgument("is required", field="entry")
        msg = request.entry
        existing = self.guide.store.get(f"{canonical_dataset(msg.dataset)}/{msg.category}")
        entry = entry_from_proto(msg, existing)
        stored = await asyncio.to_thread(self.guide.put_entry, entry)
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
