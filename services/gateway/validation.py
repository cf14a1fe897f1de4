"""Input validation for the Inspector: every failure names the field (INVALID_ARGUMENT)."""

from __future__ import annotations

import re

from echo.v1 import common_pb2
from services.common.errors import InvalidArgument

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}$")
_LETTER = re.compile(r"^[A-E]$")
MAX_QUESTION_CHARS = 4000
MAX_OPTION_CHARS = 1000
MAX_K_SHOTS = 8


def check_name(value: str, field: str, *, required: bool) -> str:
    if not value:
        if required:
            raise InvalidArgument("is required", field=field)
        return value
    if not _NAME.match(value):
        raise InvalidArgument(
            f"{value[:40]!r} is not a valid name (letters, digits and . _ : / -, at most 128 chars)", field=field
        )
    return value


def check_question(q: common_pb2.Question, field: str = "question") -> None:
    if not q.text.strip():
        raise InvalidArgument("is empty", field=f"{field}.text")
    if len(q.text) > MAX_QUESTION_CHARS:
        raise InvalidArgument(f"has {len(q.text)} characters, over {MAX_QUESTION_CHARS}", field=f"{field}.text")
    if len(q.options) < 2:
        raise InvalidArgument(f"needs at least 2 options, got {len(q.options)}", field=f"{field}.options")
    for letter, text in q.options.items():
        if not _LETTER.match(letter):
            raise InvalidArgument(f"key {letter!r} must be one letter A to E", field=f"{field}.options")
        if not text.strip():
            raise InvalidArgument("is empty", field=f"{field}.options[{letter}]")
        if len(text) > MAX_OPTION_CHARS:
            raise InvalidArgument(f"is over {MAX_OPTION_CHARS} characters", field=f"{field}.options[{letter}]")
    if q.type not in common_pb2.QuestionType.values():
        raise InvalidArgument(f"{q.type} is not a known QuestionType", field=f"{field}.type")


def check_settings(s: common_pb2.RequestSettings, field: str = "settings") -> None:
    enums = [
        ("reference_mode", common_pb2.ReferenceMode, s.reference_mode),
        ("answer_format", common_pb2.AnswerFormat, s.answer_format),
        ("knowledge_mode", common_pb2.KnowledgeMode, s.knowledge_mode),
    ]
    for name, enum, value in enums:
        if value not in enum.values():
            raise InvalidArgument(f"{value} is not a known {enum.DESCRIPTOR.name}", field=f"{field}.{name}")
    if s.deadline_ms < 0:
        raise InvalidArgument(f"must be >= 0, got {s.deadline_ms}", field=f"{field}.deadline_ms")
    if not 0 <= s.k_shots <= MAX_K_SHOTS:
        raise InvalidArgument(f"must be between 0 and {MAX_K_SHOTS}, got {s.k_shots}", field=f"{field}.k_shots")
