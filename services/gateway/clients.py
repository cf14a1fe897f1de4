"""The gateway's calls to the stages: one channel per address, typed calls on plain values.

The same code serves both modes: in embedded mode every stage address is this
process's own port; in the cluster, addresses and the Ray Serve `application`
metadata come from config. This layer is where stage protos are built and read:
the Inspector core above it works on the plain values of services/gateway/domain.py. Each call goes through
services/common/stage_client.py (deadline share, retry policy, health checks), the one stage-client path.
"""

from __future__ import annotations

from collections.abc import Sequence

import grpc

from echo.v1 import (
    common_pb2,
    decision_pb2,
    embedding_pb2,
    evidence_pb2,
    knowledge_pb2,
    retrieval_pb2,
)
from services.common.enums import (
    ANSWER_FORMAT_ENUM,
    KNOWLEDGE_MODE_ENUM,
    QUESTION_TYPE_ENUM,
    REFERENCE_MODE_ENUM,
    to_enum,
)
from services.common.inprocess import InProcessChannel
from services.common.stage_client import (
    STUBS,
    Deadline,
    StageClient,
    StageEndpoint,
    stage_channel,
)
from services.common.values import Box, ProductCount
from services.gateway.config import GatewaySettings
from services.gateway.domain import (
    Analyzed,
    BankState,
    CategoryGuess,
    Decided,
    DecisionAsk,
    DefectFound,
    Embedded,
    EncoderInfo,
    Evidence,
    EvidenceImages,
    HeatMap,
    Knowledge,
    KnowledgeFound,
    MemoryItem,
    MemoryStats,
    Passage,
    Reference,
)
from services.knowledge.entries import DEFECT_FIELDS, Defect, Entry


def _reference(hit: common_pb2.Reference) -> Reference:
    return Reference(id=hit.id, score=hit.score, uri=hit.uri, category=hit.category, sha256=hit.sha256)


def _box(b: common_pb2.EvidenceBox) -> Box:
    return Box(b.x0, b.y0, b.x1, b.y1, b.score, b.region, b.area, b.above_threshold)


def evidence_to_proto(e: Evidence) -> common_pb2.TraceEvidence:
    """The evidence as the trace and the decision stage carry it."""
    heat = common_pb2.HeatMap(**vars(e.heatmap)) if e.heatmap is not None else None
    boxes = [common_pb2.EvidenceBox(**vars(b)) for b in e.boxes]
    return common_pb2.TraceEvidence(**{**vars(e), "boxes": boxes, "heatmap": heat})


