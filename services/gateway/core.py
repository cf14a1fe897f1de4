"""The Inspector: validate, plan, fan out to the experts, decide, and trace it all (plain values, no gRPC here).

Embedding then retrieval run in sequence (the search needs the vector); the
knowledge lookup and the visual evidence run beside them when the category is
known, after category inference when it is not. Optional experts that fail are
dropped and the trace says "degraded" (a product with no evidence bank says what
to add); the decision stage is required. The stage calls go through
services/gateway/clients.py, which speaks the stages' protos.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import defaultdict
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from services.common.errors import EchoError, InvalidArgument, NotFound, task_group_error
from services.common.images import (
    CONTENT_ID,
    ImageLimits,
    ImageStore,
    check_header,
    check_sha256,
    content_id,
    image_suffix,
    sha256_hex,
)
from services.common.memory import trim_heap
from services.common.names import check_name
from services.common.stage_client import Deadline, StageCallError
from services.common.telemetry import tracer
from services.gateway.admission import Admission
from services.gateway.clients import StageClients
from services.gateway.config import GatewaySettings
from services.gateway.domain import (
    Added,
    Decided,
    DecisionAsk,
    DefectFound,
    EncoderInfo,
    EvidenceImages,
    Inspection,
    InspectionResult,
    KnowledgeFound,
    LineSummary,
    MemoryItem,
    MemoryListing,
    Passage,
    Product,
    Reference,
    Timing,
    Trace,
)
from services.gateway.limits import decoded_bytes, door_limits
from services.gateway.planner import EXPERTS, Plan, QuestionTypeClassifier, TypeGuess, plan_experts
from services.gateway.validation import check_question, check_references, check_request_id, check_settings
from services.gateway.verdict import PENDING, review_of, settle
from services.knowledge.entries import Entry, canonical_dataset
from services.mmad.types import DEFECT_CLASSIFICATION

T = TypeVar("T")

_CATEGORY_CACHE_S = 30.0
_EMBED_CHUNK = 32
_TRIM_AFTER_BYTES = 256 * 1024 * 1024


class KeptImages(Protocol):
    """Images kept beside the memory (the audit trail's query images and heat maps), found per line."""

    async def image(self, line_id: str, sha256: str) -> bytes | None: ...


@dataclass
class _Run:
    """One inspection under way: its trace, deadline and the experts' outputs."""

    inspection: Inspection
    deadline: Deadline
    query_sha: str
    trace: Trace = field(default_factory=Trace)
    references: list[Reference] = field(default_factory=list)
    reference_images: list[bytes] = field(default_factory=list)  # their bytes, as the decision stage gets them
    knowledge: str = ""
    passages: list[Passage] = field(default_factory=list)
    evidence_images: EvidenceImages | None = None
    defect_example: DefectFound | None = None  # the nearest confirmed defect, for the prompt (gateway.defect_example)

    async def timed(self, stage: str, aw: Awaitable[T]) -> T:
        """Await one step of the fan-out, timed into the trace and, with tracing on, as its own span."""
        start = time.perf_counter()
        with tracer().start_as_current_span(f"inspect.{stage}"):
            try:
                return await aw
            finally:
                self.trace.timings.append(Timing(stage, (time.perf_counter() - start) * 1000.0))

    def set_compute(self, stage: str, compute_ms: float) -> None:
        for t in self.trace.timings:
            if t.stage == stage:
                t.compute_ms = compute_ms

    def degrade(self, expert: str, err: EchoError) -> None:
        self.trace.degraded.append(f"{expert}: {err.message}")


class Inspector:
    """Plans and runs one inspection over the stage clients; also the memory-management calls."""

    def __init__(
        self,
        clients: StageClients,
        classifier: QuestionTypeClassifier,
        settings: GatewaySettings,
        image_store: ImageStore,
        limits: ImageLimits = ImageLimits(),
        *,
        keep_evidence_images: bool = False,
    ) -> None:
        """`keep_evidence_images`: ask the evidence stage for the heat map and overlay of every inspection (the
        audit trail keeps them), not only when a request asks for them."""
        self.clients = clients
        self.classifier = classifier
        self.settings = settings
        self.image_store = image_store
        self.limits = limits
        self.door = door_limits(settings, limits)  # the one table of limits validation reads
        self.keep_evidence_images = keep_evidence_images
        self.admission = Admission(
            settings.max_concurrent,
            settings.admission_deadline_share,
            horizon_s=settings.admission_horizon_s,
            max_bytes=settings.max_inflight_bytes,
        )
        self._burst_bytes = 0  # decoded bytes admitted since the heap was last trimmed
        self._category_vectors: dict[tuple[str, str], tuple[float, dict[str, list[float]]]] = {}
        self._encoder: tuple[float, EncoderInfo] | None = None  # the embedding stage's Info, cached like the above

    # ------------------------------------------------------------------ inspect
    async def inspect(self, inspection: Inspection, grpc_time_remaining: float | None = None) -> InspectionResult:
        """One inspection: validate, plan, fan out, decide. `grpc_time_remaining`: the caller's deadline (s)."""
        query_sha, charge = self._validate(inspection)  # before the deadline and admission read its numbers
        deadline = self._deadline(inspection, grpc_time_remaining)
        ticket = self.admission.admit(deadline.remaining(), inspection.question_type, charge)
        answered = False
        try:
            started = time.perf_counter()
            run = _Run(inspection, deadline, query_sha)
            plan = await self._plan(run)
            self._check_prompt_fits(run, plan)
            await self._fan_out(run, plan)
            result = await self._decide(run, plan)
            run.trace.timings.append(Timing("total", (time.perf_counter() - started) * 1000.0))
            answered = True
            return result
        finally:
            self.admission.finished(ticket, answered=answered)
            self._trim_after_burst(charge)

    def _trim_after_burst(self, charge: int) -> None:
        """Once a burst drains (nothing in flight) after decoding at least _TRIM_AFTER_BYTES, return the heap's
        free pages to the OS, off the event loop: in embedded mode every stage's decoding happened in this process."""
        self._burst_bytes += charge
        if self.admission.in_flight == 0 and self._burst_bytes >= _TRIM_AFTER_BYTES:
            self._burst_bytes = 0
            asyncio.get_running_loop().run_in_executor(None, trim_heap)

    def _deadline(self, inspection: Inspection, grpc_time_remaining: float | None) -> Deadline:
        candidates = [inspection.deadline_ms or self.settings.default_deadline_ms]
        if grpc_time_remaining is not None:
            candidates.append(grpc_time_remaining * 1000.0)
        return Deadline.after_ms(min(candidates))

    def _validate(self, inspection: Inspection) -> tuple[str, int]:
        """Refuse what no stage could answer, naming the field; returns the query image's sha256 and the bytes its
        images take decoded (what the memory budget charges, from their headers)."""
        if inspection.request_id:
            check_request_id(inspection.request_id)  # it names the audit record
        check_name(inspection.line_id, "line_id", required=True)
        check_name(inspection.dataset, "dataset", required=False)
        check_name(inspection.category, "category", required=False)
        check_question(inspection.question, inspection.options, self.door)
        check_settings(inspection.deadline_ms, inspection.k_shots, self.door)
        check_references(len(inspection.references), self.door)
        ratio = self.settings.max_pixels_per_byte
        check_header(inspection.image, self.limits, field="image")  # the stages that need pixels decode them once
        charge = decoded_bytes(inspection.image, ratio, "image")
        for n, data in enumerate(inspection.references):
            check_header(data, self.limits, field=f"references[{n}]")
            charge += decoded_bytes(data, ratio, f"references[{n}]")
        return sha256_hex(inspection.image), charge

    async def _plan(self, run: _Run) -> Plan:
        """The question type (the client's, or classified) and the experts it activates; the trace's settings."""
        i, trace = run.inspection, run.trace
        if i.question_type:
            guess = TypeGuess(i.question_type, 1.0, "client")
        else:
            guess = await run.timed("plan", asyncio.to_thread(self.classifier.classify, i.question, i.options))
        plan = plan_experts(guess, self.settings.expert_map, {e: i.experts.get(e) for e in EXPERTS})
        ref_mode = i.reference_mode or self.settings.default_reference_mode
        knowledge_mode = i.knowledge_mode or "csk"
        trace.question_type = guess.type
        trace.type_confidence = guess.confidence
        trace.type_from_client = guess.method == "client"
        trace.reference_mode = ref_mode if "reference" in plan.experts and ref_mode != "0-shot" else "0-shot"
        trace.knowledge_mode = knowledge_mode if "knowledge" in plan.experts and knowledge_mode != "none" else "none"
        trace.answer_format = i.answer_format or "multiple_choice"
        trace.dataset = i.dataset or self.settings.default_dataset
        trace.category = i.category
        return plan

    def _check_prompt_fits(self, run: _Run, plan: Plan) -> None:
        """The decision prompt's images (the query, references, heat map) within gateway.max_prompt_images, known
        once the plan is: refused here rather than by the decision stage after the other experts ran."""
        i, limit = run.inspection, self.settings.max_prompt_images
        field, refs = "references", 0
        if run.trace.reference_mode != "0-shot":
            if i.references:
                refs = len(i.references)
            elif run.trace.reference_mode == "k-shot":
                field, refs = "settings.k_shots", i.k_shots or self.settings.default_k_shots
            else:
                refs = 1
        heat = self.settings.evidence_as_image and "evidence" in plan.experts
        example = (
            self.settings.defect_example
            and self.settings.classify_defects
            and "evidence" in plan.experts
            and run.trace.question_type == DEFECT_CLASSIFICATION
        )
        if 1 + refs + heat + example > limit:
            raise InvalidArgument(
                f"makes a prompt of {1 + refs + heat + example} images (the query, {refs} references"
                f"{', the heat map' if heat else ''}{', a confirmed defect' if example else ''}); at most {limit} "
                "(gateway.max_prompt_images)",
                field=field,
            )

    async def _fan_out(self, run: _Run, plan: Plan) -> None:
        """The optional experts: reference (embed, infer the category if unknown, search), knowledge and the
        visual evidence (beside the others when the category is known, after its inference when it is not)."""
        use_evidence = "evidence" in plan.experts
        if use_evidence and run.inspection.category:
            try:
                async with asyncio.TaskGroup() as tg:
                    tg.create_task(self._fan_out_others(run, need_category_for_evidence=False))
                    tg.create_task(self._optional(run, "evidence", self._evidence(run)))
            except BaseExceptionGroup as group:
                raise task_group_error(group) from None
        else:
            await self._fan_out_others(run, need_category_for_evidence=use_evidence)
            if use_evidence and run.trace.category:
                await self._optional(run, "evidence", self._evidence(run))
            elif use_evidence:
                run.trace.degraded.append("evidence: skipped, the category is unknown")
        if run.trace.evidence is not None:
            run.trace.experts_used.append("evidence")

    async def _fan_out_others(self, run: _Run, *, need_category_for_evidence: bool) -> None:
        trace = run.trace
        use_reference = trace.reference_mode != "0-shot"
        use_knowledge = trace.knowledge_mode != "none"
        provided = use_reference and bool(run.inspection.references)  # the caller's references replace the search
        use_search = use_reference and not provided
        need_category = not run.inspection.category and (use_search or use_knowledge or need_category_for_evidence)

        async def reference_branch() -> None:
            vector = await self._embed_query(run)
            if need_category:
                await self._infer_category(run, vector)
            if use_search:
                run.references, run.reference_images = await self._search(run, vector)

        if need_category or use_search:
            if use_knowledge and not need_category:  # both at once; every failure reaches the caller
                try:
                    async with asyncio.TaskGroup() as tg:
                        tg.create_task(self._optional(run, "reference", reference_branch()))
                        tg.create_task(self._optional(run, "knowledge", self._knowledge(run)))
                except BaseExceptionGroup as group:
                    raise task_group_error(group) from None
            else:
                await self._optional(run, "reference", reference_branch())
                if use_knowledge and trace.category:
                    await self._optional(run, "knowledge", self._knowledge(run))
                elif use_knowledge:
                    trace.degraded.append("knowledge: skipped, the category is unknown")
        elif use_knowledge:
            await self._optional(run, "knowledge", self._knowledge(run))

        if provided:
            refs = run.inspection.references
            run.references = [
                Reference(f"request:{n}", 0.0, "", trace.category, sha256_hex(b)) for n, b in enumerate(refs)
            ]
            run.reference_images = list(refs)
            trace.reference_mode = "1-shot" if len(refs) == 1 else "k-shot"
        if use_reference and run.references:
            trace.experts_used.append("reference")
            trace.references.extend(run.references)
        if use_knowledge and run.knowledge:
            trace.experts_used.append("knowledge")

    async def _decide(self, run: _Run, plan: Plan) -> InspectionResult:
        """The Decision Maker (required) over what the experts found; the answer and the rest of the trace."""
        i, trace = run.inspection, run.trace
        use_reasoning = "reasoning" in plan.experts
        request_id = i.request_id or uuid.uuid4().hex
        ask = DecisionAsk(
            request_id=request_id,
            image=i.image,
            reference_images=run.reference_images if "reference" in trace.experts_used else [],
            knowledge=run.knowledge,
            question=i.question,
            options=i.options,
            question_type=trace.question_type,
            reasoning=use_reasoning,
            answer_format=trace.answer_format,
            return_prompt=i.return_prompt,
            category=trace.category,
        )
        if trace.evidence is not None:
            ask.evidence = trace.evidence
            trace.evidence.sent_as_text = self.settings.evidence_as_text
            if self.settings.evidence_as_image and run.evidence_images is not None:
                trace.evidence.sent_as_image = True
                ask.evidence_overlay = run.evidence_images.overlay_png
        if run.defect_example is not None:
            ask.defect_example = run.defect_example.example_image
            ask.defect_example_type = run.defect_example.example_type
        try:
            decided = await run.timed("decision", self.clients.decide(ask, run.deadline))
        except StageCallError as e:
            why_none = [d for d in trace.degraded if d.startswith("evidence:")]
            if e.caller_error and why_none:  # e.g. decision.backend evidence with no bank: say what to add
                raise StageCallError(e.stage, e.code, f"{e.details} ({'; '.join(why_none)})") from None
            raise
        run.set_compute("decision", decided.compute_ms)
        if use_reasoning:
            trace.experts_used.append("reasoning")
        trace.experts_used.append("decision")
        trace.model_ids["decision"] = decided.model_id
        trace.unparsed = decided.unparsed
        trace.raw_reply = decided.raw_reply
        trace.reasoning = decided.reasoning
        trace.prompt = decided.prompt
        trace.prompt_sha256 = decided.prompt_sha256
        trace.option_scores.update(decided.scores)
        if decided.preprocess_ms:
            trace.timings.append(Timing("decision.preprocess", decided.preprocess_ms, decided.preprocess_ms))
        answer = self._settle(trace, i.options, decided)
        return InspectionResult(
            request_id, answer, i.options.get(answer, ""), trace, run.query_sha, run.knowledge, run.passages,
            run.evidence_images,
        )  # fmt: skip

    def _settle(self, trace: Trace, options: dict[str, str], decided: Decided) -> str:
        """The verdict that counts (services/gateway/verdict.py): its answer, and its source in the trace."""
        why_none = "; ".join(d.removeprefix("evidence: ") for d in trace.degraded if d.startswith("evidence:"))
        model_answer = decided.answer if decided.answer in options else ""
        settled = settle(
            trace.question_type, options, model_answer, decided.model_kind, trace.evidence, why_none,
            self.settings.hold_review_band,
        )  # fmt: skip
        trace.verdict_source = settled.source
        trace.evidence_disagrees = settled.disagrees
        trace.model_answer = settled.model_answer
        if reason := review_of(trace.evidence, settled.disagrees, settled.held):
            trace.review, trace.review_reason = PENDING, reason
        return settled.answer

    async def _optional(self, run: _Run, expert: str, aw: Awaitable[None]) -> None:
        """Run an optional expert; a stage outage degrades the answer, a refused request fails it."""
        try:
            await aw
        except StageCallError as e:
            if expert == "reference" and e.caller_error:
                raise
            run.degrade(expert, e)

    async def _evidence(self, run: _Run) -> None:
        """The query against its product's bank of normal patches (the heat map when the trace or audit wants it)."""
        i, trace = run.inspection, run.trace
        want_images = i.return_heatmap or self.keep_evidence_images or self.settings.evidence_as_image
        analyze = self.clients.analyze(
            i.image,
            line_id=i.line_id,
            dataset=trace.dataset,
            category=trace.category,
            images=want_images,
            deadline=run.deadline,
        )
        found: DefectFound | str | None = None
        if trace.question_type == DEFECT_CLASSIFICATION and self.settings.classify_defects:
            analyzed, found = await asyncio.gather(run.timed("evidence", analyze), self._defects(run))
        else:
            analyzed = await run.timed("evidence", analyze)
        if isinstance(found, DefectFound):
            analyzed.evidence.defect_type, analyzed.evidence.defect_summary = found.defect_type, found.summary
            run.defect_example = found if found.example_image else None
        elif found is not None:
            analyzed.evidence.defect_summary = found
        run.set_compute("evidence", analyzed.compute_ms)
        trace.model_ids["evidence"] = analyzed.evidence.backbone_id
        run.evidence_images = analyzed.images
        if i.return_heatmap and analyzed.images is not None:
            analyzed.evidence.heatmap = analyzed.images.heatmap
            analyzed.evidence.overlay_png = analyzed.images.overlay_png
        trace.evidence = analyzed.evidence

    async def _defects(self, run: _Run) -> DefectFound | str:
        """Defect Classification: the query's top box against the product's confirmed defects of the options' types;
        what stood in the way, in words, when the library could not answer (an empty library says what to add)."""
        i, trace = run.inspection, run.trace
        try:
            return await run.timed(
                "evidence.defects",
                self.clients.classify_defect(
                    i.image,
                    line_id=i.line_id,
                    dataset=trace.dataset,
                    category=trace.category,
                    candidates=list(i.options.values()),
                    with_image=self.settings.defect_example,
                    deadline=run.deadline,
                ),
            )
        except StageCallError as e:
            if not e.caller_error:  # an outage degrades; an empty library is the product's state, said in the trace
                trace.degraded.append(f"evidence.defects: {e.message}")
            return e.details

    async def _embed_query(self, run: _Run) -> list[float]:
        embedded = await run.timed("embedding", self.clients.embed_images([run.inspection.image], run.deadline))
        run.set_compute("embedding", embedded.compute_ms)
        if embedded.preprocess_ms:  # decoding and resizing, inside the embedding call's time, as for decision
            run.trace.timings.append(Timing("embedding.preprocess", embedded.preprocess_ms, embedded.preprocess_ms))
        run.trace.model_ids["embedding"] = embedded.model_id
        return embedded.vectors[0]

    async def _infer_category(self, run: _Run, vector: list[float]) -> None:
        i, trace = run.inspection, run.trace
        text_vectors = await self._category_text_vectors(i.line_id, trace.dataset, run.deadline)
        guess = await run.timed(
            "category",
            self.clients.infer_category(
                vector, line_id=i.line_id, dataset=trace.dataset, text_vectors=text_vectors, deadline=run.deadline
            ),
        )
        run.set_compute("category", guess.compute_ms)
        trace.category = guess.category
        trace.category_confidence = guess.confidence
        trace.category_inferred = True
        if not trace.dataset:
            trace.dataset = guess.dataset

    async def _category_text_vectors(self, line_id: str, dataset: str, deadline: Deadline) -> dict[str, list[float]]:
        """Text embeddings of the line's category names, cached briefly (the set changes on onboarding).

        Empty when the embedding stage has no text tower (EfficientNet-Lite0, the offline encoder): category
        inference then votes on the memory's image neighbours alone.
        """
        key = (line_id, dataset)
        cached = self._category_vectors.get(key)
        if cached and time.monotonic() - cached[0] < _CATEGORY_CACHE_S:
            return cached[1]
        if not (await self._encoder_info(deadline)).texts:
            return {}
        stats = await self.clients.stats(line_id, dataset, "", deadline)
        names = stats.categories
        if not names:
            raise StageCallError.refused("retrieval", f"line {line_id!r} has no normal images in memory")
        texts = [f"a photo of a {n.replace('_', ' ')}" for n in names]
        vectors = dict(zip(names, await self.clients.embed_texts(texts, deadline), strict=True))
        self._category_vectors[key] = (time.monotonic(), vectors)
        return vectors

    async def _encoder_info(self, deadline: Deadline) -> EncoderInfo:
        """The embedding stage's Info, asked once per _CATEGORY_CACHE_S (a restart may change its encoder)."""
        if self._encoder is None or time.monotonic() - self._encoder[0] >= _CATEGORY_CACHE_S:
            self._encoder = (time.monotonic(), await self.clients.embedding_info(deadline))
        return self._encoder[1]

    async def _search(self, run: _Run, vector: list[float]) -> tuple[list[Reference], list[bytes]]:
        """The memory's references for this query and their bytes (see `_reference_bytes`)."""
        i, trace = run.inspection, run.trace
        mode = trace.reference_mode
        k = (i.k_shots or self.settings.default_k_shots) if mode == "k-shot" else 1
        hits, compute_ms = await run.timed(
            "retrieval",
            self.clients.search(
                vector,
                line_id=i.line_id,
                dataset=trace.dataset,
                category=trace.category,
                k=k,
                mode=mode,
                seed=i.seed or int(run.query_sha[:8], 16),
                exclude_sha256=run.query_sha,
                deadline=run.deadline,
            ),
        )
        run.set_compute("retrieval", compute_ms)
        return await run.timed("retrieval.images", self._reference_bytes(run, hits))

    async def _reference_bytes(self, run: _Run, hits: list[Reference]) -> tuple[list[Reference], list[bytes]]:
        """Each hit's bytes, read here by content id and sent to the decision stage as reference_images.

        Search answers content ids only (no server path in any answer, issue 25), so the gateway resolves them:
        it already holds the image store (it writes every normal image there), while the decision stage has no
        store of its own and, under Ray Serve, runs on another node that may not mount it. Bytes travel to the
        decision stage the way a caller's own references do. The hits come from this line's memory, so the
        Stats membership check of `get_image` would be a redundant round trip. A hit whose image is gone from
        the store (or unreadable) is left out and the trace says so, rather than failing the inspection.
        """
        found = await asyncio.to_thread(_read_by_sha256, self.image_store, [h.sha256 for h in hits])
        kept = [(h, data) for h, data in zip(hits, found, strict=True) if data is not None]
        missing = [content_id(h.sha256) for h, data in zip(hits, found, strict=True) if data is None]
        if missing:
            run.trace.degraded.append(f"reference: {', '.join(missing)} missing from the image store, left out")
        return [h for h, _ in kept], [data for _, data in kept]

    async def _knowledge(self, run: _Run) -> None:
        i, trace = run.inspection, run.trace
        knowledge = await run.timed(
            "knowledge",
            self.clients.get_context(
                dataset=trace.dataset,
                category=trace.category,
                question=i.question,
                options=i.options,
                question_type=i.question_type,
                mode=trace.knowledge_mode,
                deadline=run.deadline,
                degraded=trace.degraded,
                refine=self.settings.refine_knowledge,
            ),
        )
        run.set_compute("knowledge", knowledge.compute_ms)
        trace.knowledge_entry_ids.extend(knowledge.entry_ids)
        trace.knowledge_passage_ids.extend(knowledge.passage_ids)
        if knowledge.model_id:
            trace.model_ids["knowledge"] = knowledge.model_id
        run.knowledge = knowledge.text
        run.passages = knowledge.passages

    # ------------------------------------------------------------------ images named by content id
    async def stored_image(self, line_id: str, uri: str, deadline: Deadline, field: str = "image") -> bytes:
        """The bytes of an image a client names by content id ("sha256:<hex>", as traces and listings give it).

        Only images in this line's memory resolve, and a miss reads the same whether or not another line
        holds the image; paths and URLs are refused, so no client reads the server's files or makes it
        fetch one.
        """
        m = CONTENT_ID.match(uri)
        if m is None:
            raise InvalidArgument(
                f"{uri[:80]!r} is not a content id: send the image bytes, or 'sha256:<hex>' of an image in this "
                "line's memory",
                field=f"{field}.uri",
            )
        try:
            return await self.get_image(line_id, m.group(1), deadline)
        except NotFound:
            raise NotFound(f"line {line_id!r} has no image {uri} in its memory", field=f"{field}.uri") from None

    # ------------------------------------------------------------------ memory
    async def add_normal_images(
        self, line_id: str, dataset: str, category: str, images: list[bytes], deadline: Deadline
    ) -> Added:
        """The one ingest path of normal images (AddNormalImages, `product add`, `memory build`): each image goes
        to the retrieval memory (stored, embedded, indexed) and to the product's evidence bank (patch features;
        the bank recalibrates its threshold). Content-addressed in both: the same image twice adds nothing, so
        a retry after a failure in either completes the other."""
        check_name(line_id, "line_id", required=True)
        check_name(dataset, "dataset", required=False)
        check_name(category, "category", required=True)
        if not images:
            raise InvalidArgument("is empty: send at least one normal image", field="images")
        for i, data in enumerate(images):  # the embedding stage decodes before anything is stored
            check_header(data, self.limits, field=f"images[{i}]")
            decoded_bytes(data, self.settings.max_pixels_per_byte, f"images[{i}]")  # no decompression bombs
        dataset = dataset or self.settings.default_dataset
        points: list[tuple[list[float], MemoryItem]] = []
        for start in range(0, len(images), _EMBED_CHUNK):
            chunk = images[start : start + _EMBED_CHUNK]
            embedded = await self.clients.embed_images(chunk, deadline)
            for data, vector in zip(chunk, embedded.vectors, strict=True):
                uri = await asyncio.to_thread(self.image_store.put, data, image_suffix(data))
                points.append((vector, MemoryItem("", uri, sha256_hex(data), line_id, dataset, category, "good")))
        ids, added, existing = await self.clients.upsert(points, deadline)
        self._category_vectors.pop((line_id, dataset), None)
        self._category_vectors.pop((line_id, ""), None)
        bank = None
        for start in range(0, len(images), _EMBED_CHUNK):
            chunk = images[start : start + _EMBED_CHUNK]
            state = await self.clients.add_to_bank(line_id, dataset, category, chunk, deadline)
            if bank is not None:
                state.added, state.existing = bank.added + state.added, bank.existing + state.existing
            bank = state
        return Added(ids, added, existing, bank)

    async def list_normal_images(
        self, line_id: str, dataset: str, category: str, limit: int, page_token: str, deadline: Deadline
    ) -> MemoryListing:
        check_name(line_id, "line_id", required=True)
        check_name(dataset, "dataset", required=False)
        check_name(category, "category", required=False)
        if limit < 0:
            raise InvalidArgument(f"must be >= 0, got {limit}", field="limit")
        stats = await self.clients.stats(
            line_id, dataset, category, deadline, list_limit=limit or 100, page_token=page_token
        )
        return MemoryListing(stats.items, stats.total, stats.next_page_token)

    async def delete_normal_images(
        self, line_id: str, dataset: str, category: str, ids: list[str], deadline: Deadline
    ) -> int:
        check_name(line_id, "line_id", required=True)
        check_name(dataset, "dataset", required=False)
        if not ids:
            check_name(category, "category", required=True)  # never delete a whole line by accident
        if ids:  # the images leave the evidence banks first, so a retry after a failure still finds them
            by_product: dict[tuple[str, str], list[str]] = defaultdict(list)
            for item in await self._memory_items(line_id, dataset, category, set(ids), deadline):
                by_product[(item.dataset, item.category)].append(item.sha256)
            for (ds, cat), shas in by_product.items():
                await self.clients.delete_bank(line_id, ds, cat, deadline, shas)
        deleted = await self.clients.delete(line_id, dataset, category, ids, deadline)
        if not ids:  # a whole product leaves the line: its evidence bank too
            await self.clients.delete_bank(line_id, dataset or self.settings.default_dataset, category, deadline)
        self._category_vectors.clear()
        return deleted

    async def _memory_items(
        self, line_id: str, dataset: str, category: str, ids: set[str], deadline: Deadline
    ) -> list[MemoryItem]:
        """The memory's items with these ids (their content hashes say what to take out of the banks)."""
        found, token = [], ""
        while True:
            page = await self.clients.stats(line_id, dataset, category, deadline, list_limit=500, page_token=token)
            found += [item for item in page.items if item.id in ids]
            token = page.next_page_token
            if not token or len(found) == len(ids):
                return found

    async def list_products(self, line_id: str, dataset: str, category: str, deadline: Deadline) -> list[Product]:
        """Each (dataset, category) with normal images on this line, its knowledge entry and readiness."""
        check_name(line_id, "line_id", required=True)
        check_name(dataset, "dataset", required=False)
        check_name(category, "category", required=False)
        stats = await self.clients.stats(line_id, dataset, category, deadline)
        unknown = ""
        try:
            entries = await self.clients.list_entries(deadline)
        except StageCallError as e:  # the products are still worth showing without their knowledge
            entries, unknown = [], f"; knowledge unknown ({e.message})"
        banks_unknown = ""
        try:
            banks = await self.clients.bank_stats(line_id, dataset, category, deadline)
        except StageCallError as e:  # likewise without their evidence banks
            banks, banks_unknown = {}, f"; evidence bank unknown ({e.message})"
        products = []
        for count in stats.counts:
            ds, cat, n = count.dataset, count.category, count.count
            entry = _knowledge_for(entries, ds, cat)
            bank = banks.get((ds, cat))
            readiness = f"ready: {n} normal images to compare with"
            if bank is not None and bank.images:
                readiness += f"; evidence bank of {bank.images} (threshold {bank.threshold:.2f}; {bank.features})"
            elif not banks_unknown:
                readiness += "; no evidence bank yet (add the same normal images again to build it)"
            if entry is None and not unknown:
                readiness += "; no knowledge entry (optional: `echo-iad product add --knowledge`)"
            images, threshold = (bank.images, bank.threshold) if bank is not None else (0, 0.0)
            features = bank.features if bank is not None else ""
            products.append(
                Product(ds, cat, n, entry, n > 0, readiness + unknown + banks_unknown, images, threshold, features)
            )
        return products

    async def get_image(self, line_id: str, sha256: str, deadline: Deadline, kept: KeptImages | None = None) -> bytes:
        """An image of this line: one of its kept images (the audit trail's), or one in its memory of normal images.

        A line sees only its own images, so access can be scoped per line.
        """
        check_name(line_id, "line_id", required=True)
        check_sha256(sha256)
        if kept is not None and (data := await kept.image(line_id, sha256)) is not None:
            return data
        held = await self.clients.stats(line_id, "", "", deadline, sha256=sha256)
        data = await asyncio.to_thread(self.image_store.get_by_sha256, sha256) if held.total else None
        if data is None:
            raise NotFound(f"no image {sha256} on line {line_id!r} (or it is past retention)", field="sha256")
        return data

    async def list_lines(self, deadline: Deadline) -> list[LineSummary]:
        """Every line with normal images in memory, and its products (what a client offers when --line is missing)."""
        stats = await self.clients.stats("", "", "", deadline)
        lines: dict[str, LineSummary] = {}
        for c in stats.counts:
            line = lines.setdefault(c.line_id, LineSummary(c.line_id, 0, []))
            line.normal_images += c.count
            line.products.append(c)
        return [lines[k] for k in sorted(lines)]

    # ------------------------------------------------------------------ knowledge
    async def put_knowledge(self, dataset: str, category: str, entry: bytes, deadline: Deadline) -> tuple[str, int]:
        """Store a product's knowledge entry (serialized; the knowledge stage checks its schema); (id, version)."""
        check_name(dataset, "entry.dataset", required=True)
        check_name(category, "entry.category", required=True)
        return await self.clients.put_entry(entry, deadline)

    async def get_knowledge(self, dataset: str, category: str, deadline: Deadline) -> KnowledgeFound:
        """A product's knowledge entry; NotFound (saying why the stage may not see it) when there is none."""
        check_name(dataset, "dataset", required=True)
        check_name(category, "category", required=True)
        found = await self.clients.find_entry(dataset, category, deadline)
        if not found.entry:
            why = f" (the knowledge stage is degraded: {'; '.join(found.degraded)})" if found.degraded else ""
            raise NotFound(f"no knowledge entry for {dataset}/{category}{why}")
        return found


def _read_by_sha256(store: ImageStore, shas: list[str]) -> list[bytes | None]:
    """Each image's bytes from the store; None where it is missing or the store cannot read it (a store outage
    leaves references out, as a retrieval outage does, instead of failing the inspection)."""
    out: list[bytes | None] = []
    for sha in shas:
        try:
            out.append(store.get_by_sha256(sha))
        except (OSError, InvalidArgument):
            out.append(None)
    return out


def _knowledge_for(entries: list[Entry], dataset: str, category: str) -> Entry | None:
    """The entry the Knowledge stage would use for (dataset, category): with a dataset (spelled as MMAD spells
    it, DS-MVTec for MVTec) only that dataset's; without one, the only entry of that category."""
    if dataset:
        wanted = f"{canonical_dataset(dataset)}/{category}".lower()
        return next((e for e in entries if e.id.lower() == wanted), None)
    same = [e for e in entries if e.category.lower() == category.lower()]
    return same[0] if len(same) == 1 else None


__all__ = ["Inspector", "Plan"]
