"""The knowledge stage over real gRPC: GetContext in each mode, PutEntry, ListEntries, errors, health, degraded."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from echo.v1 import common_pb2, knowledge_pb2, knowledge_pb2_grpc
from services.common.errors import ConfigError
from services.common.serving import start_server
from services.config import load_settings
from services.knowledge.server import SERVICE_NAME, build_stage
from services.knowledge.servicer import DEGRADED_METADATA_KEY, entry_to_proto

Q_DC = "There is a defect in the object. What is the type of the defect?"


async def _serve(settings) -> AsyncIterator[tuple[knowledge_pb2_grpc.KnowledgeStub, grpc.aio.Channel, object]]:
    stage = await build_stage(settings.knowledge)
    server, port, _ = await start_server([stage], "127.0.0.1", 0)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield knowledge_pb2_grpc.KnowledgeStub(channel), channel, stage
    finally:
        await channel.close()
        await server.stop(None)
        stage.servicer.guide.close()


@pytest.fixture
async def stub(kb_dir: Path, tmp_path: Path, embedder):
    settings = load_settings(data_dir=str(tmp_path), knowledge={"dir": str(kb_dir)})
    async for s, channel, _ in _serve(settings):
        yield s, channel


def _request(**kw) -> knowledge_pb2.GetContextRequest:
    question = common_pb2.Question(
        text=Q_DC, options={"A": "Scratch", "B": "Crack", "C": "Hole"}, type=common_pb2.DEFECT_CLASSIFICATION
    )
    base = {"dataset": "Synthetic", "category": "round_part", "question": question}
    return knowledge_pb2.GetContextRequest(**{**base, **kw})


async def test_get_context_in_each_mode(stub) -> None:
    s, _ = stub
    csk = await s.GetContext(_request(mode=common_pb2.CONTEXT_SPECIFIC))
    dk = await s.GetContext(_request(mode=common_pb2.DOMAIN_KNOWLEDGE))
    default = await s.GetContext(_request())
    none = await s.GetContext(_request(mode=common_pb2.KNOWLEDGE_NONE))
    assert csk.entry_ids == ["Synthetic/round_part"] and csk.model_id == "all-MiniLM-L6-v2"
    assert {p.id.split("#")[1].split(".")[0] for p in csk.passages} == {"scratch", "crack", "hole"}
    assert all(p.text in csk.text for p in csk.passages)
    assert len(csk.text) < len(dk.text) / 2 and dk.version == csk.version == 1
    assert default.text == csk.text  # CSK is the configured default
    assert none.text == "" and not none.passages


async def test_token_budget_of_the_request_applies(stub) -> None:
    s, _ = stub
    small = await s.GetContext(_request(token_budget=40))
    large = await s.GetContext(_request(token_budget=400))
    assert len(small.text) < len(large.text)


async def test_unknown_category_is_not_found_listing_the_closest_names(stub) -> None:
    s, _ = stub
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await s.GetContext(_request(category="woven_fabrik"))
    assert e.value.code() == grpc.StatusCode.NOT_FOUND
    assert "closest: Synthetic/woven_fabric" in e.value.details()


@pytest.mark.parametrize(
    ("request_kw", "field"),
    [
        ({"category": ""}, "category"),
        ({"token_budget": -1}, "token_budget"),
        ({"token_budget": 1_000_000}, "token_budget"),
        ({"mode": 9}, "mode"),
        ({"question": common_pb2.Question(text="", options={"A": "x"})}, "question.text"),
        ({"question": common_pb2.Question(text="Which?", options={"A": " "})}, "question.options[A]"),
        ({"question": common_pb2.Question(text="Which?", type=42)}, "question.type"),
    ],
)
async def test_bad_requests_are_invalid_argument_naming_the_field(stub, request_kw, field: str) -> None:
    s, _ = stub
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await s.GetContext(_request(**request_kw))
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert e.value.details().startswith(f"{field}:")


async def test_put_entry_updates_and_list_entries_shows_it(stub, kb_dir: Path) -> None:
    s, _ = stub
    listed = await s.ListEntries(knowledge_pb2.ListEntriesRequest(dataset="Synthetic"))
    assert [e.id for e in listed.entries] == ["Synthetic/round_part", "Synthetic/woven_fabric"]
    entry = listed.entries[0]
    entry.defects[0].signature = "A thin line scratched into the metal (updated)."
    reply = await s.PutEntry(knowledge_pb2.PutEntryRequest(entry=entry))
    assert reply.id == "Synthetic/round_part" and reply.version == 2
    got = await s.GetContext(_request(mode=common_pb2.DOMAIN_KNOWLEDGE))
    assert "(updated)" in got.text and got.version == 2
    assert "display_name: Round part" in (kb_dir / "Synthetic" / "round_part.yaml").read_text()  # kept


async def test_put_entry_validates_every_field(stub) -> None:
    s, _ = stub
    listed = await s.ListEntries(knowledge_pb2.ListEntriesRequest(dataset="MVTec"))
    entry = listed.entries[0]
    entry.defects[1].cause = ""
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await s.PutEntry(knowledge_pb2.PutEntryRequest(entry=entry))
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert e.value.details() == "entry.defects[1].cause: is empty"
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await s.PutEntry(knowledge_pb2.PutEntryRequest())
    assert e.value.details() == "entry: is required"


async def test_health_is_serving_after_a_real_request(stub) -> None:
    _, channel = stub
    health = health_pb2_grpc.HealthStub(channel)
    reply = await health.Check(health_pb2.HealthCheckRequest(service=SERVICE_NAME))
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


async def test_redis_unreachable_serves_the_files_and_says_degraded(kb_dir: Path, tmp_path: Path, unused_redis_url):
    settings = load_settings(
        data_dir=str(tmp_path), knowledge={"dir": str(kb_dir), "store": "redis", "redis_url": unused_redis_url}
    )
    async for s, channel, stage in _serve(settings):
        call = s.GetContext(_request())
        reply = await call
        assert reply.entry_ids == ["Synthetic/round_part"]
        trailing = dict(await call.trailing_metadata())
        assert "redis unreachable" in trailing[DEGRADED_METADATA_KEY]
        health = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=SERVICE_NAME))
        assert health.status == health_pb2.HealthCheckResponse.SERVING  # degraded, not failing
        assert stage.servicer.degraded() and "redis unreachable" in stage.servicer.degraded()[0]


async def test_redis_store_through_the_stage(kb_dir: Path, tmp_path: Path, redis_server) -> None:
    settings = load_settings(
        data_dir=str(tmp_path), knowledge={"dir": str(kb_dir), "store": "redis", "redis_url": redis_server.url}
    )
    async for s, _, stage in _serve(settings):
        listed = await s.ListEntries(knowledge_pb2.ListEntriesRequest())
        assert len(listed.entries) == 3  # seeded
        entry = next(e for e in listed.entries if e.id == "MVTec/bottle")
        entry.normal = "An amber bottle seen from above."
        reply = await s.PutEntry(knowledge_pb2.PutEntryRequest(entry=entry))
        assert reply.version == 4
        dk = await s.GetContext(_request(dataset="MVTec", category="bottle", mode=common_pb2.DOMAIN_KNOWLEDGE))
        assert "An amber bottle" in dk.text and dk.version == 4
        assert not stage.servicer.degraded()


async def test_a_malformed_knowledge_file_fails_the_stage_start(kb_dir: Path, tmp_path: Path) -> None:
    path = kb_dir / "MVTec" / "bottle.yaml"
    path.write_text(path.read_text().replace("    tolerance: Any chip rejects the bottle.\n", ""))
    settings = load_settings(data_dir=str(tmp_path), knowledge={"dir": str(kb_dir)})
    with pytest.raises(ConfigError, match=r"bottle.yaml: defects.broken_small.tolerance: is required"):
        await build_stage(settings.knowledge)


def test_entry_proto_carries_every_field(kb_dir: Path) -> None:
    from services.knowledge.entries import entry_from_fields, load_dir
    from services.knowledge.servicer import fields_from_proto

    entry = load_dir(kb_dir)["MVTec/bottle"].with_version(7)
    msg = entry_to_proto(entry)
    assert msg.id == "MVTec/bottle" and msg.version == 7 and len(msg.defects) == 3
    assert entry_from_fields(fields_from_proto(msg), existing=entry) == entry.with_version(0)
