"""One audit record per answered inspection: how it is built, judged, written as JSON and flattened for CSV."""

from __future__ import annotations

import json
import os
import re
import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from google.protobuf.json_format import MessageToDict, ParseDict

from echo.v1 import common_pb2, inspector_pb2, knowledge_pb2
from services.common.answers import parse_yes_no
from services.common.enums import QUESTION_TYPE_ENUM, VERDICT_ENUM

GATEWAY_ID = f"{socket.gethostname()}:{os.getpid()}"


@dataclass
class Kept:
    """What an inspection used that its response does not carry: filled by the Inspector as it runs."""

    image: bytes = b""
    image_sha256: str = ""
    knowledge_text: str = ""
    passages: list[knowledge_pb2.Passage] = field(default_factory=list)
    evidence: inspector_pb2.RecordedEvidence | None = None
    evidence_images: dict[str, bytes] = field(default_factory=dict)  # sha256 -> heat map / overlay PNG

    def images(self) -> dict[str, bytes]:
        """Every image the record points at that the audit image store must keep."""
        return {self.image_sha256: self.image, **self.evidence_images}


def verdict_of(question_type: int, options: dict[str, str], answer: str) -> int:
    """GOOD / DEFECT for an anomaly-detection answer, ANSWERED for other types, UNPARSED without an answer."""
    if not answer:
        return inspector_pb2.VERDICT_UNPARSED
    if question_type == common_pb2.ANOMALY_DETECTION:
        says_defect = parse_yes_no(options.get(answer, ""))
        if says_defect is not None:
            return inspector_pb2.VERDICT_DEFECT if says_defect else inspector_pb2.VERDICT_GOOD
    return inspector_pb2.VERDICT_ANSWERED


def build_record(
    req: inspector_pb2.InspectRequest,
    resp: inspector_pb2.InspectResponse,
    kept: Kept,
    *,
    now_ms: int | None = None,
) -> inspector_pb2.InspectionRecord:
    request = inspector_pb2.InspectRequest()
    request.CopyFrom(req)
    if request.image.WhichOneof("source") == "data":
        request.image.ClearField("data")  # the bytes live in the image store, named by image_sha256
    t = resp.trace
    record = inspector_pb2.InspectionRecord(
        request_id=resp.request_id,
        time_unix_ms=now_ms if now_ms is not None else int(time.time() * 1000),
        line_id=req.line_id,
        dataset=t.dataset,
        category=t.category,
        image_sha256=kept.image_sha256,
        request=request,
        answer=resp.answer,
        answer_text=resp.answer_text,
        verdict=verdict_of(t.question_type, dict(req.question.options), resp.answer),
        trace=t,
        knowledge_passages=kept.passages,
        knowledge_text=kept.knowledge_text,
        gateway=GATEWAY_ID,
    )
    if kept.evidence is not None:
        record.evidence.CopyFrom(kept.evidence)
    return record


def image_shas(record: inspector_pb2.InspectionRecord) -> set[str]:
    """Every image a record points at: the query, its references, the evidence heat map and overlay."""
    shas = {record.image_sha256, *(r.sha256 for r in record.trace.references)}
    shas |= {record.evidence.heatmap_sha256, record.evidence.overlay_sha256}
    return {s for s in shas if s}


def to_dict(record: inspector_pb2.InspectionRecord) -> dict[str, Any]:
    return MessageToDict(record, preserving_proto_field_name=True)


def to_json(record: inspector_pb2.InspectionRecord) -> str:
    """One line of JSON (the log's and the jsonl export's format): proto field names, enums by name."""
    return json.dumps(to_dict(record), ensure_ascii=False, separators=(",", ":"))


def from_json(text: str | bytes) -> inspector_pb2.InspectionRecord:
    return ParseDict(json.loads(text), inspector_pb2.InspectionRecord(), ignore_unknown_fields=True)


