"""Input validation for the Inspector, on plain values: every failure names the field (INVALID_ARGUMENT)."""

from __future__ import annotations

import re

from services.common.errors import InvalidArgument

_LETTER = re.compile(r"^[A-E]$")
MAX_QUESTION_CHARS = 4000
MAX_OPTION_CHARS = 1000
MAX_K_SHOTS = 8


def check_question(text: str, options: dict[str, str], field: str = "question") -> None:
    if not text.strip():
        raise InvalidArgument("is empty", field=f"{field}.text")
    if len(text) > MAX_QUESTION_CHARS:
        raise InvalidArgument(f"has {len(text)} characters, over {MAX_QUESTION_CHARS}", field=f"{field}.text")
    if len(options) < 2:
        raise InvalidArgument(f"needs at least 2 options, got {len(options)}", field=f"{field}.options")
    for letter, option in options.items():
        if not _LETTER.match(letter):
            raise InvalidArgument(f"key {letter!r} must be one letter A to E", field=f"{field}.options")
        if not option.strip():
            raise InvalidArgument("is empty", field=f"{field}.options[{letter}]")
        if len(option) > MAX_OPTION_CHARS:
            raise InvalidArgument(f"is over {MAX_OPTION_CHARS} characters", field=f"{field}.options[{letter}]")


def check_settings(deadline_ms: float, k_shots: int, field: str = "settings") -> None:
    if deadline_ms < 0:
        raise InvalidArgument(f"must be >= 0, got {deadline_ms}", field=f"{field}.deadline_ms")
    if not 0 <= k_shots <= MAX_K_SHOTS:
        raise InvalidArgument(f"must be between 0 and {MAX_K_SHOTS}, got {k_shots}", field=f"{field}.k_shots")


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
