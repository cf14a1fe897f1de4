"""One mapping between the contract's enums and names: complete, MMAD's type names, clear errors."""

from __future__ import annotations

import pytest

from echo.v1 import common_pb2
from services.common import enums
from services.common.enums import QUESTION_TYPE_ENUM, REFERENCE_MODE_ENUM, to_enum, to_name
from services.common.errors import InvalidArgument
from services.mmad.types import QUESTION_TYPES


def test_question_type_names_are_mmads_in_the_contracts_order() -> None:
    assert tuple(QUESTION_TYPE_ENUM) == QUESTION_TYPES


@pytest.mark.parametrize(
    ("table", "enum"),
    [
        (enums.QUESTION_TYPE_ENUM, common_pb2.QuestionType),
        (enums.REFERENCE_MODE_ENUM, common_pb2.ReferenceMode),
        (enums.KNOWLEDGE_MODE_ENUM, common_pb2.KnowledgeMode),
        (enums.ANSWER_FORMAT_ENUM, common_pb2.AnswerFormat),
    ],
)
def test_every_value_of_the_contract_has_one_name_and_back(table: dict[str, int], enum: object) -> None:
    assert sorted(table.values()) == sorted(v for v in enum.values() if v)  # type: ignore[attr-defined]
    for name, value in table.items():
        assert to_name(table, value, "f") == name and to_enum(table, name, "f") == value
    assert to_name(table, 0, "f") == "" and to_enum(table, "", "f") == 0


def test_unknown_values_and_names_are_invalid_argument_naming_the_field() -> None:
    with pytest.raises(InvalidArgument, match=r"^settings\.reference_mode: 42 is not one of"):
        to_name(REFERENCE_MODE_ENUM, 42, "settings.reference_mode")
    with pytest.raises(InvalidArgument, match=r"^knowledge_mode: 'dkk' is not one of none, dk, csk"):
        to_enum(enums.KNOWLEDGE_MODE_ENUM, "dkk", "knowledge_mode")
