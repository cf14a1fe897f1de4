"""The one answer parser: reading answers as MMAD does, with a text fallback, and never guessing."""

from __future__ import annotations

import pytest

from services.common.answers import match_option, parse_letter, parse_letter_mmad, parse_yes_no, read_letter

YN = {"A": "Yes.", "B": "No."}
TYPES = {"A": "Scratch.", "B": "Crack.", "C": "Hole.", "D": "Contamination."}
FIVE_PLUS = {**TYPES, "E": "Dent.", "F": "Fold."}


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ("A", "A"),
        ("B.", "B"),
        ("The answer is C.", "C"),
        ("(D) Contamination", "D"),
        ("I think B", "B"),  # 'I' is a capital letter but not an option
        ("E", ""),  # not an option here
        ("a scratch", "A"),  # lower-case 'a' is no letter; the option text 'scratch' is stated
        ("There is a crack near the rim.", "B"),
        ("Scratch or crack, hard to say", ""),  # two options stated: ambiguous, no guess
        ("", ""),
        ("something else entirely", ""),
    ],
)
def test_parse_letter(reply: str, expected: str) -> None:
    assert parse_letter(reply, TYPES) == expected


@pytest.mark.parametrize(
    ("reply", "options", "expected"),
    [
        ("B", TYPES, "B"),
        ("(C) Hole.", TYPES, "C"),
        ("The answer is D.", TYPES, "D"),
        ("E", TYPES, ""),  # a letter that is not an option
        ("E, or rather B", TYPES, "B"),  # the first letter that IS an option
        ("hole", TYPES, "C"),  # option-text fallback
        ("I think it is a crack on the rim", TYPES, "B"),
        ("yes", YN, "A"),
        ("no defect here", YN, "B"),
        ("yes or no", YN, ""),  # two options match: ambiguous
        ("", TYPES, ""),
        ("I cannot tell.", TYPES, ""),
        ("a b c", TYPES, ""),  # lower-case letters are not MMAD answers
        ("F", FIVE_PLUS, "F"),  # a sixth option's letter is read like the first five
    ],
)
def test_read_letter_takes_the_first_option_letter_then_one_stated_option_text(
    reply: str, options: dict[str, str], expected: str
) -> None:
    assert read_letter(reply, options) == expected


def test_yes_no_options_match_by_text_when_no_letter_is_given() -> None:
    assert parse_letter("Yes", YN) == "A"
    assert parse_letter("no.", YN) == "B"
    assert parse_letter("yes and no", YN) == ""


@pytest.mark.parametrize(
    ("reply", "expected"),
    [("Yes", True), ("No.", False), ("yes, it is", True), ("TRUE", True), ("maybe", None), ("yes no", None)],
)
def test_parse_yes_no(reply: str, expected: bool | None) -> None:
    assert parse_yes_no(reply) is expected


def test_open_answer_maps_to_the_closest_option_or_nothing() -> None:
    options = {
        "A": "A long scratch across the surface.",
        "B": "A crack at the edge.",
        "C": "A missing piece.",
    }
    assert match_option("there is a crack at the edge", options)[0] == "B"
    assert match_option("scratch on the surface", options)[0] == "A"
    assert match_option("purple elephant", options) == ("", 0.0)
    assert match_option("", options) == ("", 0.0)
    assert match_option("a", {"A": "A dent.", "B": "A bump."}) == ("", 0.0)  # a tie is not broken by chance


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ("A", "A"),
        ("Answer: B.", "B"),
        ("A is wrong, the answer is C", "C"),  # MMAD keeps the LAST A-E match (gpt_answer[-1])
        ("E", "E"),  # MMAD does not check the letter against the options; the caller counts it as wrong
        ("crack", "B"),  # no letter: difflib picks the option text closest to the whole reply
        ("contaminated", "D"),
    ],
)
def test_mmad_parser_takes_the_last_letter_then_the_closest_option(reply: str, expected: str) -> None:
    assert parse_letter_mmad(reply, TYPES) == expected


def test_a_free_reply_naming_no_option_is_unparsed_not_a_letter() -> None:
    assert parse_letter_mmad("E", TYPES) == "E"
    assert read_letter("E", TYPES, free=True) == ""
    assert read_letter("A is wrong, the answer is C", TYPES, free=True) == "C"
    assert read_letter("A is wrong, the answer is C", TYPES) == "A"