class StageClients:
    """All five stages, as calls on plain values; channels are shared between stages at the same address.

    Args:
        default_address: where stages without an address of their own are (embedded: this server's port).
        local: a channel to this process's own stages (embedded mode's in-process channel); used instead of
            default_address for the stages without an address.
        token: the bearer token sent to the stages (on `local` too: its calls pass the same token check).
    """

    def __init__(
        self,
        settings: GatewaySettings,
        default_address: str,
        max_message_mb: int = 32,
        *,
        local: InProcessChannel | None = None,
        token: str = "",
    ) -> None:
        endpoints: dict[str, StageEndpoint] = {name: getattr(settings, name) for name in STUBS}
        by_address: dict[str, list[str]] = {}
        for name, endpoint in endpoints.items():
            by_address.setdefault(endpoint.address or default_address, []).append(name)
        self._channels: dict[str, grpc.aio.Channel] = {}
        self.clients: dict[str, StageClient] = {}
        for address, names in by_address.items():
            retries = {n: endpoints[n].retries for n in names}
            in_process = local if local is not None and address == default_address else None
            channel = stage_channel(address, retries, max_message_mb, local=in_process)
            if in_process is None:
                self._channels[address] = channel
            for n in names:
                self.clients[n] = StageClient(n, channel, endpoints[n], token)

    def __getitem__(self, name: str) -> StageClient:
        return self.clients[name]

    async def close(self) -> None:
        for ch in self._channels.values():
            await ch.close()

    # ---- embedding ---------------------------------------------------------------------------------------------
    async def embed_images(self, images: Sequence[bytes], deadline: Deadline) -> Embedded:
        req = embedding_pb2.EmbedImagesRequest(images=[common_pb2.Image(data=b) for b in images])
        resp = await self["embedding"].call("EmbedImages", req, deadline)
        return Embedded([list(e.values) for e in resp.embeddings], resp.model_id, resp.compute_ms, resp.preprocess_ms)

    async def embed_texts(self, texts: Sequence[str], deadline: Deadline) -> list[list[float]]:
        resp = await self["embedding"].call("EmbedTexts", embedding_pb2.EmbedTextsRequest(texts=texts), deadline)
        return [list(e.values) for e in resp.embeddings]

    async def embedding_info(self, deadline: Deadline) -> EncoderInfo:
        """What the embedding stage embeds with (its model id, vector size, whether it embeds texts)."""
        resp = await self["embedding"].call("Info", embedding_pb2.EmbeddingInfoRequest(), deadline)
        return EncoderInfo(resp.model_id, resp.dim, resp.texts, resp.patch_tokens)

    # ---- retrieval ---------------------------------------------------------------------------------------------
    async def search(
        self,
        vector: Sequence[float],
        *,
        line_id: str,
        dataset: str,
        category: str,
        k: int,
        mode: str,
        seed: int,
        exclude_sha256: str,
        deadline: Deadline,
    ) -> tuple[list[Reference], float]:
        """The references and the stage's compute_ms."""
        req = retrieval_pb2.SearchRequest(
            vector=vector,
            line_id=line_id,
            dataset=dataset,
            category=category,
            k=k,
            mode=to_enum(REFERENCE_MODE_ENUM, mode, "reference_mode"),
            seed=seed,
            exclude_sha256=exclude_sha256,
        )
        resp = await self["retrieval"].call("Search", req, deadline)
        return [_reference(h) for h in resp.hits], resp.compute_ms

    async def infer_category(
        self,
        vector: Sequence[float],
        *,
        line_id: str,
        dataset: str,
        text_vectors: dict[str, list[float]],
        deadline: Deadline,
    ) -> CategoryGuess:
        req = retrieval_pb2.InferCategoryRequest(
            vector=vector,
            line_id=line_id,
            dataset=dataset,
            category_text_vectors={n: common_pb2.Vector(values=v) for n, v in text_vectors.items()},
        )
        resp = await self["retrieval"].call("InferCategory", req, deadline)
        return CategoryGuess(resp.category, resp.dataset, resp.confidence, resp.compute_ms)

    async def stats(
        self,
        line_id: str,
        dataset: str,
        category: str,
        deadline: Deadline,
        *,
        list_limit: int = 0,
        page_token: str = "",
        sha256: str = "",
    ) -> MemoryStats:
        req = retrieval_pb2.StatsRequest(
            line_id=line_id,
            dataset=dataset,
            category=category,
            list_limit=list_limit,
            page_token=page_token,
            sha256=sha256,
        )
        resp = await self["retrieval"].call("Stats", req, deadline)
        return MemoryStats(
            total=resp.total,
            categories=sorted({c.category for c in resp.counts if c.count > 0}),
            items=[MemoryItem(p.id, p.uri, p.sha256, p.line_id, p.dataset, p.category, p.label) for p in resp.points],
            next_page_token=resp.next_page_token,
            counts=[ProductCount(c.line_id, c.dataset, c.category, c.count) for c in resp.counts if c.count > 0],
            dim=resp.dim,
            engine=resp.engine,
        )

    async def upsert(
        self, points: Sequence[tuple[Sequence[float], MemoryItem]], deadline: Deadline
    ) -> tuple[list[str], int, int]:
        """(vector, item) pairs into the memory; (ids, added, existing)."""
        req = retrieval_pb2.UpsertRequest(
            points=[
                retrieval_pb2.MemoryPoint(
                    vector=vector,
                    uri=p.uri,
                    sha256=p.sha256,
                    label=p.label,
                    line_id=p.line_id,
                    dataset=p.dataset,
                    category=p.category,
                )
                for vector, p in points
            ]
        )
        resp = await self["retrieval"].call("Upsert", req, deadline)
        return list(resp.ids), resp.added, resp.existing

    async def delete(self, line_id: str, dataset: str, category: str, ids: Sequence[str], deadline: Deadline) -> int:
        req = retrieval_pb2.DeleteRequest(line_id=line_id, dataset=dataset, category=category, ids=ids)
        return (await self["retrieval"].call("Delete", req, deadline)).deleted

    # ---- knowledge ---------------------------------------------------------------------------------------------
    async def get_context(
        self,
        *,
        dataset: str,
        category: str,
        question: str,
        options: dict[str, str],
        question_type: str,
        mode: str,
        deadline: Deadline,
        degraded: list[str],
        refine: bool = False,
    ) -> Knowledge:
        req = knowledge_pb2.GetContextRequest(
            dataset=dataset,
            category=category,
            question=common_pb2.Question(
                text=question, options=options, type=to_enum(QUESTION_TYPE_ENUM, question_type, "question.type")
            ),
            mode=to_enum(KNOWLEDGE_MODE_ENUM, mode, "knowledge_mode"),
            refine=refine,
        )
        resp = await self["knowledge"].call("GetContext", req, deadline, degraded=degraded)
        return Knowledge(
            resp.text, list(resp.entry_ids), [p.id for p in resp.passages], resp.model_id, resp.compute_ms,
            [Passage(p.id, p.text, p.score) for p in resp.passages],
        )  # fmt: skip

    async def list_entries(self, deadline: Deadline) -> list[Entry]:
        """Every knowledge entry, as the Knowledge stage's own domain values."""
        resp = await self["knowledge"].call("ListEntries", knowledge_pb2.ListEntriesRequest(), deadline)
        return [
            Entry(
                dataset=e.dataset,
                category=e.category,
                display_name=e.display_name,
                normal=e.normal,
                defects=tuple(
                    Defect(name=d.name, display_name=d.display_name, **{f: getattr(d, f) for f in DEFECT_FIELDS})
                    for d in e.defects
                ),
                version=e.version,
            )
            for e in resp.entries
        ]

    async def put_entry(self, entry: bytes, deadline: Deadline) -> tuple[str, int]:
        """Store a serialized KnowledgeEntry; (id, version)."""
        req = knowledge_pb2.PutEntryRequest(entry=knowledge_pb2.KnowledgeEntry.FromString(entry))
        resp = await self["knowledge"].call("PutEntry", req, deadline)
        return resp.id, resp.version

    async def find_entry(self, dataset: str, category: str, deadline: Deadline) -> KnowledgeFound:
        """The entry of (dataset, category), serialized (b"" when there is none), and why the stage is degraded."""
        degraded: list[str] = []
        req = knowledge_pb2.ListEntriesRequest(dataset=dataset)
        resp = await self["knowledge"].call("ListEntries", req, deadline, degraded=degraded)
        entry = next((e for e in resp.entries if e.category == category), None)
        return KnowledgeFound(entry.SerializeToString() if entry is not None else b"", degraded)

    # ---- evidence ----------------------------------------------------------------------------------------------
    async def analyze(
        self, image: bytes, *, line_id: str, dataset: str, category: str, images: bool, deadline: Deadline
    ) -> Analyzed:
        """The query against its product's bank of normal patches; `images`: also the heat map and overlay."""
        req = evidence_pb2.AnalyzeRequest(
            line_id=line_id,
            dataset=dataset,
            category=category,
            image=common_pb2.Image(data=image),
            options=evidence_pb2.AnalyzeOptions(return_heatmap=images, return_overlay=images),
        )
        r = await self["evidence"].call("Analyze", req, deadline)
        evidence = Evidence(r.score, r.threshold, r.anomalous, [_box(b) for b in r.boxes], r.backbone_id, r.summary,
                            review_threshold=r.review_threshold, band=r.band)  # fmt: skip
        kept = None
        if images and r.HasField("heatmap"):
            h = r.heatmap
            kept = EvidenceImages(HeatMap(h.png, h.width, h.height, h.scale), r.overlay_png)
        return Analyzed(evidence, kept, r.compute_ms)

    async def classify_defect(
        self,
        image: bytes,
        *,
        line_id: str,
        dataset: str,
        category: str,
        candidates: Sequence[str],
        with_image: bool,
        deadline: Deadline,
    ) -> DefectFound:
        """The query's top evidence box against the product's confirmed defects (of the candidates' types);
        `with_image`: also the nearest confirmed defect's image (an MLLM's extra example)."""
        req = evidence_pb2.ClassifyDefectRequest(
            line_id=line_id,
            dataset=dataset,
            category=category,
            image=common_pb2.Image(data=image),
            candidate_types=candidates,
            return_nearest_image=with_image,
        )
        r = await self["evidence"].call("ClassifyDefect", req, deadline)
        votes = ", ".join(f"{v.defect_type} {v.weight:.2f} (distance {v.distance:.3g})" for v in r.votes)
        summary = f"nearest confirmed defects of this product ({r.library_size} in its library): {votes}"
        return DefectFound(r.defect_type, summary, r.nearest_image, r.nearest.defect_type)

    async def add_to_bank(
        self, line_id: str, dataset: str, category: str, images: Sequence[bytes], deadline: Deadline
    ) -> BankState:
        """Normal images into the product's evidence bank (idempotent by content hash; it recalibrates)."""
        req = evidence_pb2.AddBankImagesRequest(
            line_id=line_id, dataset=dataset, category=category, images=[common_pb2.Image(data=b) for b in images]
        )
        r = await self["evidence"].call("AddNormalImages", req, deadline)
        return BankState(r.bank.images, r.bank.calibration.threshold, r.added, r.existing)

    async def bank_stats(
        self, line_id: str, dataset: str, category: str, deadline: Deadline
    ) -> dict[tuple[str, str], BankState]:
        """Each of the line's banks, keyed by (dataset, category); added/existing are 0 (nothing was added)."""
        req = evidence_pb2.BankStatsRequest(line_id=line_id, dataset=dataset, category=category)
        r = await self["evidence"].call("BankStats", req, deadline)
        return {
            (b.dataset, b.category): BankState(b.images, b.calibration.threshold, 0, 0, features_line(b))
            for b in r.banks
        }

    async def delete_bank(
        self, line_id: str, dataset: str, category: str, deadline: Deadline, shas: Sequence[str] = ()
    ) -> int:
        """The whole bank, or only these images (by content hash); the images it removed."""
        req = evidence_pb2.DeleteBankRequest(line_id=line_id, dataset=dataset, category=category, sha256=shas)
        return (await self["evidence"].call("DeleteBank", req, deadline)).deleted_images

    async def add_defect(
        self,
        line_id: str,
        dataset: str,
        category: str,
        image: bytes,
        defect_type: str,
        box: common_pb2.EvidenceBox | None,
        inspection_id: str,
        deadline: Deadline,
    ) -> int:
        """A confirmed defect into the product's library (idempotent by image, type and box); the library's size."""
        req = evidence_pb2.AddDefectRequest(
            line_id=line_id, dataset=dataset, category=category, image=common_pb2.Image(data=image),
            defect_type=defect_type, box=box, inspection_id=inspection_id,
        )  # fmt: skip
        return (await self["evidence"].call("AddDefect", req, deadline)).library_size

    async def remove_defect(self, line_id: str, dataset: str, category: str, sha256: str, deadline: Deadline) -> int:
        """Every library entry of this image leaves (an operator changed their mind); how many did."""
        req = evidence_pb2.RemoveDefectRequest(line_id=line_id, dataset=dataset, category=category, sha256=sha256)
        return (await self["evidence"].call("RemoveDefect", req, deadline)).removed

    # ---- decision ----------------------------------------------------------------------------------------------
    async def decide(self, ask: DecisionAsk, deadline: Deadline) -> Decided:
        req = decision_pb2.DecideRequest(
            request_id=ask.request_id,
            query_image=common_pb2.Image(data=ask.image),
            reference_images=[common_pb2.Image(data=b) for b in ask.reference_images],
            knowledge=ask.knowledge,
            question=common_pb2.Question(
                text=ask.question,
                options=ask.options,
                type=to_enum(QUESTION_TYPE_ENUM, ask.question_type, "question.type"),
            ),
            reasoning=ask.reasoning,
            answer_format=to_enum(ANSWER_FORMAT_ENUM, ask.answer_format, "answer_format"),
            return_prompt=ask.return_prompt,
            category=ask.category,
        )
        if ask.evidence is not None:
            req.evidence.CopyFrom(evidence_to_proto(ask.evidence))
            req.evidence.overlay_png = ask.evidence_overlay
        if ask.defect_example:
            req.defect_example.data = ask.defect_example
            req.defect_example_type = ask.defect_example_type
        r = await self["decision"].call("Decide", req, deadline)
        return Decided(
            r.answer, r.unparsed, r.raw_reply, r.reasoning, r.prompt, r.model_id, r.compute_ms, r.preprocess_ms,
            dict(r.scores), r.prompt_sha256, r.model_kind or "mllm",
        )  # fmt: skip


def features_line(bank: evidence_pb2.BankInfo) -> str:
    """One line about a bank's features: the self-configuration's choice and why, or why the fixed ones."""
    sc = bank.self_config
    if not bank.HasField("self_config"):
        return f"fixed features ({bank.backbone_id})"
    if sc.status == "chosen":
        ok = sum(c.status == "ok" for c in sc.candidates)
        tried = "; ".join(
            f"{c.name} {c.auroc:.3f}" if c.status == "ok" else f"{c.name} {c.status}" for c in sc.candidates
        )
        return (
            f"self-configured {sc.chosen} ({sc.image_score}, global {sc.global_score}): self-test AUROC "
            f"{sc.auroc:.3f}, {sc.latency_ms:.0f} ms per image, {ok} of {len(sc.candidates)} candidates within "
            f"{sc.latency_budget_ms:.0f} ms, chosen in {sc.seconds:.0f} s [{tried}]"
        )
    return f"fixed features {sc.chosen} ({sc.status}: {sc.note})"
