"""Input validation for the Inspector, on plain values: every failure names the field (INVALID_ARGUMENT)."""

from __future__ import annotations

import re

from services.common.errors import InvalidArgument
from services.gateway.limits import DoorLimits

_LETTER = re.compile(r"^[A-E]$")


def check_question(text: str, options: dict[str, str], limits: DoorLimits, field: str = "question") -> None:
    if not text.strip():
        raise InvalidArgument("is empty", field=f"{field}.text")
    limits.question_chars.check(len(text), field=f"{field}.text", what=" characters")
    limits.options.check(len(options), field=f"{field}.options", what=" options")
    for letter, option in options.items():
        if not _LETTER.match(letter):
            raise InvalidArgument(f"key {letter!r} must be one letter A to E", field=f"{field}.options")
        if not option.strip():
            raise InvalidArgument("is empty", field=f"{field}.options[{letter}]")
        limits.option_chars.check(len(option), field=f"{field}.options[{letter}]", what=" characters")


def check_settings(deadline_ms: float, k_shots: int, limits: DoorLimits) -> None:
    """The request's numbers: NaN, infinities, negatives and values past what a later stage accepts."""
    limits.deadline_ms.check(deadline_ms)
    limits.k_shots.check(k_shots)


def check_references(count: int, limits: DoorLimits) -> None:
    """How many references the caller sent, checked before any is read or decoded."""
    limits.references.check(count, what=" images")


MAX_REQUEST_ID_CHARS = 128


def check_request_id(value: str, field: str = "request_id") -> str:
    """A request id names the audit record: printable, at most MAX_REQUEST_ID_CHARS characters."""
    if not value:
        raise InvalidArgument("is required", field=field)
    if len(value) > MAX_REQUEST_ID_CHARS or not value.isprintable():
        raise InvalidArgument(
            f"{value[:40]!r} is not a request id (printable, at most {MAX_REQUEST_ID_CHARS} characters)", field=field
        )
    return value
