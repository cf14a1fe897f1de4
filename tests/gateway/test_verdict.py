"""Whose verdict counts (services/gateway/verdict.py): the rule, case by case."""

from __future__ import annotations

from services.common.values import Box
from services.gateway.domain import Evidence
from services.gateway.verdict import evidence_words, review_of, settle
from services.mmad.types import ANOMALY_DETECTION, DEFECT_CLASSIFICATION

AD = {"A": "Yes.", "B": "No."}


def _evidence(anomalous: bool, *, threshold: float = 39.0) -> Evidence:
    score = 44.9 if anomalous else 20.0
    box = Box(0, 0, 10, 10, score, "top left", 0.02, anomalous)
    return Evidence(score, threshold, anomalous, [box], "wrn50", "summary")


def test_offline_random_model_with_anomalous_evidence_answers_yes_from_the_evidence() -> None:
    s = settle(ANOMALY_DETECTION, AD, "B", "random-weights", _evidence(True))
    assert (s.answer, s.disagrees, s.model_answer) == ("A", False, "B")
    assert s.source == "evidence (the decision model is the offline random model)"


def test_offline_random_model_with_normal_evidence_answers_no() -> None:
    s = settle(ANOMALY_DETECTION, AD, "A", "random-weights", _evidence(False))
    assert s.answer == "B" and s.source.startswith("evidence")


def _in_review_band() -> Evidence:
    e = _evidence(False)
    e.score, e.review_threshold, e.band = 30.0, 25.0, "review"
    return e


def test_offline_random_model_holds_a_part_in_the_review_band_as_a_defect() -> None:
    s = settle(ANOMALY_DETECTION, AD, "B", "random-weights", _in_review_band())
    assert (s.answer, s.held) == ("A", True)
    assert s.source == "evidence (the decision model is the offline random model)"
    assert review_of(_in_review_band(), s.disagrees, s.held) == (
        "the evidence scored 30 in the review band (25 to 39); answered Yes: held until a person confirms it"
    )


def test_review_band_passes_when_holding_is_switched_off() -> None:
    s = settle(ANOMALY_DETECTION, AD, "A", "random-weights", _in_review_band(), hold_review=False)
    assert (s.answer, s.held) == ("B", False)


def test_a_real_model_answer_in_the_review_band_is_not_replaced() -> None:
    s = settle(ANOMALY_DETECTION, AD, "B", "mllm", _in_review_band())
    assert (s.answer, s.disagrees) == ("B", False)


def test_real_model_answer_stands_and_a_disagreement_is_flagged() -> None:
    s = settle(ANOMALY_DETECTION, AD, "B", "mllm", _evidence(True))
    assert (s.answer, s.disagrees, s.model_answer) == ("B", True, "")
    assert (
        s.source == "decision model; the evidence disagrees (anomalous: score 44.9 > threshold 39, top region top left)"
    )


def test_real_model_agreeing_with_the_evidence_is_not_flagged() -> None:
    s = settle(ANOMALY_DETECTION, AD, "A", "mllm", _evidence(True))
    assert (s.answer, s.disagrees, s.source) == ("A", False, "decision model; the evidence agrees")


def test_real_model_that_named_no_option_yields_to_the_evidence() -> None:
    s = settle(ANOMALY_DETECTION, AD, "", "mllm", _evidence(False))
    assert (s.answer, s.source) == ("B", "evidence (the decision model named no option)")


def test_without_evidence_the_models_answer_stands_and_the_source_says_why() -> None:
    s = settle(ANOMALY_DETECTION, AD, "B", "random-weights", None, "no normal images in the bank")
    assert (s.answer, s.disagrees) == ("B", False)
    assert (
        s.source == "decision model (the offline random model); evidence not available (no normal images in the bank)"
    )
    assert settle(ANOMALY_DETECTION, AD, "B", "mllm", None).source == "decision model; evidence not available (not run)"


def test_an_uncalibrated_bank_is_not_ready_so_the_models_answer_stands() -> None:
    s = settle(ANOMALY_DETECTION, AD, "B", "random-weights", _evidence(True, threshold=0.0))
    assert s.answer == "B" and "the evidence bank is not calibrated" in s.source


def test_other_question_types_are_the_models_alone() -> None:
    options = {"A": "Scratch.", "B": "Crack."}
    s = settle(DEFECT_CLASSIFICATION, options, "B", "random-weights", _evidence(True))
    assert (s.answer, s.source, s.disagrees) == ("B", "decision model (the offline random model)", False)


def test_the_evidence_backend_and_the_baselines_keep_their_answers() -> None:
    assert settle(ANOMALY_DETECTION, AD, "A", "evidence", _evidence(True)).source == (
        "evidence (decision.backend evidence)"
    )
    baseline = settle(ANOMALY_DETECTION, AD, "B", "baseline", _evidence(True))  # the harness's chance level
    assert (baseline.answer, baseline.disagrees) == ("B", False)


def test_evidence_words_name_score_threshold_verdict_and_top_region() -> None:
    assert evidence_words(20.0, 39.0, False, "top left") == "normal: score 20 <= threshold 39, top region top left"
    assert evidence_words(44.9, 39.0, True) == "anomalous: score 44.9 > threshold 39"


def test_a_part_in_the_review_band_or_a_disagreement_is_queued_for_review_and_says_why() -> None:
    in_band = Evidence(36.0, 39.0, False, [], "wrn50", "summary", review_threshold=33.0, band="review")
    assert review_of(in_band, disagrees=False) == "the evidence scored 36 in the review band (33 to 39)"
    both = review_of(in_band, disagrees=True)
    assert both.startswith("the evidence scored 36") and both.endswith("the decision model and the evidence disagree")
    passed = Evidence(20.0, 39.0, False, [], "wrn50", "summary", review_threshold=33.0, band="pass")
    assert review_of(passed, disagrees=False) == "" and review_of(None, disagrees=False) == ""
    no_band = _evidence(True)  # band "": the evidence stage gives none, nothing is queued for it
    assert review_of(no_band, disagrees=False) == ""
