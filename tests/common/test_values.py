"""One box and one product count for every stage, each field for field its echo.v1 message."""

from __future__ import annotations

import dataclasses

from echo.v1 import common_pb2, retrieval_pb2
from services.common.values import Box, ProductCount


def _fields(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def test_a_box_is_its_proto_message_field_for_field_both_ways() -> None:
    assert _fields(Box) == [f.name for f in common_pb2.EvidenceBox.DESCRIPTOR.fields]
    box = Box(1, 2, 30, 40, 0.75, "top left", 0.02, True)
    wire = common_pb2.EvidenceBox(**vars(box))
    assert Box(**{name: getattr(wire, name) for name in _fields(Box)}) == dataclasses.replace(
        box, score=wire.score, area=wire.area
    )  # float32 on the wire


def test_a_product_count_is_its_proto_message_field_for_field() -> None:
    assert _fields(ProductCount) == [f.name for f in retrieval_pb2.CategoryCount.DESCRIPTOR.fields]
    count = ProductCount("line-a", "MVTec-AD", "bottle", 12)
    assert ProductCount(**{n: getattr(retrieval_pb2.CategoryCount(**vars(count)), n) for n in _fields(count)}) == count
