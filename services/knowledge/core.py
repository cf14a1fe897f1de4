"""The Knowledge Guide: find the entry, build DK or CSK for a question, optionally refine it (no gRPC here)."""

from __future__ import annotations

import asyncio
import difflib
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

from services.common.errors import EchoError, InvalidArgument, NotFound
from services.knowledge.config import KnowledgeSettings
from services.knowledge.entries import Entry, EntryFields, canonical_dataset, default_root, entry_from_fields
from services.knowledge.refine import RefineCache, RefineInput, RefineKey, Refiner, call_refiner, refiner_id
from services.knowledge.relevance import Extraction, Extractor, Passage, passages_of, render
from services.knowledge.stores import KnowledgeStore, StoreStatus, open_store
from services.mmad.types import QUESTION_TYPES

log = logging.getLogger(__name__)

MODES = ("none", "dk", "csk")


@dataclass(frozen=True)
class ContextRequest:
    dataset: str  # may be empty when the category name is unique
    category: str
    question: str = ""
    options: dict[str, str] = field(default_factory=dict)
    question_type: str = ""  # one of QUESTION_TYPES, or "" (guessed from the question)
    mode: str = ""  # none | dk | csk; "" = the configured default
    token_budget: int = 0  # 0 = the configured default
    refine: bool = False


@dataclass(frozen=True)
class ContextResult:
    text: str
    mode: str
    entry_ids: tuple[str, ...]
    passages: tuple[Passage, ...]
    version: int
    compute_ms: float
    model_id: str
    defects: tuple[str, ...] = ()  # the defect types the options named or implied (CSK)
    question_type: str = ""  # as given, or as guessed from the question (CSK)
    refined: str = ""  # "", "model" or "reviewed"
    degraded: tuple[str, ...] = ()  # why this answer is reduced (e.g. refinement asked for but failed)


