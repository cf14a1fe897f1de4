"""The one mapping between the contract's enums (echo.v1) and the names the code, the CLI and reports use.

Value 0 of every enum is UNSPECIFIED (the configured default) and maps to "".
Question-type names are MMAD's ("Anomaly Detection", ...), read off the enum's
own names so the two cannot drift (a test holds them equal to
services.mmad.types.QUESTION_TYPES).
"""

from __future__ import annotations

from collections.abc import Mapping

from echo.v1 import common_pb2, inspector_pb2
from services.common.errors import InvalidArgument

QUESTION_TYPE_ENUM: dict[str, int] = {
    common_pb2.QuestionType.Name(v).replace("_", " ").title(): v for v in common_pb2.QuestionType.values() if v
}
REFERENCE_MODE_ENUM: dict[str, int] = {
    "0-shot": common_pb2.ZERO_SHOT,
    "1-shot": common_pb2.ONE_SHOT_RANDOM,
    "1-shot*": common_pb2.ONE_SHOT_SIMILAR,
    "k-shot": common_pb2.K_SHOT,
}
KNOWLEDGE_MODE_ENUM: dict[str, int] = {
    "none": common_pb2.KNOWLEDGE_NONE,
    "dk": common_pb2.DOMAIN_KNOWLEDGE,
    "csk": common_pb2.CONTEXT_SPECIFIC,
}
ANSWER_FORMAT_ENUM: dict[str, int] = {
    "multiple_choice": common_pb2.MULTIPLE_CHOICE,
    "open_qa": common_pb2.OPEN_QA,
    "true_false": common_pb2.TRUE_FALSE,
}
VERDICT_ENUM: dict[str, int] = {
    inspector_pb2.Verdict.Name(v).removeprefix("VERDICT_").lower(): v for v in inspector_pb2.Verdict.values() if v
}
"""good, defect, answered, unparsed (the audit trail's verdicts)."""

REVIEW_STATE_ENUM: dict[str, int] = {
    inspector_pb2.ReviewState.Name(v).removeprefix("REVIEW_").lower(): v
    for v in inspector_pb2.ReviewState.values()
    if v
}
"""pending, confirmed (the review queue's states)."""


def to_name(table: Mapping[str, int], value: int, field: str) -> str:
    """An enum value -> its name ("" for 0, unspecified); INVALID_ARGUMENT naming `field` for a value it lacks."""
    if value == 0:
        return ""
    for name, v in table.items():
        if v == value:
            return name
    raise InvalidArgument(f"{value} is not one of {dict(table)}", field=field)


def to_enum(table: Mapping[str, int], name: str | None, field: str) -> int:
    """A name -> its enum value (0 for "" or None); INVALID_ARGUMENT naming `field` for a name it lacks."""
    if not name:
        return 0
    if name not in table:
        raise InvalidArgument(f"{name!r} is not one of {', '.join(table)}", field=field)
    return table[name]