_SPAN = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
_SPAN_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_time(text: str, now_s: float | None = None) -> int:
    """Milliseconds since the epoch from an ISO date or time ('2025-06-01', '2025-06-01T08:30', local unless it
    names a zone) or a span back from now ('30m', '24h', '7d'); 0 for ''. ValueError says what is accepted."""
    text = text.strip()
    if not text:
        return 0
    if m := _SPAN.match(text):
        now_s = time.time() if now_s is None else now_s
        return int((now_s - float(m.group(1)) * _SPAN_S[m.group(2)]) * 1000)
    try:
        return int(datetime.fromisoformat(text).timestamp() * 1000)
    except ValueError:
        raise ValueError(
            f"{text!r}: use an ISO date or time (2025-06-01, 2025-06-01T08:30) or a span (30m, 24h, 7d)"
        ) from None


def iso_time(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def total_ms(record: inspector_pb2.InspectionRecord) -> float:
    return next((s.ms for s in record.trace.timings if s.stage == "total"), 0.0)


def verdict_name(value: int) -> str:
    """good, defect, answered, unparsed ("" when unspecified)."""
    return next((name for name, v in VERDICT_ENUM.items() if v == value), "")


def question_type_name(value: int) -> str:
    """MMAD's name of a question type ("Anomaly Detection"); "" when unspecified."""
    return next((name for name, v in QUESTION_TYPE_ENUM.items() if v == value), "")


CSV_COLUMNS = (
    "time",
    "request_id",
    "line_id",
    "dataset",
    "category",
    "question_type",
    "question",
    "answer",
    "answer_text",
    "verdict",
    "verdict_source",
    "review",
    "experts_used",
    "references",
    "knowledge_entries",
    "knowledge_passages",
    "models",
    "prompt_sha256",
    "option_scores",
    "total_ms",
    "degraded",
    "image_sha256",
    "raw_reply",
)


def review_words(item: inspector_pb2.ReviewItem | None, record: inspector_pb2.InspectionRecord) -> str:
    """A record's review state in a few words: "confirmed defect: crack by lead-1", "pending", or ""."""
    if item is not None and item.confirmations:
        c = item.confirmations[-1]
        return f"confirmed {verdict_name(c.verdict)}" + (f": {c.defect_type}" if c.defect_type else "") + f" by {c.by}"
    return record.trace.review


def csv_row(r: inspector_pb2.InspectionRecord, review: str = "") -> dict[str, str]:
    """One flat row per record for spreadsheets; list fields joined with ';'. The jsonl export keeps everything.

    Args:
        review: the record's review state (review_words); "" takes the trace's ("pending" or "").
    """
    t = r.trace

    def join(items: Iterable[str]) -> str:
        return ";".join(items)

    return {
        "time": iso_time(r.time_unix_ms),
        "request_id": r.request_id,
        "line_id": r.line_id,
        "dataset": r.dataset,
        "category": r.category,
        "question_type": question_type_name(t.question_type),
        "question": r.request.question.text,
        "answer": r.answer,
        "answer_text": r.answer_text,
        "verdict": verdict_name(r.verdict),
        "verdict_source": t.verdict_source,
        "review": review or t.review,
        "experts_used": join(t.experts_used),
        "references": join(ref.id for ref in t.references),
        "knowledge_entries": join(t.knowledge_entry_ids),
        "knowledge_passages": join(p.id for p in r.knowledge_passages),
        "models": join(f"{k}={v}" for k, v in sorted(t.model_ids.items())),
        "prompt_sha256": t.prompt_sha256,
        "option_scores": join(f"{k}={v:.4f}" for k, v in sorted(t.option_scores.items())),
        "total_ms": f"{total_ms(r):.1f}",
        "degraded": join(t.degraded),
        "image_sha256": r.image_sha256,
        "raw_reply": t.raw_reply,
    }


def confirmation_to_json(c: inspector_pb2.ReviewConfirmation) -> str:
    """One line of JSON, as the audit log keeps a confirmation."""
    return json.dumps(MessageToDict(c, preserving_proto_field_name=True), ensure_ascii=False, separators=(",", ":"))


def confirmation_from_json(text: str | bytes) -> inspector_pb2.ReviewConfirmation:
    return ParseDict(json.loads(text), inspector_pb2.ReviewConfirmation(), ignore_unknown_fields=True)
