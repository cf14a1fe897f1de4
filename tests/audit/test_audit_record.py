"""How a record is built from an answer, judged, and written (JSON line, CSV row)."""

from __future__ import annotations

import pytest
from auditkit import make_record

from echo.v1 import common_pb2, inspector_pb2, knowledge_pb2
from services.audit.record import (
    CSV_COLUMNS,
    Kept,
    build_record,
    csv_row,
    from_json,
    image_shas,
    parse_time,
    to_json,
    verdict_of,
)

AD, DC = common_pb2.ANOMALY_DETECTION, common_pb2.DEFECT_CLASSIFICATION


@pytest.mark.parametrize(
    ("qtype", "options", "answer", "verdict"),
    [
        (AD, {"A": "Yes.", "B": "No."}, "A", inspector_pb2.VERDICT_DEFECT),
        (AD, {"A": "Yes.", "B": "No."}, "B", inspector_pb2.VERDICT_GOOD),
        (AD, {"A": "No.", "B": "Yes."}, "B", inspector_pb2.VERDICT_DEFECT),  # MMAD shuffles the options
        (AD, {"A": "Maybe.", "B": "Unsure."}, "A", inspector_pb2.VERDICT_ANSWERED),
        (DC, {"A": "Crack.", "B": "Scratch."}, "A", inspector_pb2.VERDICT_ANSWERED),
        (AD, {"A": "Yes.", "B": "No."}, "", inspector_pb2.VERDICT_UNPARSED),
    ],
)
def test_the_verdict_follows_the_answer(qtype: int, options: dict, answer: str, verdict: int) -> None:
    assert verdict_of(qtype, options, answer) == verdict


def test_a_record_keeps_the_request_without_its_pixels_and_everything_the_answer_used() -> None:
    req = inspector_pb2.InspectRequest(
        request_id="r1",
        line_id="line-a",
        image=common_pb2.Image(data=b"\x89PNG..."),
        question=common_pb2.Question(text="Is there any defect in the object?", options={"A": "Yes.", "B": "No."}),
        settings=common_pb2.RequestSettings(reference_mode=common_pb2.K_SHOT, k_shots=2),
    )
    trace = common_pb2.Trace(question_type=AD, dataset="Synthetic", category="screw", prompt_sha256="f" * 64)
    trace.references.add(id="ref", sha256="b" * 64)
    resp = inspector_pb2.InspectResponse(request_id="r1", answer="A", answer_text="Yes.", trace=trace)
    evidence = inspector_pb2.RecordedEvidence(score=2.0, threshold=1.0, anomalous=True, overlay_sha256="c" * 64)
    kept = Kept(image=b"\x89PNG...", image_sha256="a" * 64, knowledge_text="the text",
                passages=[knowledge_pb2.Passage(id="p1", text="a passage")], evidence=evidence,
                evidence_images={"c" * 64: b"overlay"})  # fmt: skip
    record = build_record(req, resp, kept, now_ms=123)
    assert not record.request.image.data and record.request.settings.k_shots == 2
    assert (record.time_unix_ms, record.dataset, record.category) == (123, "Synthetic", "screw")
    assert record.verdict == inspector_pb2.VERDICT_DEFECT and record.trace.prompt_sha256 == "f" * 64
    assert record.knowledge_passages[0].text == "a passage" and record.knowledge_text == "the text"
    assert record.evidence == evidence
    assert image_shas(record) == {"a" * 64, "b" * 64, "c" * 64}
    assert set(kept.images()) == {"a" * 64, "c" * 64}
    assert req.image.data  # the caller's request is untouched


def test_a_uri_image_stays_named_in_the_record() -> None:
    req = inspector_pb2.InspectRequest(line_id="l", image=common_pb2.Image(uri="s3://bucket/part.png"))
    record = build_record(req, inspector_pb2.InspectResponse(request_id="x"), Kept(image_sha256="a" * 64))
    assert record.request.image.uri == "s3://bucket/part.png"


def test_json_lines_round_trip_and_csv_rows_are_flat() -> None:
    record = make_record("r1", reference_sha256="b" * 64)
    line = to_json(record)
    assert "\n" not in line and from_json(line) == record
    row = csv_row(record)
    assert tuple(row) == CSV_COLUMNS
    assert row["verdict"] == "good" and row["question_type"] == "Anomaly Detection"
    assert row["models"] == "decision=random(seed=0);embedding=echo-tiny-clip" and row["references"] == "ref-1"
    assert row["time"].endswith("Z")


def test_times_are_read_as_iso_or_as_a_span_back_from_now() -> None:
    now = 1_750_000_000.0
    assert parse_time("", now) == 0
    assert parse_time("24h", now) == int((now - 86400) * 1000)
    assert parse_time("30m", now) == int((now - 1800) * 1000)
    assert parse_time("2025-06-15T12:00:00+00:00") == 1_749_988_800_000
    with pytest.raises(ValueError, match="use an ISO date or time"):
        parse_time("last tuesday")
