"""What the stores ask of their engines: payload indexes on every filter key, the memory key as the tenant, and a
search within one memory that excludes the query image exactly, on both engines."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import qdrant_edge as qe
from qdrant_client import QdrantClient, models

from services.common.errors import FailedPrecondition
from services.retrieval.config import RetrievalSettings
from services.retrieval.core import Memory
from services.retrieval.store import EdgeStore, MemoryPoint, QdrantServerStore, open_store

DIM = 32
DATASET = "Synthetic"


def _sha(i: int) -> str:
    return hashlib.sha256(f"image-{i}".encode()).hexdigest()


def _points(n: int, category: str, seed: int, line: str = "line-1") -> list[MemoryPoint]:
    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((n, DIM)).astype(np.float32)
    return [
        MemoryPoint("", v, f"/refs/{category}/{i}.png", _sha(seed * 1000 + i), "good", line, DATASET, category)
        for i, v in enumerate(vectors)
    ]


def test_a_new_edge_memory_indexes_every_filter_key_and_the_memory_as_its_tenant(
    tmp_path: Path, retrieval_settings: Callable[..., RetrievalSettings]
) -> None:
    store = open_store(retrieval_settings("edge", tmp_path), DIM)
    assert isinstance(store, EdgeStore)
    schema = store.shard.info().payload_schema
    assert set(schema) == {"line_id", "dataset", "category", "sha256", "memory"}
    assert all(info.data_type == qe.PayloadSchemaType.Keyword for info in schema.values())
    assert schema["memory"].params.is_tenant is True
    for key in ("line_id", "dataset", "category", "sha256"):  # filters and counts only: no HNSW links of their own
        assert schema[key].params.enable_hnsw is False and not schema[key].params.is_tenant
    store.close()


def test_an_edge_memory_made_before_the_tenant_index_gets_it_on_open(
    tmp_path: Path, retrieval_settings: Callable[..., RetrievalSettings]
) -> None:
    s = retrieval_settings("edge", tmp_path)
    store = open_store(s, DIM)
    assert isinstance(store, EdgeStore)
    Memory(store, s).upsert(_points(5, "screw", seed=1))
    store.shard.update(qe.UpdateOperation.create_field_index("memory", qe.PayloadSchemaType.Keyword))  # the old one
    assert not store.shard.info().payload_schema["memory"].params
    store.close()
    reopened = open_store(s, 0)
    assert isinstance(reopened, EdgeStore)
    assert reopened.shard.info().payload_schema["memory"].params.is_tenant is True
    assert Memory(reopened, s).stats().total == 5
    reopened.close()


class RecordingClient:
    """A real qdrant-client (local mode) that records the payload indexes asked of it: local mode keeps none."""

    def __init__(self) -> None:
        self.client = QdrantClient(location=":memory:")
        self.indexes: dict[str, Any] = {}

    def create_payload_index(self, collection: str, field_name: str, field_schema: Any, **kw: Any) -> Any:
        self.indexes[field_name] = field_schema
        return self.client.create_payload_index(collection, field_name, field_schema, **kw)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)


@pytest.mark.filterwarnings("ignore:Payload indexes have no effect", "ignore:Local mode performs exact")
def test_a_new_server_collection_asks_for_the_same_indexes() -> None:
    client = RecordingClient()
    settings = RetrievalSettings(engine="server", url="http://qdrant.example:6333")
    store = QdrantServerStore(settings, DIM, client=client)
    assert store.engine == "qdrant-server"
    assert set(client.indexes) == {"line_id", "dataset", "category", "sha256", "memory"}
    tenant = client.indexes["memory"]
    assert isinstance(tenant, models.KeywordIndexParams) and tenant.is_tenant is True
    for key in ("line_id", "dataset", "category", "sha256"):
        assert client.indexes[key].type == models.KeywordIndexType.KEYWORD and client.indexes[key].enable_hnsw is False
    memory = Memory(store, settings)  # and the collection serves the memory through that same client
    memory.upsert(_points(4, "screw", seed=2))
    q = _points(1, "screw", seed=2)[0].vector
    assert memory.search(q, "line-1", DATASET, "screw", k=1)[0].point.sha256 == _sha(2000)
    client.indexes.clear()
    QdrantServerStore(settings, DIM, client=client)  # reopened: asks again for what the server does not report
    assert client.indexes["memory"].is_tenant is True
    store.close()


@pytest.fixture
def small_memory(engine: str, tmp_path: Path, retrieval_settings: Callable[..., RetrievalSettings]) -> Any:
    s = retrieval_settings(engine, tmp_path)
    memory = Memory(open_store(s, DIM), s)
    yield memory
    memory.close()


def test_excluding_the_query_image_within_a_memory_returns_the_next_k(small_memory: Memory) -> None:
    screws = _points(8, "screw", seed=3)
    small_memory.upsert(screws + _points(8, "nut", seed=4))
    q = screws[5].vector
    hits = small_memory.search(q, "line-1", DATASET, "screw", k=3)
    assert hits[0].point.sha256 == _sha(3005)
    without = small_memory.search(q, "line-1", DATASET, "screw", k=3, exclude_sha256=_sha(3005))
    assert [h.point.id for h in without] == [
        h.point.id for h in small_memory.search(q, "line-1", DATASET, "screw", k=4)[1:]
    ]
    absent = small_memory.search(q, "line-1", DATASET, "screw", k=2, exclude_sha256=_sha(999))
    assert [h.point.id for h in absent] == [h.point.id for h in hits[:2]]


def test_an_image_given_twice_by_hand_is_still_excluded(small_memory: Memory) -> None:
    screws = _points(6, "screw", seed=5)
    twin = MemoryPoint("6f0c2d4e-0000-4000-8000-000000000001", screws[0].vector, "/refs/twin.png", screws[0].sha256,
                       "good", "line-1", DATASET, "screw")  # fmt: skip
    small_memory.upsert([*screws, twin])
    hits = small_memory.search(screws[0].vector, "line-1", DATASET, "screw", k=2, exclude_sha256=screws[0].sha256)
    assert len(hits) == 2 and screws[0].sha256 not in {h.point.sha256 for h in hits}


def test_a_memory_holding_only_the_query_image_says_so(small_memory: Memory) -> None:
    only = _points(1, "washer", seed=6)
    small_memory.upsert(only)
    with pytest.raises(FailedPrecondition, match="holds only the query image itself"):
        small_memory.search(only[0].vector, "line-1", DATASET, "washer", exclude_sha256=only[0].sha256)


@pytest.mark.parametrize("scale", [1e-30, 1.0, 1e30])
def test_query_vectors_of_any_scale_come_back_unit_length(small_memory: Memory, scale: float) -> None:
    v = small_memory.check_vector(np.full(DIM, scale))
    assert v.dtype == np.float32 and float(np.linalg.norm(v)) == pytest.approx(1.0, abs=1e-6)
