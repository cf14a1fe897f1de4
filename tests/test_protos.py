"""The committed stubs are exactly what grpcio-tools generates from protos/."""

from __future__ import annotations

import importlib.util
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PROTO_ROOT = REPO / "protos"


def _load_generator():
    spec = importlib.util.spec_from_file_location("gen_protos", REPO / "scripts" / "gen_protos.py")
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


def test_the_stub_generator_is_the_locked_grpcio_tools() -> None:
    from importlib.metadata import version

    locked = next(
        line.split("==")[1].split()[0]
        for line in (REPO / "requirements" / "lock.txt").read_text().splitlines()
        if line.startswith("grpcio-tools==")
    )
    assert version("grpcio-tools") == locked, (
        f"grpcio-tools {version('grpcio-tools')} is installed, the lock says {locked}: "
        "install from the lock (`pip install -c requirements/lock.txt -e '.[dev]'`)"
    )


def test_committed_stubs_match_a_fresh_generation(tmp_path: Path) -> None:
    fresh = _load_generator().generate(tmp_path)
    assert fresh, "protoc generated nothing"
    for path in fresh:
        rel = path.relative_to(tmp_path)
        committed = PROTO_ROOT / rel
        assert committed.exists(), f"{rel} is generated but not committed: run `python scripts/gen_protos.py`"
        assert committed.read_bytes() == path.read_bytes(), f"{rel} is stale: run `python scripts/gen_protos.py`"
    committed_stubs = {p.relative_to(PROTO_ROOT) for p in PROTO_ROOT.rglob("*_pb2*.py*")}
    assert committed_stubs == {p.relative_to(tmp_path) for p in fresh}, "committed stubs without a .proto"


def test_every_service_in_the_contracts_is_importable() -> None:
    from echo.v1 import (
        decision_pb2_grpc,
        embedding_pb2_grpc,
        inspector_pb2_grpc,
        knowledge_pb2_grpc,
        retrieval_pb2_grpc,
    )

    for module, service in [
        (inspector_pb2_grpc, "Inspector"),
        (embedding_pb2_grpc, "Embedding"),
        (retrieval_pb2_grpc, "Retrieval"),
        (knowledge_pb2_grpc, "Knowledge"),
        (decision_pb2_grpc, "Decision"),
    ]:
        assert hasattr(module, f"{service}Servicer") and hasattr(module, f"{service}Stub")


def test_requests_carry_the_agreed_fields() -> None:
    from echo.v1 import common_pb2, inspector_pb2

    req = inspector_pb2.InspectRequest(
        line_id="line-1",
        image=common_pb2.Image(uri="file:///x.png"),
        question=common_pb2.Question(text="Is there any defect in the object?", options={"A": "Yes.", "B": "No."}),
        category="bottle",
        settings=common_pb2.RequestSettings(
            experts=common_pb2.ExpertSwitches(reference=False),
            reference_mode=common_pb2.ONE_SHOT_SIMILAR,
            answer_format=common_pb2.MULTIPLE_CHOICE,
            knowledge_mode=common_pb2.CONTEXT_SPECIFIC,
            deadline_ms=500,
        ),
    )
    back = inspector_pb2.InspectRequest.FromString(req.SerializeToString())
    assert back.settings.experts.HasField("reference") and not back.settings.experts.reference
    assert not back.settings.experts.HasField("knowledge")  # unset: the planner decides
    assert back.image.WhichOneof("source") == "uri"
    assert dict(back.question.options) == {"A": "Yes.", "B": "No."}