class KnowledgeGuide:
    """Serves knowledge from a store.

    Args:
        store: where entries live (files or Redis).
        extractor: builds DK/CSK texts; None serves DK and none only (CSK then fails with a clear error).
        default_mode: the mode of a request that leaves it unset.
        token_budget: CSK's default token budget.
        refiner: condenses CSK with an LLM (the gateway injects the decision stage); None: cache/reviewed only.
        refine_cache: the refined texts.
        refine_always: refine every CSK request, not only those that ask (settings.refine).
        max_token_budget: the largest token budget a request may ask for.
    """

    def __init__(
        self,
        store: KnowledgeStore,
        extractor: Extractor | None,
        default_mode: str = "csk",
        token_budget: int = 256,
        refiner: Refiner | None = None,
        refine_cache: RefineCache | None = None,
        refine_always: bool = False,
        max_token_budget: int = 4096,
    ) -> None:
        self.store = store
        self.max_token_budget = max_token_budget
        self.extractor = extractor
        self.default_mode = default_mode
        self.token_budget = token_budget
        self.refiner = refiner
        self.refine_cache = refine_cache if refine_cache is not None else RefineCache(None)
        self.refine_always = refine_always
        self._warned_no_refiner = False
        # Extraction (a text model) runs on the stage's own threads, never on the event loop's shared pool,
        # where in embedded mode it held every thread and other stages' 1 ms calls queued behind it.
        self._pool = ThreadPoolExecutor(4, thread_name_prefix="knowledge")

    async def _extract(self, req: ContextRequest) -> ContextResult:
        return await asyncio.get_running_loop().run_in_executor(self._pool, self.extract, req)

    @classmethod
    def from_settings(cls, settings: KnowledgeSettings, refiner: Refiner | None = None) -> KnowledgeGuide:
        """Open the configured store and load the embedder (seconds). Malformed files raise ConfigError."""
        from services.knowledge.embedder import TokenCounter, get_embedder

        if settings.torch_threads:
            import torch

            torch.set_num_threads(settings.torch_threads)
        root = seed_folder(Path(settings.dir).expanduser()) if settings.dir else default_root()
        store = open_store(
            settings.store,
            root,
            redis_url=settings.redis_url,
            prefix=settings.redis_prefix,
            poll_s=settings.reload_s,
            retry_s=settings.redis_retry_s,
        )
        extractor = Extractor(
            get_embedder(settings.embedder, settings.device),
            TokenCounter(settings.embedder),
            cache_answers=settings.csk_cache,
        )
        cache = RefineCache(settings.refine_cache or None, settings.reload_s)
        return cls(
            store,
            extractor,
            settings.default_mode,
            settings.token_budget,
            refiner,
            cache,
            settings.refine,
            settings.max_token_budget,
        )

    # -- lookup --------------------------------------------------------------------------------------------------
    def resolve(self, dataset: str, category: str) -> Entry:
        """The entry for (dataset, category); NOT_FOUND lists the closest names."""
        category = category.strip()
        if not category:
            raise InvalidArgument("is required", field="category")
        dataset = canonical_dataset(dataset) if dataset.strip() else ""
        if dataset and (entry := self.store.get(f"{dataset}/{category}")) is not None:
            return entry
        entries = self.store.entries()
        if dataset:
            wanted = f"{dataset}/{category}"
            entry = next((e for e in entries if e.id.lower() == wanted.lower()), None)  # "Bottle" finds bottle
            if entry is not None:
                return entry
        else:
            found = [e for e in entries if e.category.lower() == category.lower()]
            if len(found) == 1:
                return found[0]
            if len(found) > 1:
                raise InvalidArgument(
                    f"category {category!r} exists in several datasets ({', '.join(e.dataset for e in found)}); "
                    "name one",
                    field="dataset",
                )
            wanted = category
        close = closest_ids(entries, dataset, category)
        hint = f"; closest: {', '.join(close)}" if close else f"; the knowledge base has {len(entries)} entries"
        raise NotFound(f"unknown category {wanted!r}{hint}")

    def list_entries(self, dataset: str = "") -> list[Entry]:
        dataset = canonical_dataset(dataset) if dataset.strip() else ""
        return [e for e in self.store.entries() if not dataset or e.dataset == dataset]

    def put_fields(self, fields: EntryFields) -> Entry:
        """Store an entry as a caller sent it: validated, display names defaulting to the stored entry's."""
        existing = self.store.get(f"{canonical_dataset(fields.dataset)}/{fields.category}")
        return self.put_entry(entry_from_fields(fields, existing))

    def put_entry(self, entry: Entry) -> Entry:
        stored = self.store.put(entry)
        log.info("knowledge entry %s stored, version %d", stored.id, stored.version)
        return stored

    def status(self) -> StoreStatus:
        return self.store.status()

    def degraded(self) -> list[str]:
        """Reasons this stage serves in a reduced way (empty when all is well); for health and traces."""
        st = self.store.status()
        return [f"knowledge: {st.detail}"] if st.degraded else []

    # -- context -------------------------------------------------------------------------------------------------
    def _mode(self, mode: str) -> str:
        mode = (mode or self.default_mode).lower()
        if mode not in MODES:
            raise InvalidArgument(f"{mode!r} is not one of {', '.join(MODES)}", field="mode")
        return mode

    def extract(self, req: ContextRequest) -> ContextResult:
        """Synchronous part of get_context (CPU: embedding and ranking); runs in a worker thread."""
        start = time.perf_counter()
        mode = self._mode(req.mode)
        if req.question_type and req.question_type not in QUESTION_TYPES:
            raise InvalidArgument(
                f"{req.question_type!r} is not one of {', '.join(QUESTION_TYPES)}", field="question.type"
            )
        if not 0 <= req.token_budget <= self.max_token_budget:
            raise InvalidArgument(f"must be between 0 and {self.max_token_budget}", field="token_budget")
        for letter, text in req.options.items():
            if not letter.strip():
                raise InvalidArgument("an option has an empty letter", field="question.options")
            if not text.strip():
                raise InvalidArgument("is empty", field=f"question.options[{letter}]")
        budget = req.token_budget or self.token_budget
        if mode == "none":
            return ContextResult("", mode, (), (), 0, (time.perf_counter() - start) * 1000, "")
        entry = self.resolve(req.dataset, req.category)
        if mode == "dk" or self.extractor is None:
            if self.extractor is None and mode == "csk":
                raise InvalidArgument("CSK needs the sentence embedder, which this stage was built without", "mode")
            ex = self.extractor.full(entry) if self.extractor is not None else full_context(entry)
            model_id = ""
        else:
            if not req.question.strip():
                raise InvalidArgument("is empty (CSK extracts what the question needs)", field="question.text")
            ex = self.extractor.extract(entry, req.question, req.options, req.question_type, budget)
            model_id = self.extractor.model_id
        return ContextResult(
            text=ex.text,
            mode=mode,
            entry_ids=(entry.id,),
            passages=ex.passages,
            version=entry.version,
            compute_ms=(time.perf_counter() - start) * 1000,
            model_id=model_id,
            defects=ex.defects,
            question_type=ex.question_type or req.question_type,
        )

    async def get_context(self, req: ContextRequest) -> ContextResult:
        """DK or CSK for one question, refined (cached) when asked and possible."""
        result = await self._extract(req)
        if not (req.refine or self.refine_always) or result.mode != "csk" or not result.text:
            return result
        return await self._refine(req, result)

    async def _refine(self, req: ContextRequest, result: ContextResult) -> ContextResult:
        entry_id = result.entry_ids[0]
        dataset, category = entry_id.split("/", 1)
        qtype = result.question_type
        key = RefineKey.of(dataset, category, qtype, list(req.options.values()))
        hit = self.refine_cache.get(key, result.text)
        if hit is None and self.refiner is None:
            if not self._warned_no_refiner:
                log.warning("knowledge: refinement asked for but no refiner is configured; serving unrefined CSK")
                self._warned_no_refiner = True
            return replace(result, degraded=("refinement asked for, but no refiner is configured",))
        start = time.perf_counter()
        if hit is None:
            inp = RefineInput(dataset, category, qtype, req.question, tuple(req.options.values()), result.text)
            try:
                text = await call_refiner(self.refiner, inp)
            except (EchoError, ValueError) as e:  # the refiner is down or said nothing: serve the unrefined CSK
                log.warning("knowledge: refinement of %s failed: %s", entry_id, e)
                return replace(result, degraded=(f"refinement failed: {e}",))
            hit = self.refine_cache.put(key, result.text, text, refiner_id(self.refiner))
        how = "reviewed" if hit.reviewed else "model"
        return ContextResult(
            text=hit.refined,
            mode=result.mode,
            entry_ids=result.entry_ids,
            passages=result.passages,
            version=result.version,
            compute_ms=result.compute_ms + (time.perf_counter() - start) * 1000,
            model_id=f"{result.model_id}+refined:{hit.refiner}" + (" (reviewed)" if hit.reviewed else ""),
            defects=result.defects,
            question_type=result.question_type,
            refined=how,
        )

    async def check(self) -> None:
        """A tiny real request (CSK on the first entry, embedding included); raises if the stage cannot serve."""
        entries = self.store.entries()
        if not entries:
            raise NotFound("the knowledge base has no entries")
        e = entries[0]
        req = ContextRequest(
            e.dataset, e.category, "What is the type of the defect?", {"A": e.defects[0].display_name}, mode="csk"
        )
        res = await self._extract(req) if self.extractor is not None else None
        if res is not None and not res.text:
            raise RuntimeError(f"knowledge: a health request on {e.id} returned no text")

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self.store.close()


def seed_folder(root: Path) -> Path:
    """A writable knowledge folder: on first use, a copy of the shipped knowledge_base/ (never written in place)."""
    if not root.exists() or not any(root.iterdir()):
        import shutil

        shutil.copytree(default_root(), root, ignore=shutil.ignore_patterns("*.md"), dirs_exist_ok=True)
    return root


def closest_ids(entries: list[Entry], dataset: str, category: str, n: int = 5) -> list[str]:
    """Entry ids that look like what was asked for: similar categories (same dataset first), then similar ids."""
    cats = difflib.get_close_matches(category.lower(), sorted({e.category.lower() for e in entries}), n=n, cutoff=0.6)
    by_cat = [e.id for c in cats for e in entries if e.category.lower() == c]
    by_cat.sort(key=lambda i: not i.startswith(f"{dataset}/"))
    wanted = f"{dataset}/{category}" if dataset else category
    by_id = difflib.get_close_matches(wanted, [e.id for e in entries], n=n, cutoff=0.6)
    return list(dict.fromkeys(by_cat + by_id))[:n]


def full_context(entry: Entry) -> Extraction:
    """DK without a token counter."""
    passages = passages_of(entry)
    return Extraction(render(entry, passages), tuple(passages), (), "", 0)
