"""Whose verdict counts: the decision model's, or the visual evidence's (plain values, no gRPC here).

An Anomaly Detection answer has two judges when the evidence expert ran: the
decision model and the product's calibrated evidence bank. The model's answer
stands when it is a model that reads the image; a disagreement is carried, not
hidden. When the model can only guess (the offline random-weight test model)
or named no option, the evidence answers and the trace says so. Without a
ready evidence bank the model's answer stands and the trace says evidence was
not available. Other question types are the model's alone.
"""

from __future__ import annotations

from dataclasses import dataclass

from services.common.answers import parse_yes_no
from services.gateway.domain import Evidence
from services.mmad.types import ANOMALY_DETECTION

MODEL = "decision model"
_KIND_WORDS = {
    "random-weights": "the offline random model",
    "baseline": "an evaluation baseline",
}


@dataclass
class Settled:
    """The answer that counts, where it comes from, and whether a real model and the evidence disagree."""

    answer: str
    source: str
    disagrees: bool = False
    model_answer: str = ""  # the model's own letter when the evidence's replaced it
    held: bool = False  # the evidence answered Yes for a part in its review band (gateway.hold_review_band)


def evidence_letter(evidence: Evidence, options: dict[str, str], hold_review: bool = False) -> str:
    """The option that says what the evidence found (Yes when anomalous, No when normal; with `hold_review`, Yes
    in the review band too); "" when none does."""
    defect = evidence.anomalous or (hold_review and evidence.band == "review")
    return next((k for k in sorted(options) if parse_yes_no(options[k]) is defect), "")


def evidence_words(score: float, threshold: float, anomalous: bool, top_region: str = "") -> str:
    """One line a person reads: "anomalous: score 44.9 > threshold 39, top region top left" (the CLI's too)."""
    line = f"{'anomalous' if anomalous else 'normal'}: score {score:.4g} {'>' if anomalous else '<='} threshold "
    line += f"{threshold:.4g}"
    return line + (f", top region {top_region}" if top_region else "")


def settle(
    question_type: str,
    options: dict[str, str],
    model_answer: str,
    model_kind: str,
    evidence: Evidence | None,
    why_no_evidence: str = "",
    hold_review: bool = True,
) -> Settled:
    """The verdict that counts for one answer.

    Args:
        model_answer: the decision model's letter ("" when its reply named no option).
        model_kind: DecideResponse.model_kind ("mllm", "random-weights", "evidence", "baseline").
        evidence: the evidence expert's finding, None when it did not run.
        why_no_evidence: the trace's reason the evidence did not run, if any (e.g. "no normal images").
        hold_review: where the evidence answers for the model, a part in its review band answers Yes (held for a
            person; gateway.hold_review_band).
    """
    model = MODEL if model_kind not in _KIND_WORDS else f"{MODEL} ({_KIND_WORDS[model_kind]})"
    if model_kind == "evidence":
        return Settled(model_answer, "evidence (decision.backend evidence)")
    if question_type != ANOMALY_DETECTION or model_kind == "baseline":
        return Settled(model_answer, model)
    ready = evidence is not None and evidence.threshold > 0
    stands_in = model_kind == "random-weights" or not model_answer  # the evidence answers for the model
    hold = hold_review and stands_in
    letter = evidence_letter(evidence, options, hold) if ready and evidence is not None else ""
    if not letter:  # no ready bank, or no Yes/No option to pick: the model's answer stands
        why = why_no_evidence or (
            "no Yes/No option to pick" if ready else "the evidence bank is not calibrated" if evidence else "not run"
        )
        return Settled(model_answer, f"{model}; evidence not available ({why})")
    assert evidence is not None
    held = hold and evidence.band == "review"
    if model_kind == "random-weights":
        why = f"evidence (the decision model is {_KIND_WORDS[model_kind]})"
        return Settled(letter, why, model_answer=model_answer, held=held)
    if not model_answer:
        return Settled(letter, "evidence (the decision model named no option)", held=held)
    model_says_defect = parse_yes_no(options.get(model_answer, ""))
    if model_says_defect is None or model_says_defect is evidence.anomalous:
        return Settled(model_answer, f"{model}; the evidence agrees")
    return Settled(model_answer, f"{model}; the evidence disagrees ({_words(evidence)})", disagrees=True)


def _words(e: Evidence) -> str:
    return evidence_words(e.score, e.threshold, e.anomalous, e.boxes[0].region if e.boxes else "")


PENDING = "pending"


def review_of(evidence: Evidence | None, disagrees: bool, held: bool = False) -> str:
    """Why a person should confirm this answer ("" when nothing asks for it): the evidence scored the part in its
    review band (between review_threshold and threshold), or a real model and the evidence disagree. The line gets
    its answer at once either way; the review happens later."""
    reasons = []
    if evidence is not None and evidence.band == "review":
        reasons.append(
            f"the evidence scored {evidence.score:.4g} in the review band "
            f"({evidence.review_threshold:.4g} to {evidence.threshold:.4g})"
            + ("; answered Yes: held until a person confirms it" if held else "")
        )
    if disagrees:
        reasons.append("the decision model and the evidence disagree")
    return "; ".join(reasons)
