"""The retrieval stage over a real socket: every RPC, the statuses for bad input, refusing a wrong-size memory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from echo.v1 import common_pb2, retrieval_pb2, retrieval_pb2_grpc
from services.common.errors import ConfigError
from services.common.images import sha256_hex
from services.common.serving import channel_options, start_server
from services.config import load_settings
from services.embedding.config import EmbeddingSettings
from services.embedding.core import ClipEncoder
from services.retrieval.config import RetrievalSettings
from services.retrieval.server import SERVICE_NAME, build_stage

DATASET = "Synthetic"


def _sections(engine: str, root: Path, **retrieval: Any) -> tuple[RetrievalSettings, EmbeddingSettings]:
    """The retrieval stage's own section and the embedding model's (whose vector size the memory holds)."""
    settings = load_settings(
        None,
        data_dir=str(root),
        embedding={"device": "cpu", "image_encoder": "clip"},  # the tiny CLIP, as the encoder fixture
        retrieval={"engine": engine, "url": str(root / "qdrant-local"), **retrieval},
    )
    return settings.retrieval, settings.embedding


@pytest.fixture
async def stub(engine: str, tmp_path: Path) -> AsyncIterator[retrieval_pb2_grpc.RetrievalStub]:
    stage = await build_stage(*_sections(engine, tmp_path))
    server, port, _ = await start_server([stage], "127.0.0.1", 0)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=channel_options()) as ch:
        health = await health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(service=SERVICE_NAME))
        assert health.status == health_pb2.HealthCheckResponse.SERVING
        yield retrieval_pb2_grpc.RetrievalStub(ch)
    await server.stop(0)
    stage.servicer.memory.close()


def _point(scene: Any, vector: np.ndarray, line: str = "line-1") -> retrieval_pb2.MemoryPoint:
    sha = sha256_hex(scene.normal)
    return retrieval_pb2.MemoryPoint(
        vector=vector.tolist(), uri=f"/refs/{sha}.png", sha256=sha, label="good", line_id=line,
        dataset=DATASET, category=scene.category,
    )  # fmt: skip


async def test_upsert_search_stats_infer_and_delete_over_grpc(
    stub: retrieval_pb2_grpc.RetrievalStub, scenes: list[Any], encoder: ClipEncoder
) -> None:
    normals = encoder.embed_batch([s.normal for s in scenes])
    up = await stub.Upsert(
        retrieval_pb2.UpsertRequest(points=[_point(s, v) for s, v in zip(scenes, normals, strict=True)])
    )
    assert (up.added, up.existing, len(up.ids)) == (len(scenes), 0, len(scenes))
    again = await stub.Upsert(retrieval_pb2.UpsertRequest(points=[_point(scenes[0], normals[0])]))
    assert (again.added, again.existing, again.ids[0]) == (0, 1, up.ids[0])

    target = scenes[3]
    q = encoder.embed_batch([target.defective])[0].tolist()
    base = {"vector": q, "line_id": "line-1", "dataset": DATASET, "category": target.category}
    best = await stub.Search(retrieval_pb2.SearchRequest(**base))  # mode unset: 1-shot*, k 1
    assert [h.sha256 for h in best.hits] == [sha256_hex(target.normal)] and best.hits[0].score > 0.5
    k_shot = await stub.Search(retrieval_pb2.SearchRequest(**base, mode=common_pb2.K_SHOT, k=3))
    assert len(k_shot.hits) == 3 and {h.category for h in k_shot.hits} == {target.category}
    assert [h.uri for h in k_shot.hits] == [f"sha256:{h.sha256}" for h in k_shot.hits]  # never the stored path
    rand = [
        await stub.Search(retrieval_pb2.SearchRequest(**base, mode=common_pb2.ONE_SHOT_RANDOM, seed=s)) for s in (7, 7)
    ]
    assert rand[0].hits[0].id == rand[1].hits[0].id and rand[0].hits[0].category == target.category
    assert not (await stub.Search(retrieval_pb2.SearchRequest(**base, mode=common_pb2.ZERO_SHOT))).hits

    stats = await stub.Stats(retrieval_pb2.StatsRequest(line_id="line-1", list_limit=5))
    assert stats.total == len(scenes) and stats.dim == encoder.dim and stats.engine.startswith("qdrant")
    assert {c.category: c.count for c in stats.counts} == {s.category: 6 for s in scenes}
    seen = [p.id for p in stats.points]
    assert stats.points and all(p.uri == f"sha256:{p.sha256}" for p in stats.points)
    while stats.next_page_token:
        stats = await stub.Stats(
            retrieval_pb2.StatsRequest(line_id="line-1", list_limit=5, page_token=stats.next_page_token)
        )
        seen += [p.id for p in stats.points]
    assert sorted(seen) == sorted(up.ids)

    guess = await stub.InferCategory(retrieval_pb2.InferCategoryRequest(vector=q, line_id="line-1", k=5))
    assert (guess.category, guess.dataset) == (target.category, DATASET) and guess.confidence > 0.5

    deleted = await stub.Delete(
        retrieval_pb2.DeleteRequest(line_id="line-1", dataset=DATASET, category=target.category)
    )
    assert deleted.deleted == 6
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await stub.Search(retrieval_pb2.SearchRequest(**base))
    assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert f"line 'line-1', dataset 'Synthetic', category '{target.category}' is empty" in e.value.details()


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        (retrieval_pb2.SearchRequest(vector=[1.0, 0.0], line_id="l"), "vector: has 2 values, but this memory holds 64"),
        (retrieval_pb2.SearchRequest(line_id="l"), "vector: is empty"),
        (retrieval_pb2.SearchRequest(vector=[1.0] * 64, line_id="l", k=1000), "k: is 1000"),
        (retrieval_pb2.UpsertRequest(), "points: is empty"),
        (retrieval_pb2.DeleteRequest(), "line_id: is empty"),
        (retrieval_pb2.StatsRequest(list_limit=5, page_token="nonsense"), "page_token: 'nonsense' is not a page token"),
    ],
)
async def test_bad_requests_are_invalid_argument_naming_the_field(
    stub: retrieval_pb2_grpc.RetrievalStub, request_: Any, message: str
) -> None:
    method = {
        retrieval_pb2.SearchRequest: stub.Search,
        retrieval_pb2.UpsertRequest: stub.Upsert,
        retrieval_pb2.DeleteRequest: stub.Delete,
        retrieval_pb2.StatsRequest: stub.Stats,
    }[type(request_)]
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await method(request_)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in e.value.details()


async def test_the_stage_refuses_to_start_on_a_memory_of_another_size(engine: str, tmp_path: Path) -> None:
    stage = await build_stage(*_sections(engine, tmp_path))  # creates the 64-d collection (the tiny model's size)
    stage.servicer.memory.close()
    with pytest.raises(ConfigError, match="has dim 64 but the embedding model gives 512"):
        await build_stage(*_sections(engine, tmp_path, dim=512))
