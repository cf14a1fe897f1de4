"""The feedback benchmark's data: the fresh parts it reports on are never in the stream or the bank."""

from __future__ import annotations

import pytest

from loadtests.bench.feedback import foreign_product, generator_product
from services.common.images import sha256_hex


@pytest.mark.parametrize(
    "make", [lambda: generator_product("screw", 3, 6, 4, 3), lambda: foreign_product("brick", 3, 6, 4, 3)]
)
def test_fresh_parts_are_disjoint_from_the_stream_and_the_bank(make) -> None:  # type: ignore[no-untyped-def]
    p = make()
    fresh = {sha256_hex(x.image) for x in p.fresh}
    seen = {sha256_hex(x.image) for x in p.stream} | {sha256_hex(b) for b in p.bank}
    assert len(fresh) == len(p.fresh) == 7 and not fresh & seen
    assert sum(not x.defect for x in p.fresh) == 4 and sum(bool(x.defect) for x in p.stream) == 3
    for x in p.stream + p.fresh:  # every defect carries the box an operator would draw around it
        assert (x.box is None) == (not x.defect)
        assert x.box is None or (x.box.x1 > x.box.x0 and x.box.y1 > x.box.y0)
