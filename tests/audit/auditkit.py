"""Audit records made by hand, as the Inspector writes them (imported by the audit tests)."""

from __future__ import annotations

from echo.v1 import common_pb2, inspector_pb2

T0_MS = 1_750_000_000_000


def make_record(
    request_id: str,
    *,
    line_id: str = "line-a",
    category: str = "screw",
    dataset: str = "Synthetic",
    verdict: int = inspector_pb2.VERDICT_GOOD,
    time_ms: int = T0_MS,
    image_sha256: str = "",
    reference_sha256: str = "",
    overlay_sha256: str = "",
) -> inspector_pb2.InspectionRecord:
    """A record as the Inspector writes one (with an evidence overlay when overlay_sha256 is given)."""
    answer = "A" if verdict == inspector_pb2.VERDICT_DEFECT else "B"
    record = inspector_pb2.InspectionRecord(
        request_id=request_id,
        time_unix_ms=time_ms,
        line_id=line_id,
        dataset=dataset,
        category=category,
        image_sha256=image_sha256 or f"{abs(hash(request_id)):064x}"[-64:],
        request=inspector_pb2.InspectRequest(
            request_id=request_id,
            line_id=line_id,
            category=category,
            dataset=dataset,
            question=common_pb2.Question(text="Is there any defect in the object?", options={"A": "Yes.", "B": "No."}),
        ),
        answer=answer,
        answer_text={"A": "Yes.", "B": "No."}[answer],
        verdict=verdict,
        trace=common_pb2.Trace(
            question_type=common_pb2.ANOMALY_DETECTION,
            dataset=dataset,
            category=category,
            experts_used=["reference", "decision"],
            model_ids={"decision": "random(seed=0)", "embedding": "echo-tiny-clip"},
            raw_reply=answer,
            option_scores={"A": 0.25, "B": 0.75},
        ),
    )
    if reference_sha256:
        record.trace.references.add(id="ref-1", sha256=reference_sha256, score=0.9, category=category)
    if overlay_sha256:
        record.evidence.CopyFrom(
            inspector_pb2.RecordedEvidence(score=2.5, threshold=1.0, anomalous=True, overlay_sha256=overlay_sha256)
        )
    return record
