"""The memory of normal images, on both engines: the right references, isolated memories, idempotent, durable."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from services.common.errors import ConfigError, FailedPrecondition, InvalidArgument
from services.common.images import sha256_hex
from services.embedding.core import ClipEncoder
from services.retrieval.config import RetrievalSettings
from services.retrieval.core import Memory, category_prompt, point_id
from services.retrieval.store import EdgeStore, MemoryPoint, open_store

Scene = Any  # conftest.Scene: category, normal (PNG bytes), defective (PNG bytes), defect
DATASET = "Synthetic"


def _ingest(memory: Memory, scenes: list[Scene], line: str = "line-1") -> None:
    for category in sorted({s.category for s in scenes}):
        res = memory.add_images(line, DATASET, category, [s.normal for s in scenes if s.category == category])
        assert res.existing == 0


def test_a_defective_query_retrieves_its_own_undamaged_source_first(
    open_memory: Callable[..., Memory], scenes: list[Scene], encoder: ClipEncoder
) -> None:
    memory = open_memory()
    _ingest(memory, scenes)
    queries = encoder.embed_batch([s.defective for s in scenes])
    for scene, q in zip(scenes, queries, strict=True):
        for category in (scene.category, ""):  # 1-shot* within the category, and across the whole line
            top = memory.search(q, "line-1", DATASET, category, k=1)[0]
            assert top.point.sha256 == sha256_hex(scene.normal), f"{scene.category}/{scene.defect}"
            assert top.point.category == scene.category and top.point.label == "good"
            assert Path(top.point.uri).read_bytes() == scene.normal  # the pixels are in the image store


def test_edge_builds_the_hnsw_index_and_searches_through_it(
    tmp_path: Path, scenes: list[Scene], encoder: ClipEncoder, retrieval_settings: Callable[..., RetrievalSettings]
) -> None:
    s = retrieval_settings("edge", tmp_path, indexing_threshold_kb=1, full_scan_threshold_kb=1)
    store = open_store(s, encoder.dim)
    memory = Memory(store, s, None, None)
    vectors = encoder.embed_batch([sc.normal for sc in scenes])
    points = [
        MemoryPoint("", v, f"mem://{i}", sha256_hex(sc.normal), "good", "line-1", DATASET, sc.category)
        for i, (sc, v) in enumerate(zip(scenes, vectors, strict=True))
    ]
    assert memory.upsert(points).added == len(scenes)
    assert isinstance(store, EdgeStore) and store.shard.info().indexed_vectors_count == len(scenes)
    for sc, q in zip(scenes, encoder.embed_batch([sc.defective for sc in scenes]), strict=True):
        assert memory.search(q, "line-1", k=1)[0].point.sha256 == sha256_hex(sc.normal)
    memory.close()


def test_line_and_category_filters_isolate_memories(
    open_memory: Callable[..., Memory], scenes: list[Scene], encoder: ClipEncoder
) -> None:
    memory = open_memory()
    screws = [s for s in scenes if s.category == "screw"]
    boards = [s for s in scenes if s.category == "printed_board"]
    memory.add_images("line-a", DATASET, "screw", [s.normal for s in screws])
    memory.add_images("line-b", DATASET, "screw", [s.normal for s in screws[:2]])
    memory.add_images("line-b", DATASET, "printed_board", [s.normal for s in boards])
    q = encoder.embed_batch([screws[4].defective])[0]
    hits_b = memory.search(q, "line-b", DATASET, "screw", k=10)
    assert {h.point.line_id for h in hits_b} == {"line-b"} and len(hits_b) == 2
    assert {h.point.category for h in memory.search(q, "line-b", DATASET, "printed_board", k=10)} == {"printed_board"}
    assert memory.search(q, "line-a", DATASET, "screw", k=1)[0].point.sha256 == sha256_hex(screws[4].normal)
    with pytest.raises(FailedPrecondition, match="line 'line-a', dataset 'Synthetic', category 'printed_board'"):
        memory.search(q, "line-a", DATASET, "printed_board")
    counts = {(c.line_id, c.category): c.count for c in memory.stats().counts}
    assert counts == {
        ("line-a", "screw"): len(screws),
        ("line-b", "screw"): 2,
        ("line-b", "printed_board"): len(boards),
    }
    assert memory.stats(line_id="line-b").total == 2 + len(boards)


def test_reingesting_adds_nothing_and_embeds_nothing(
    open_memory: Callable[..., Memory], scenes: list[Scene], encoder: ClipEncoder
) -> None:
    memory = open_memory()
    images = [s.normal for s in scenes[:5]]
    first = memory.add_images("line-1", DATASET, "round_part", images)
    calls: list[int] = []
    memory.embed_images = lambda datas: (calls.append(len(datas)), encoder.embed_batch(datas))[1]
    again = memory.add_images("line-1", DATASET, "round_part", [*images, images[0]])
    assert (first.added, first.existing) == (5, 0)
    assert (again.added, again.existing) == (0, 6) and again.ids[:5] == first.ids
    assert calls == [] and memory.stats().total == 5
    assert first.ids[0] == point_id(sha256_hex(images[0]), "line-1", DATASET, "round_part")
    # The same image in another memory is another point.
    assert memory.add_images("line-2", DATASET, "round_part", images[:1]).added == 1


def test_memory_survives_a_restart(
    open_memory: Callable[..., Memory], scenes: list[Scene], encoder: ClipEncoder
) -> None:
    memory = open_memory()
    _ingest(memory, scenes)
    q = encoder.embed_batch([scenes[7].defective])[0]
    before = memory.search(q, "line-1", k=3)
    memory.close()
    reopened = open_memory()
    assert reopened.stats().total == len(scenes)
    after = reopened.search(q, "line-1", k=3)
    assert [h.point.id for h in after] == [h.point.id for h in before]
    assert reopened.add_images("line-1", DATASET, scenes[7].category, [scenes[7].normal]).added == 0


def test_random_reference_is_reproducible_per_seed_and_k_shot_returns_k(
    open_memory: Callable[..., Memory], scenes: list[Scene], encoder: ClipEncoder
) -> None:
    memory = open_memory()
    _ingest(memory, scenes)
    one = [memory.random("line-1", DATASET, "screw", k=1, seed=s)[0].point.id for s in range(12)]
    assert one == [memory.random("line-1", DATASET, "screw", k=1, seed=s)[0].point.id for s in range(12)]
    assert len(set(one)) > 2  # seeds pick different images
    three = memory.random("line-1", DATASET, "screw", k=3, seed=5)
    assert len({h.point.id for h in three}) == 3 and {h.point.category for h in three} == {"screw"}
    q = encoder.embed_batch([scenes[0].defective])[0]
    k_shot = memory.search(q, "line-1", DATASET, scenes[0].category, k=4)
    assert len(k_shot) == 4 and [h.score for h in k_shot] == sorted((h.score for h in k_shot), reverse=True)
    own = sha256_hex(scenes[0].normal)
    assert own not in {h.point.sha256 for h in memory.search(q, "line-1", k=4, exclude_sha256=own)}


def test_empty_memory_is_failed_precondition_naming_it(
    open_memory: Callable[..., Memory], encoder: ClipEncoder
) -> None:
    memory = open_memory()
    q = np.ones(encoder.dim, np.float32)
    with pytest.raises(FailedPrecondition, match="memory for line 'nowhere', category 'screw' is empty"):
        memory.search(q, "nowhere", category="screw")
    with pytest.raises(FailedPrecondition, match="line 'nowhere'"):
        memory.random("nowhere", seed=1)
    with pytest.raises(FailedPrecondition, match="line 'nowhere'"):
        memory.infer_category(q, "nowhere")


@pytest.mark.parametrize(
    ("vector", "message"),
    [
        ([], "vector: is empty"),
        ([1.0, 2.0], "vector: has 2 values, but this memory holds 64-d vectors"),
        ([float("nan")] * 64, "vector: holds NaN"),
        ([0.0] * 64, "vector: is all zeros"),
    ],
)
def test_bad_query_vectors_are_invalid_argument(
    open_memory: Callable[..., Memory], vector: list[float], message: str
) -> None:
    with pytest.raises(InvalidArgument, match=message):
        open_memory().search(vector, "line-1")


def test_bad_names_and_k_are_invalid_argument(open_memory: Callable[..., Memory], scenes: list[Scene]) -> None:
    memory = open_memory()
    with pytest.raises(InvalidArgument, match='category: "a/b" is not a valid name'):
        memory.add_images("line-1", DATASET, "a/b", [scenes[0].normal])
    with pytest.raises(InvalidArgument, match="dataset: is required"):
        memory.add_images("line-1", "", "screw", [scenes[0].normal])
    with pytest.raises(InvalidArgument, match=r"images\[0\]: cannot be decoded"):
        memory.add_images("line-1", DATASET, "screw", [b"not an image"])
    with pytest.raises(InvalidArgument, match="k: is 65"):
        memory.search(np.ones(64), "line-1", k=65)


def test_a_model_of_another_size_cannot_open_the_collection(
    engine: str, tmp_path: Path, retrieval_settings: Callable[..., RetrievalSettings]
) -> None:
    s = retrieval_settings(engine, tmp_path)
    open_store(s, 64).close()
    with pytest.raises(
        ConfigError, match="collection 'echo_normal_memory' has dim 64 but the embedding model gives 512"
    ):
        open_store(s, 512)


def test_category_is_inferred_by_a_neighbour_vote_with_a_confidence(
    open_memory: Callable[..., Memory], scenes: list[Scene], encoder: ClipEncoder
) -> None:
    memory = open_memory()
    _ingest(memory, scenes)
    for scene, q in zip(scenes, encoder.embed_batch([s.defective for s in scenes]), strict=True):
        guess = memory.infer_category(q, "line-1", k=5)
        assert (guess.category, guess.dataset) == (scene.category, DATASET)
        assert 0.5 < guess.confidence <= 1.0 and guess.confidence == max(guess.scores.values())
    names = sorted({s.category for s in scenes})
    texts = dict(zip(names, encoder.embed_texts([category_prompt(n) for n in names]), strict=True))
    q = encoder.embed_batch([scenes[0].defective])[0]
    blended = memory.infer_category(q, "line-1", text_vectors=texts)
    assert set(blended.scores) == set(names) and sum(blended.scores.values()) == pytest.approx(1.0)
    text_only = memory.infer_category(q, "empty-line", text_vectors=texts)  # no memory: the text prompts decide
    assert text_only.category in names and text_only.dataset == ""


def test_delete_by_memory_and_by_id(open_memory: Callable[..., Memory], scenes: list[Scene]) -> None:
    memory = open_memory()
    _ingest(memory, scenes)
    screw_ids = memory.add_images("line-1", DATASET, "screw", [s.normal for s in scenes if s.category == "screw"]).ids
    assert memory.delete("line-1", DATASET, "screw", ids=screw_ids[:2]) == 2
    assert memory.delete("line-1", DATASET, "screw") == len(screw_ids) - 2
    assert memory.delete("line-1", DATASET, "screw") == 0
    assert {c.category for c in memory.stats().counts} == {s.category for s in scenes} - {"screw"}


def test_upsert_of_precomputed_vectors_derives_ids_and_is_idempotent(
    open_memory: Callable[..., Memory], scenes: list[Scene], encoder: ClipEncoder
) -> None:
    memory = open_memory()
    v = encoder.embed_batch([scenes[0].normal])[0]
    sha = sha256_hex(scenes[0].normal)
    p = MemoryPoint("", v, "/refs/a.png", sha, "", "", DATASET, scenes[0].category)
    first, again = memory.upsert([p]), memory.upsert([p, p])
    assert (first.added, again.added, again.existing) == (1, 0, 2)
    assert first.ids == [point_id(sha, "default", DATASET, scenes[0].category)]
    with pytest.raises(InvalidArgument, match=r"points\[0\].sha256"):
        memory.upsert([MemoryPoint("", v, "/x.png", "abc", "", "", DATASET, "screw")])
    with pytest.raises(InvalidArgument, match=r"points\[0\].vector: has 3 values"):
        memory.upsert([MemoryPoint("", np.ones(3), "/x.png", sha, "", "", DATASET, "screw")])


def test_an_edge_memory_open_elsewhere_is_refused_naming_it(
    tmp_path: Path, retrieval_settings: Callable[..., RetrievalSettings]
) -> None:
    s = retrieval_settings("edge", tmp_path)
    first = open_store(s, 64)  # created; its write-ahead log stays locked while it is open
    with pytest.raises(ConfigError, match="is open in another process"):
        open_store(s, 64)
    first.close()
    open_store(s, 64).close()  # free again once closed
