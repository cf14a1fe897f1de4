"""Whose verdict counts, through the Inspector over real gRPC (the embedded server of conftest.py: the offline
random-weight MLLM decides, the products' evidence banks are built by AddNormalImages)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from app.background import BackgroundServer
from echo.v1 import inspector_pb2
from services.common.answers import parse_yes_no
from services.decision.servicer import DecisionServicer

LINE = "line-a"
OFFLINE = "evidence (the decision model is the offline random model)"


def _ad_questions(dataset):  # type: ignore[no-untyped-def]
    return [(s, q) for s, q in dataset.questions() if q.type == "Anomaly Detection"]


def _inspect(client, dataset, sample, q):  # type: ignore[no-untyped-def]
    return client.inspect(
        dataset.abspath(sample.image_path), q.text, q.options, line_id=LINE, category=sample.category,
        dataset=sample.dataset,
    )  # fmt: skip


def test_the_offline_model_yields_anomaly_detection_to_the_evidence_and_the_record_follows(client, dataset) -> None:  # type: ignore[no-untyped-def]
    asked = _ad_questions(dataset)
    assert len(asked) >= 4
    for sample, q in asked:
        resp = _inspect(client, dataset, sample, q)
        t = resp.trace
        held = t.evidence.band == "review"  # a part in the review band is held for a person (answered Yes)
        assert t.verdict_source == OFFLINE and not t.evidence_disagrees and t.model_answer in q.options
        assert t.review_reason.endswith("held until a person confirms it") is held
        defect = t.evidence.anomalous or held
        assert parse_yes_no(q.options[resp.answer]) is defect  # the evidence's letter
        record = client.get_inspection(LINE, resp.request_id).record
        want = inspector_pb2.VERDICT_DEFECT if defect else inspector_pb2.VERDICT_GOOD
        assert record.verdict == want and record.trace.verdict_source == OFFLINE


def test_without_an_evidence_bank_the_models_answer_stands_and_the_source_says_so(client, dataset) -> None:  # type: ignore[no-untyped-def]
    sample, q = _ad_questions(dataset)[0]
    resp = client.inspect(
        dataset.abspath(sample.image_path), q.text, q.options, line_id="line-without-bank", category="screw",
        dataset=sample.dataset, references=[dataset.abspath(sample.image_path)],
    )  # fmt: skip
    t = resp.trace
    assert not t.HasField("evidence") and t.model_answer == "" and resp.answer in q.options
    assert t.verdict_source.startswith("decision model (the offline random model); evidence not available (")
    assert "no evidence bank" in t.verdict_source


@pytest.fixture()
def as_real_model(server: BackgroundServer) -> Iterator[None]:
    """The decision stage reports its model as one that reads the image (what a served MLLM reports)."""
    decider = next(s.servicer for s in server.embedded.stages if isinstance(s.servicer, DecisionServicer)).decider
    decider.model_kind = "mllm"  # type: ignore[attr-defined]
    try:
        yield
    finally:
        decider.model_kind = "random-weights"  # type: ignore[attr-defined]


def test_a_real_models_answer_stands_and_a_disagreement_is_carried(client, dataset, as_real_model) -> None:  # type: ignore[no-untyped-def]
    seen = []
    for sample, q in _ad_questions(dataset):
        resp = _inspect(client, dataset, sample, q)
        t = resp.trace
        disagrees = parse_yes_no(q.options[resp.answer]) is not t.evidence.anomalous
        assert t.evidence_disagrees == disagrees and t.model_answer == ""
        assert t.verdict_source.startswith("decision model; the evidence " + ("disagrees (" if disagrees else "agrees"))
        seen.append(disagrees)
    assert any(seen)  # the random-weight model answers blindly, so it disagrees with the evidence somewhere
