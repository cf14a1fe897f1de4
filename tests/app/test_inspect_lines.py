"""`echo-iad inspect`'s text output: a Defect Classification answer shows the product's confirmed defects' vote."""

from __future__ import annotations

from app.commands.inspector import verdict_lines
from echo.v1 import common_pb2


def test_the_defect_library_vote_is_a_line_of_its_own() -> None:
    vote = "nearest confirmed defects of this product (6 in its library): crack 0.70 (distance 0.4)"
    trace = common_pb2.Trace(
        verdict_source="evidence (decision.backend evidence)",
        evidence=common_pb2.TraceEvidence(score=3.0, threshold=1.0, anomalous=True, defect_type="crack",
                                          defect_summary=vote),
    )  # fmt: skip
    lines = verdict_lines(trace)
    assert f"defects       {vote}" in lines and lines[0].startswith("verdict from  evidence")
    plain = verdict_lines(common_pb2.Trace(evidence=common_pb2.TraceEvidence(score=0.5, threshold=1.0)))
    assert not any(line.startswith("defects") for line in plain)
