"""The Inspector gRPC servicer: proto <-> plain values, one call into the core per RPC.

The audit trail sits beside the core: an answered Inspect is handed to it (request and
response as sent) before the answer leaves, and the audit queries go to it directly.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

import grpc

from echo.v1 import common_pb2, inspector_pb2, inspector_pb2_grpc, knowledge_pb2
from services.audit.record import Kept
from services.common.auth import require_review_right, sees_internals
from services.common.enums import (
    ANSWER_FORMAT_ENUM,
    KNOWLEDGE_MODE_ENUM,
    QUESTION_TYPE_ENUM,
    REFERENCE_MODE_ENUM,
    to_enum,
    to_name,
)
from services.common.errors import FailedPrecondition, InvalidArgument, Unavailable, grpc_errors
from services.common.images import content_id, content_type_of, image_bytes, sha256_hex
from services.common.stage_client import STAGE_SERVICES, Deadline
from services.gateway.audit import AuditTrail
from services.gateway.clients import StageClients, evidence_to_proto
from services.gateway.core import EXPERTS, Inspector
from services.gateway.domain import Inspection, InspectionResult, LineSummary, Product, Trace
from services.gateway.review import Reviews
from services.gateway.validation import check_references
from services.knowledge.servicer import entry_to_proto


def _deadline(context: grpc.aio.ServicerContext, default_ms: float) -> Deadline:
    remaining = context.time_remaining()
    return Deadline.after_ms(default_ms if remaining is None else min(default_ms, remaining * 1000.0))


async def _image(inspector: Inspector, line_id: str, image: common_pb2.Image, field: str, deadline: Deadline) -> bytes:
    """Bytes as sent, or the stored image a content id names (only from this line's memory)."""
    if image.WhichOneof("source") == "uri":
        return await inspector.stored_image(line_id, image.uri, deadline, field)
    return image_bytes(image, field=field)


async def to_inspection(req: inspector_pb2.InspectRequest, inspector: Inspector) -> Inspection:
    """An InspectRequest as plain values; an enum value the contract lacks is INVALID_ARGUMENT naming it."""
    s = req.settings
    check_references(len(req.references), inspector.door)  # before any reference is fetched
    deadline = Deadline.after_ms(10_000)
    return Inspection(
        line_id=req.line_id,
        image=await _image(inspector, req.line_id, req.image, "image", deadline),
        question=req.question.text,
        options=dict(req.question.options),
        question_type=to_name(QUESTION_TYPE_ENUM, req.question.type, "question.type"),
        dataset=req.dataset,
        category=req.category,
        request_id=req.request_id,
        reference_mode=to_name(REFERENCE_MODE_ENUM, s.reference_mode, "settings.reference_mode"),
        k_shots=s.k_shots,
        knowledge_mode=to_name(KNOWLEDGE_MODE_ENUM, s.knowledge_mode, "settings.knowledge_mode"),
        answer_format=to_name(ANSWER_FORMAT_ENUM, s.answer_format, "settings.answer_format"),
        experts={e: getattr(s.experts, e) for e in EXPERTS if s.experts.HasField(e)},
        deadline_ms=s.deadline_ms,
        return_prompt=s.return_prompt,
        seed=s.seed,
        return_heatmap=s.return_heatmap,
        references=[
            await _image(inspector, req.line_id, r, f"references[{i}]", deadline) for i, r in enumerate(req.references)
        ],
    )


def _hide_internals(records: Iterable[inspector_pb2.InspectionRecord]) -> None:
    """A line token does not see which replica (host:pid) answered: that names the server's machines."""
    if not sees_internals():
        for record in records:
            record.ClearField("gateway")


def trace_to_proto(t: Trace) -> common_pb2.Trace:
    return common_pb2.Trace(
        **{
            **vars(t),  # shallow: the nested values are converted below
            "question_type": to_enum(QUESTION_TYPE_ENUM, t.question_type, "question_type"),
            "reference_mode": to_enum(REFERENCE_MODE_ENUM, t.reference_mode, "reference_mode"),
            "knowledge_mode": to_enum(KNOWLEDGE_MODE_ENUM, t.knowledge_mode, "knowledge_mode"),
            "answer_format": to_enum(ANSWER_FORMAT_ENUM, t.answer_format, "answer_format"),
            # content ids, never where the server keeps the files
            "references": [common_pb2.Reference(**{**vars(r), "uri": content_id(r.sha256)}) for r in t.references],
            "timings": [common_pb2.StageTiming(**vars(x)) for x in t.timings],
            "evidence": evidence_to_proto(t.evidence) if t.evidence is not None else None,
        }
    )


def result_to_proto(r: InspectionResult) -> inspector_pb2.InspectResponse:
    return inspector_pb2.InspectResponse(
        request_id=r.request_id, answer=r.answer, answer_text=r.answer_text, trace=trace_to_proto(r.trace)
    )


def kept_of(inspection: Inspection, r: InspectionResult) -> Kept:
    """What the audit record keeps beyond the request and the response: the evidence's heat map and overlay
    are kept as images and named by sha256, so the console shows them whether or not the trace carried them."""
    kept = Kept(
        image=inspection.image,
        image_sha256=r.image_sha256,
        knowledge_text=r.knowledge,
        passages=[knowledge_pb2.Passage(**vars(p)) for p in r.passages],
    )
    e = r.trace.evidence
    if e is not None:
        kept.evidence = inspector_pb2.RecordedEvidence(
            score=e.score,
            threshold=e.threshold,
            anomalous=e.anomalous,
            boxes=[common_pb2.EvidenceBox(**vars(b)) for b in e.boxes],
            model_id=e.backbone_id,
        )
        if (images := r.evidence_images) is not None:
            kept.evidence.heatmap_sha256 = sha256_hex(images.heatmap.png)
            kept.evidence.overlay_sha256 = sha256_hex(images.overlay_png)
            kept.evidence_images = {
                kept.evidence.heatmap_sha256: images.heatmap.png,
                kept.evidence.overlay_sha256: images.overlay_png,
            }
    return kept


def product_to_proto(p: Product) -> inspector_pb2.Product:
    knowledge = entry_to_proto(p.knowledge) if p.knowledge is not None else None
    return inspector_pb2.Product(
        dataset=p.dataset,
        category=p.category,
        normal_images=p.normal_images,
        has_knowledge=knowledge is not None,
        knowledge=knowledge,
        ready=p.ready,
        readiness=p.readiness,
        evidence_bank_images=p.evidence_bank_images,
        evidence_threshold=p.evidence_threshold,
        evidence_features=p.evidence_features,
    )


def line_to_proto(line: LineSummary) -> inspector_pb2.Line:
    products = [inspector_pb2.LineProduct(dataset=p.dataset, category=p.category, normal_images=p.count)
                for p in line.products]  # fmt: skip
    return inspector_pb2.Line(line_id=line.line_id, normal_images=line.normal_images, products=products)


class InspectorServicer(inspector_pb2_grpc.InspectorServicer):
    def __init__(self, inspector: Inspector, audit: AuditTrail | None = None) -> None:
        self.inspector = inspector
        self.audit = audit
        self._reviews: Reviews | None = None  # made on first use: embedded mode sets the inspector once bound

    @grpc_errors
    async def Inspect(
        self, request: inspector_pb2.InspectRequest, context: grpc.aio.ServicerContext
    ) -> inspector_pb2.InspectResponse:
        inspection = await to_inspection(request, self.inspector)
        result = await self.inspector.inspect(inspection, context.time_remaining())
        response = result_to_proto(result)
        if self.audit is not None:  # the answer leaves only once its record is durable
            await self.audit.keep(request, response, kept_of(inspection, result))
        return response

    @grpc_errors
    async def AddNormalImages(
        self, request: inspector_pb2.AddNormalImagesRequest, context: grpc.aio.ServicerContext
    ) -> inspector_pb2.AddNormalImagesResponse:
        deadline = _deadline(context, 300_000)
        images = [
            await _image(self.inspector, request.line_id, img, f"images[{i}]", deadline)
            for i, img in enumerate(request.images)
        ]
        r = await self.inspector.add_normal_images(request.line_id, request.dataset, request.category, images, deadline)
        bank_images, threshold = (r.bank.images, r.bank.threshold) if r.bank is not None else (0, 0.0)
        return inspector_pb2.AddNormalImagesResponse(
            ids=r.ids,
            added=r.added,
            existing=r.existing,
            evidence_bank_images=bank_images,
            evidence_threshold=threshold,
        )

    @grpc_errors
    async def ListNormalImages(
        self, request: inspector_pb2.ListNormalImagesRequest, context: grpc.aio.ServicerContext
    ) -> inspector_pb2.ListNormalImagesResponse:
        r = await self.inspector.list_normal_images(
            request.line_id, request.dataset, request.category, request.limit, request.page_token,
            _deadline(context, 30_000),
        )  # fmt: skip
        return inspector_pb2.ListNormalImagesResponse(
            items=[inspector_pb2.MemoryItem(**{**vars(i), "uri": content_id(i.sha256)}) for i in r.items],
            total=r.total,
            next_page_token=r.next_page_token,
        )

    @grpc_errors
    async def DeleteNormalImages(
        self, request: inspector_pb2.DeleteNormalImagesRequest, context: grpc.aio.ServicerContext
    ) -> inspector_pb2.DeleteNormalImagesResponse:
        deleted = await self.inspector.delete_normal_images(
            request.line_id, request.dataset, request.category, list(request.ids), _deadline(context, 30_000)
        )
        return inspector_pb2.DeleteNormalImagesResponse(deleted=deleted)

    @grpc_errors
    async def ListProducts(
        self, request: inspector_pb2.ListProductsRequest, context: grpc.aio.ServicerContext
    ) -> inspector_pb2.ListProductsResponse:
        products = await self.inspector.list_products(
            request.line_id, request.dataset, request.category, _deadline(context, 30_000)
        )
        return inspector_pb2.ListProductsResponse(products=[product_to_proto(p) for p in products])

    @grpc_errors
    async def ListInspections(
        self, request: inspector_pb2.ListInspectionsRequest, context: grpc.aio.ServicerContext
    ) -> inspector_pb2.ListInspectionsResponse:
        response = await self._audit().list_inspections(request)
        _hide_internals(response.records)
        return response

    @grpc_errors
    async def GetInspection(
        self, request: inspector_pb2.GetInspectionRequest, context: grpc.aio.ServicerContext
    ) -> inspector_pb2.GetInspectionResponse:
        response = await self._audit().get_inspection(request)
        _hide_internals([response.record])
        return response

    @grpc_errors
    async def GetImage(
        self, request: inspector_pb2.GetImageRequest, context: grpc.aio.ServicerContext
    ) -> inspector_pb2.GetImageResponse:
        data = await self.inspector.get_image(request.line_id, request.sha256, _deadline(context, 30_000), self.audit)
        return inspector_pb2.GetImageResponse(data=data, content_type=content_type_of(data), sha256=request.sha256)

    def _audit(self) -> AuditTrail:
        if self.audit is None:
            raise FailedPrecondition("the audit log is off on this server (audit.enabled: false)")
        return self.audit

    def _review_desk(self) -> Reviews:
        if self._reviews is None:
            self._reviews = Reviews(self.inspector, self._audit())
        return self._reviews

    @grpc_errors
    async def ListReviews(
        self, request: inspector_pb2.ListReviewsRequest, context: grpc.aio.ServicerContext
    ) -> inspector_pb2.ListReviewsResponse:
        response = await self._review_desk().list(request)
        _hide_internals(item.record for item in response.items)
        return response

    @grpc_errors
    async def ConfirmReview(
        self, request: inspector_pb2.ConfirmReviewRequest, context: grpc.aio.ServicerContext
    ) -> inspector_pb2.ConfirmReviewResponse:
        by = require_review_right()  # the right before anything is read: a line token learns nothing here
        return await self._review_desk().confirm(request, by, _deadline(context, 300_000))

    @grpc_errors
    async def ListLines(
        self, request: inspector_pb2.ListLinesRequest, context: grpc.aio.ServicerContext
    ) -> inspector_pb2.ListLinesResponse:
        lines = await self.inspector.list_lines(_deadline(context, 30_000))
        return inspector_pb2.ListLinesResponse(lines=[line_to_proto(line) for line in lines])

    @grpc_errors
    async def PutKnowledge(
        self, request: inspector_pb2.PutKnowledgeRequest, context: grpc.aio.ServicerContext
    ) -> inspector_pb2.PutKnowledgeResponse:
        if not request.HasField("entry"):
            raise InvalidArgument("is required", field="entry")
        e = request.entry
        entry_id, version = await self.inspector.put_knowledge(
            e.dataset, e.category, e.SerializeToString(), _deadline(context, 30_000)
        )
        return inspector_pb2.PutKnowledgeResponse(id=entry_id, version=version)

    @grpc_errors
    async def GetKnowledge(
        self, request: inspector_pb2.GetKnowledgeRequest, context: grpc.aio.ServicerContext
    ) -> inspector_pb2.GetKnowledgeResponse:
        found = await self.inspector.get_knowledge(request.dataset, request.category, _deadline(context, 30_000))
        return inspector_pb2.GetKnowledgeResponse(
            entry=knowledge_pb2.KnowledgeEntry.FromString(found.entry), degraded=found.degraded
        )

    async def check_health(self) -> None:
        """Every stage this gateway depends on answers its own health check as SERVING."""
        await check_stages(self.inspector.clients)

    async def close(self) -> None:
        await self.inspector.clients.close()
        if self.audit is not None:
            await self.audit.close()


async def check_stages(clients: StageClients) -> None:
    """Every stage's health at once, asked afresh; Unavailable naming each stage that is not SERVING."""
    problems = await asyncio.gather(*(clients[stage].health_problem(max_age_s=0.0) for stage in STAGE_SERVICES))
    down = [f"{stage} stage: {problem}" for stage, problem in zip(STAGE_SERVICES, problems, strict=True) if problem]
    if down:
        raise Unavailable("; ".join(down))


def register(server: grpc.aio.Server, servicer: InspectorServicer) -> None:
    inspector_pb2_grpc.add_InspectorServicer_to_server(servicer, server)
