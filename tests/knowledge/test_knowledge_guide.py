"""The Knowledge Guide core: modes none / DK / CSK, lookup errors, and cached, reviewable refinement."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import pytest

from services.common.errors import InvalidArgument, NotFound
from services.knowledge.core import ContextRequest, KnowledgeGuide
from services.knowledge.embedder import TextEmbedder, TokenCounter
from services.knowledge.refine import RefineCache, RefineInput, RefineKey, refine_prompt
from services.knowledge.relevance import Extractor
from services.knowledge.stores import FileStore, RedisStore

Q_DC = "There is a defect in the object. What is the type of the defect?"
OPTIONS = {"A": "Scratch", "B": "Crack", "C": "Hole", "D": "Contamination"}


def condense(inp: RefineInput) -> str:
    """A real, deterministic refiner: keep the first sentence of each line (stands in for the LLM)."""
    return "\n".join(line.split(". ")[0].rstrip(".") + "." for line in inp.text.splitlines())


condense.model_id = "first-sentences"  # type: ignore[attr-defined]


@pytest.fixture
def guide(kb_dir: Path, extractor: Extractor) -> KnowledgeGuide:
    return KnowledgeGuide(FileStore(kb_dir), extractor, default_mode="csk", token_budget=256)


def _req(**kw) -> ContextRequest:
    base = {"dataset": "Synthetic", "category": "round_part", "question": Q_DC, "options": OPTIONS}
    return ContextRequest(**{**base, **kw})


async def test_none_mode_returns_no_knowledge(guide: KnowledgeGuide) -> None:
    res = await guide.get_context(_req(mode="none"))
    assert res.text == "" and res.passages == () and res.entry_ids == ()


async def test_dk_mode_returns_the_whole_entry(guide: KnowledgeGuide) -> None:
    res = await guide.get_context(_req(mode="dk"))
    entry = guide.store.get("Synthetic/round_part")
    assert res.entry_ids == ("Synthetic/round_part",) and res.version == entry.version
    assert all(d.cause in res.text and d.effect in res.text for d in entry.defects)
    assert entry.normal.split(". ")[0] in res.text
    assert len(res.passages) == 3 + 6 * len(entry.defects)  # three normal sentences, six fields per defect
    assert res.model_id == ""


async def test_csk_mode_is_the_default_and_reports_its_passages(guide: KnowledgeGuide) -> None:
    res = await guide.get_context(_req())
    dk = await guide.get_context(_req(mode="dk"))
    assert res.mode == "csk" and res.model_id == "all-MiniLM-L6-v2"
    assert set(res.defects) == {"scratch", "crack", "hole", "contamination"}
    assert len(res.text) < len(dk.text) / 2
    assert all(p.id.startswith("Synthetic/round_part#") and p.text in res.text for p in res.passages)
    assert res.compute_ms > 0


async def test_unknown_category_is_not_found_with_the_closest_names(guide: KnowledgeGuide) -> None:
    with pytest.raises(NotFound) as e:
        await guide.get_context(_req(category="round_prat"))
    assert "unknown category 'Synthetic/round_prat'" in str(e.value) and "Synthetic/round_part" in str(e.value)
    with pytest.raises(NotFound, match="closest: MVTec/bottle"):
        await guide.get_context(_req(dataset="", category="botle"))


async def test_lookup_forgives_case_and_mmad_dataset_names(guide: KnowledgeGuide) -> None:
    assert (await guide.get_context(_req(dataset="DS-MVTec", category="Bottle", mode="dk"))).entry_ids == (
        "MVTec/bottle",
    )
    assert (await guide.get_context(_req(dataset="", category="woven_fabric", mode="dk"))).entry_ids == (
        "Synthetic/woven_fabric",
    )


async def test_bad_requests_name_the_field(guide: KnowledgeGuide) -> None:
    with pytest.raises(InvalidArgument, match=r"^category: is required"):
        await guide.get_context(_req(category=" "))
    with pytest.raises(InvalidArgument, match=r"^mode: 'full' is not one of"):
        await guide.get_context(_req(mode="full"))
    with pytest.raises(InvalidArgument, match=r"^question.text: is empty"):
        await guide.get_context(_req(question=""))
    with pytest.raises(InvalidArgument, match=r"^question.type:"):
        await guide.get_context(_req(question_type="Defect Counting"))


async def test_refinement_is_cached_per_category_type_and_option_set(kb_dir: Path, extractor: Extractor, tmp_path):
    calls: list[RefineInput] = []

    def refiner(inp: RefineInput) -> str:
        calls.append(inp)
        return condense(inp)

    refiner.model_id = "first-sentences"  # type: ignore[attr-defined]
    cache = RefineCache(tmp_path / "refined.json")
    guide = KnowledgeGuide(FileStore(kb_dir), extractor, refiner=refiner, refine_cache=cache)
    req = _req(refine=True, question_type="Defect Classification")
    first = await guide.get_context(req)
    assert first.refined == "model" and first.model_id == "all-MiniLM-L6-v2+refined:first-sentences"
    assert first.text == condense(calls[0]) and len(calls) == 1
    assert calls[0].question == Q_DC and calls[0].question_type == "Defect Classification"
    # the same option set in another order and letters: a cache hit
    shuffled = _req(
        refine=True, question_type="Defect Classification", options=dict(zip("DCBA", OPTIONS.values(), strict=True))
    )
    assert (await guide.get_context(shuffled)).text == first.text and len(calls) == 1
    assert first.passages  # the trace still names the passages the text came from
    await guide.get_context(_req(refine=True, question_type="Defect Classification", options={"A": "Hole"}))
    assert len(calls) == 2
    assert len(RefineCache(tmp_path / "refined.json")) == 2  # persisted


async def test_reviewed_text_is_served_and_never_overwritten(kb_dir: Path, extractor: Extractor, tmp_path: Path):
    cache_path, export = tmp_path / "refined.json", tmp_path / "review.json"
    guide = KnowledgeGuide(FileStore(kb_dir), extractor, refiner=condense, refine_cache=RefineCache(cache_path))
    req = _req(refine=True, question_type="Defect Classification")
    await guide.get_context(req)
    assert RefineCache(cache_path).export(export) == 1
    doc = json.loads(export.read_text())
    (item,) = doc["items"]
    assert item["options"] == ["contamination", "crack", "hole", "scratch"] and item["reviewed"] is False
    item["refined"], item["reviewed"] = "Reviewed by an inspector: check edges for cracks.", True
    export.write_text(json.dumps(doc))
    assert RefineCache(cache_path).import_reviewed(export) == 1

    fresh = KnowledgeGuide(FileStore(kb_dir), extractor, refiner=condense, refine_cache=RefineCache(cache_path))
    res = await fresh.get_context(req)
    assert res.text == "Reviewed by an inspector: check edges for cracks." and res.refined == "reviewed"
    key = RefineKey.of("Synthetic", "round_part", "Defect Classification", list(OPTIONS.values()))
    kept = fresh.refine_cache.put(key, item["source"], "A model's rewrite.", "first-sentences")
    assert kept.reviewed and kept.refined.startswith("Reviewed by an inspector")


async def test_a_changed_entry_invalidates_its_refined_text(kb_dir: Path, extractor: Extractor, tmp_path: Path):
    store = FileStore(kb_dir, poll_s=0.0)
    guide = KnowledgeGuide(store, extractor, refiner=condense, refine_cache=RefineCache(tmp_path / "r.json"))
    req = _req(refine=True, question_type="Defect Classification", options={"A": "Scratch"})
    before = await guide.get_context(req)
    path = kb_dir / "Synthetic" / "round_part.yaml"
    path.write_text(path.read_text().replace("A thin, straight", "A fine, straight"))
    after = await guide.get_context(req)
    assert before.text != after.text and "A fine, straight" in after.text


async def test_refine_without_a_refiner_serves_plain_csk(guide: KnowledgeGuide) -> None:
    res = await guide.get_context(_req(refine=True))
    assert res.refined == "" and res.text == (await guide.get_context(_req())).text


def test_refine_prompt_carries_question_options_and_knowledge() -> None:
    inp = RefineInput("MVTec", "bottle", "Defect Classification", Q_DC, ("Crack", "Hole"), "Crack: a dark line.")
    text = refine_prompt(inp)
    assert Q_DC in text and "Crack; Hole" in text and text.endswith("Crack: a dark line.")


async def test_health_check_runs_a_real_csk_request(guide: KnowledgeGuide) -> None:
    await guide.check()
    assert guide.degraded() == []


# -- the CSK answer cache --------------------------------------------------------------------------------------------
SCRATCH_Q = {"question_type": "Defect Classification", "options": {"A": "Scratch", "B": "Hole"}}


def _with_scratch(entry, signature: str):  # type: ignore[no-untyped-def]
    defects = tuple(dataclasses.replace(d, signature=signature) if d.name == "scratch" else d for d in entry.defects)
    return dataclasses.replace(entry, defects=defects, version=0)


async def test_a_repeated_csk_request_is_answered_from_the_cache_without_minilm(
    kb_dir: Path, embedder: TextEmbedder, counter: TokenCounter
) -> None:
    extractor = Extractor(embedder, counter)
    guide = KnowledgeGuide(FileStore(kb_dir), extractor)
    first = await guide.get_context(_req(**SCRATCH_Q))
    forwards = embedder.forwards
    again = await guide.get_context(_req(**SCRATCH_Q))
    assert embedder.forwards == forwards and extractor.answer_hits == 1
    assert (again.text, again.passages, again.defects, again.version) == (
        first.text, first.passages, first.defects, first.version,
    )  # fmt: skip
    other = await guide.get_context(_req(question_type="Defect Classification", options={"A": "Crack"}))
    assert embedder.forwards > forwards and extractor.answer_hits == 1 and other.text != first.text
    off = Extractor(embedder, counter, cache_answers=0)
    off_guide = KnowledgeGuide(FileStore(kb_dir), off)
    assert (await off_guide.get_context(_req(**SCRATCH_Q))).text == first.text
    assert (await off_guide.get_context(_req(**SCRATCH_Q))).text == first.text and off.answer_hits == 0


async def test_an_edited_knowledge_file_invalidates_the_cached_csk(
    kb_dir: Path, embedder: TextEmbedder, counter: TokenCounter
) -> None:
    extractor = Extractor(embedder, counter)
    guide = KnowledgeGuide(FileStore(kb_dir, poll_s=0.0), extractor)
    before = await guide.get_context(_req(**SCRATCH_Q))
    path = kb_dir / "Synthetic" / "round_part.yaml"
    path.write_text(path.read_text().replace("A thin, straight", "A fine, straight"))
    after = await guide.get_context(_req(**SCRATCH_Q))
    assert "A thin, straight" in before.text and "A fine, straight" in after.text and after.version > before.version
    assert extractor.answer_hits == 0
    assert all(key[0].version == after.version for key in extractor._answers)  # the old entry's answers are gone


async def test_a_redis_hot_update_from_another_replica_invalidates_the_cached_csk(
    kb_dir: Path, redis_server, embedder: TextEmbedder, counter: TokenCounter
) -> None:
    files = FileStore(kb_dir)
    writer, reader = RedisStore(redis_server.url, files), RedisStore(redis_server.url, files)
    extractor = Extractor(embedder, counter)
    guide = KnowledgeGuide(reader, extractor)
    try:
        before = await guide.get_context(_req(**SCRATCH_Q))
        assert (await guide.get_context(_req(**SCRATCH_Q))).text == before.text and extractor.answer_hits == 1
        stored = writer.put(_with_scratch(writer.get("Synthetic/round_part"), "A hair-thin bright line, hot-updated."))
        deadline = time.monotonic() + 5
        while reader.get("Synthetic/round_part").version != stored.version:
            assert time.monotonic() < deadline, "the update did not reach the other replica"
            time.sleep(0.02)
        after = await guide.get_context(_req(**SCRATCH_Q))
        assert "hot-updated" in after.text and "hot-updated" not in before.text
        assert after.version == stored.version and extractor.answer_hits == 1
    finally:
        guide.close()
        writer.close()
