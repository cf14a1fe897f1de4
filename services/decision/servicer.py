"""gRPC servicer of the decision stage: proto <-> domain, one call into the core."""

from __future__ import annotations

from typing import cast

import grpc

from echo.v1 import decision_pb2, decision_pb2_grpc
from services.common.enums import ANSWER_FORMAT_ENUM, QUESTION_TYPE_ENUM, to_name
from services.common.errors import InvalidArgument, grpc_errors
from services.common.images import image_bytes
from services.decision.core import Decider, DecisionInput, EvidenceInput
from services.decision.prompt import AnswerFormat


def to_input(request: decision_pb2.DecideRequest) -> DecisionInput:
    """Validate and convert a DecideRequest; errors name the field."""
    if not request.HasField("query_image"):
        raise InvalidArgument("is missing: set data (encoded JPEG/PNG bytes) or uri", field="query_image")
    fmt = cast(AnswerFormat, to_name(ANSWER_FORMAT_ENUM, request.answer_format, "answer_format") or "multiple_choice")
    return DecisionInput(
        query_image=image_bytes(request.query_image, field="query_image"),
        reference_images=[
            image_bytes(img, field=f"reference_images[{i}]") for i, img in enumerate(request.reference_images)
        ],
        question=request.question.text,
        options=dict(request.question.options),
        knowledge=request.knowledge,
        reasoning=request.reasoning,
        answer_format=fmt,
        return_prompt=request.return_prompt,
        max_reasoning_tokens=request.max_reasoning_tokens,
        category=request.category,
        request_id=request.request_id,
        question_type=to_name(QUESTION_TYPE_ENUM, request.question.type, "question.type"),
        evidence=_evidence(request),
        defect_example=(
            image_bytes(request.defect_example, field="defect_example") if request.HasField("defect_example") else b""
        ),
        defect_example_type=request.defect_example_type,
    )


def _evidence(request: decision_pb2.DecideRequest) -> EvidenceInput | None:
    if not request.HasField("evidence"):
        return None
    e = request.evidence
    return EvidenceInput(
        anomalous=e.anomalous,
        score=e.score,
        threshold=e.threshold,
        regions=[b.region for b in e.boxes],
        summary=e.summary,
        as_text=e.sent_as_text,
        overlay=e.overlay_png if e.sent_as_image else b"",
        defect_type=e.defect_type,
        defect_summary=e.defect_summary,
    )


class DecisionServicer(decision_pb2_grpc.DecisionServicer):
    def __init__(self, decider: Decider) -> None:
        self.decider = decider

    @grpc_errors
    async def Decide(
        self, request: decision_pb2.DecideRequest, context: grpc.aio.ServicerContext
    ) -> decision_pb2.DecideResponse:
        inp = to_input(request)
        r = await self.decider.decide(inp, timeout_s=context.time_remaining())
        return decision_pb2.DecideResponse(
            answer=r.answer,
            unparsed=r.unparsed,
            raw_reply=r.raw_reply,
            reasoning=r.reasoning,
            prompt=r.prompt,
            prompt_sha256=r.prompt_sha256,
            model_id=r.model_id,
            compute_ms=r.compute_ms,
            preprocess_ms=r.preprocess_ms,
            prompt_tokens=r.prompt_tokens,
            completion_tokens=r.completion_tokens,
            scores=r.scores,
            model_kind=r.model_kind,
        )

    @grpc_errors
    async def Complete(
        self, request: decision_pb2.CompleteRequest, context: grpc.aio.ServicerContext
    ) -> decision_pb2.CompleteResponse:
        r = await self.decider.complete_text(
            request.prompt,
            max_tokens=request.max_tokens,
            timeout_s=context.time_remaining(),
            request_id=request.request_id,
        )
        return decision_pb2.CompleteResponse(
            text=r.text,
            model_id=r.model_id,
            prompt_tokens=r.prompt_tokens,
            completion_tokens=r.completion_tokens,
            compute_ms=r.compute_ms,
        )

    async def check_health(self) -> None:
        await self.decider.check_health()

    async def close(self) -> None:
        await self.decider.close()
