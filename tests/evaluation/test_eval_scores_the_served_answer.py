"""Evaluation scores the letter serving read, never a second parse of its own.

The decision stage reads a multiple-choice reply with services/common/answers.py (constrained,
or MMAD's rule for a free reply); the evaluation runner records that letter as served, and an
offline grade of the same reply in the same mode reads the same letter.
"""

from __future__ import annotations

import pytest

from echo.v1 import common_pb2, inspector_pb2
from services.decision.backends.base import Reply
from services.decision.core import interpret
from services.evaluation.cells import FULL
from services.evaluation.runner import make_record
from services.mmad.scoring import grade
from services.mmad.types import Question, Sample

TYPES = {"A": "Scratch.", "B": "Crack.", "C": "Hole.", "D": "Contamination."}
TRICKY_REPLIES = [
    "C",
    "A is wrong, the answer is C",  # first letter A, MMAD's last letter C
    "E",  # a letter that names no option
    "E, or rather B",
    "I think B",  # 'I' is a capital letter, not an option
    "a scratch",  # lower-case 'a' is no letter; the option text is stated
    "Scratch or crack, hard to say",  # two option texts: ambiguous
    "contaminated",  # no letter, no option text: MMAD's difflib still picks one
    "(D) Contamination",
    "",
    "Answer: F",
]


@pytest.mark.parametrize("free", [False, True], ids=["constrained", "free"])
@pytest.mark.parametrize("reply", TRICKY_REPLIES)
def test_evaluation_records_the_letter_serving_read_from_the_same_reply(reply: str, free: bool) -> None:
    served, raw, _ = interpret("multiple_choice", [Reply(reply)], TYPES, free=free)
    sample = Sample("good/000.png", "DS-MVTec", "bottle", True, None)
    question = Question(
        "good/000.png#0",
        "What is the type of the defect?",
        TYPES,
        "C",
        "Defect Classification",
        "Defect Classification",
    )
    resp = inspector_pb2.InspectResponse(
        answer=served, trace=common_pb2.Trace(raw_reply=raw, unparsed=not served), request_id="r"
    )
    record = make_record(sample, question, resp, 1.0, FULL, 0.0)
    assert record["answer"] == served
    assert record["unparsed"] == (served == "")
    assert grade(sample, question, reply, free=free).predicted == served


def test_the_two_modes_really_differ_on_some_tricky_replies() -> None:
    """The table above would prove nothing if constrained and free reading always agreed."""
    read = {free: [interpret("multiple_choice", [Reply(r)], TYPES, free=free)[0] for r in TRICKY_REPLIES]
            for free in (False, True)}  # fmt: skip
    assert read[False] != read[True]
