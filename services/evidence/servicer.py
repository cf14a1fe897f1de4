"""gRPC face of the evidence stage: proto <-> EvidenceService, one call per RPC."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc

from echo.v1 import common_pb2, evidence_pb2, evidence_pb2_grpc
from services.common.errors import grpc_errors
from services.common.images import encode_png, image_bytes
from services.common.values import Box
from services.evidence.calibration import Calibration
from services.evidence.core import BankInfo, EvidenceResult, EvidenceService
from services.evidence.defects import DefectEntry


def _calibration(c: Calibration | None) -> evidence_pb2.Calibration | None:
    if c is None:
        return None
    return evidence_pb2.Calibration(
        threshold=c.threshold,
        policy=c.policy,
        images=c.images,
        far_target=c.far_target,
        far_in_sample=c.far_in_sample,
        note=c.note,
        review_threshold=c.review_threshold,
        method=c.method,
    )


def _self_config(r: dict[str, Any] | None) -> evidence_pb2.SelfConfig | None:
    if not r:
        return None

    def num(v: Any) -> float:
        return float(v) if v is not None else 0.0

    return evidence_pb2.SelfConfig(
        status=r.get("status", ""),
        chosen=r.get("chosen", ""),
        image_score=r.get("image_score", ""),
        global_score=r.get("global_score", ""),
        auroc=num(r.get("auroc")),
        latency_ms=num(r.get("latency_ms")),
        seconds=num(r.get("seconds")),
        needs_more_images=int(r.get("needs_more_images", 0)),
        note=r.get("note", ""),
        latency_budget_ms=num(r.get("latency_budget_ms")),
        candidates=[
            evidence_pb2.SelfConfigCandidate(
                name=c["name"],
                auroc=num(c.get("auroc")),
                auroc_local=num(c.get("auroc_local")),
                auroc_global=num(c.get("auroc_global")),
                latency_ms=num(c.get("latency_ms")),
                status=c.get("status", ""),
                image_score=c.get("image_score", ""),
                global_score=c.get("global_score", ""),
            )
            for c in r.get("candidates", [])
        ],
    )


def _bank(b: BankInfo) -> evidence_pb2.BankInfo:
    return evidence_pb2.BankInfo(
        line_id=b.line_id,
        dataset=b.dataset,
        category=b.category,
        images=b.images,
        memory_patches=b.memory_patches,
        patches_seen=b.patches_seen,
        backbone_id=b.backbone_id,
        generation=b.generation,
        updated_at=b.updated_at,
        calibration=_calibration(b.calibration),
        self_config=_self_config(b.self_config),
        global_calibration=_calibration(b.global_calibration),
    )


def _box(b: Box) -> common_pb2.EvidenceBox:
    return common_pb2.EvidenceBox(**vars(b))


def _box_in(request: evidence_pb2.AddDefectRequest | evidence_pb2.ClassifyDefectRequest) -> Box | None:
    """The request's box, None when unset (the evidence's top box then)."""
    if not request.HasField("box"):
        return None
    b = request.box
    return Box(b.x0, b.y0, b.x1, b.y1, b.score, b.region, b.area, b.above_threshold)


def _entry(e: DefectEntry) -> evidence_pb2.DefectEntry:
    return evidence_pb2.DefectEntry(
        sha256=e.sha256, defect_type=e.defect_type, box=_box(e.box), inspection_id=e.inspection_id, added_at=e.added_at
    )


def _response(r: EvidenceResult) -> evidence_pb2.AnalyzeResponse:
    heat = None
    if r.heatmap_png is not None:
        heat = common_pb2.HeatMap(png=r.heatmap_png, width=r.width, height=r.height, scale=r.heatmap_scale)
    return evidence_pb2.AnalyzeResponse(
        score=r.score,
        threshold=r.threshold,
        anomalous=r.anomalous,
        boxes=[
            common_pb2.EvidenceBox(
                x0=b.x0,
                y0=b.y0,
                x1=b.x1,
                y1=b.y1,
                score=b.score,
                region=b.region,
                area=b.area,
                above_threshold=b.above_threshold,
            )
            for b in r.boxes
        ],
        heatmap=heat,
        overlay_png=r.overlay_png or b"",
        backbone_id=r.backbone_id,
        compute_ms=r.compute_ms,
        bank_images=r.bank_images,
        calibration=_calibration(r.calibration),
        summary=r.summary,
        width=r.width,
        height=r.height,
        local_score=r.local_score,
        global_score=r.global_score,
        global_threshold=r.global_threshold,
        fired=r.fired,
        review_threshold=r.review_threshold,
        band=r.band,
    )


class EvidenceServicer(evidence_pb2_grpc.EvidenceServicer):
    def __init__(self, service: EvidenceService) -> None:
        self.service = service

    @grpc_errors
    async def Analyze(
        self, request: evidence_pb2.AnalyzeRequest, context: grpc.aio.ServicerContext
    ) -> evidence_pb2.AnalyzeResponse:
        r, o = request, request.options
        if r.image.WhichOneof("source") == "uri":  # a file to read: off the event loop
            image = await asyncio.to_thread(image_bytes, r.image, field="image")
        else:  # bytes in the message: no thread hop for what costs nothing
            image = image_bytes(r.image, field="image")
        result = await self.service.analyze(
            r.line_id, r.dataset, r.category, image, o.return_heatmap, o.return_overlay, o.max_boxes, o.threshold
        )
        return _response(result)

    @grpc_errors
    async def AddNormalImages(
        self, request: evidence_pb2.AddBankImagesRequest, context: grpc.aio.ServicerContext
    ) -> evidence_pb2.AddBankImagesResponse:
        r = request
        images = [image_bytes(img, field=f"images[{i}]") for i, img in enumerate(r.images)]
        res = await asyncio.to_thread(self.service.add_normal_images, r.line_id, r.dataset, r.category, images)
        return evidence_pb2.AddBankImagesResponse(added=res.added, existing=res.existing, bank=_bank(res.bank))

    @grpc_errors
    async def BankStats(
        self, request: evidence_pb2.BankStatsRequest, context: grpc.aio.ServicerContext
    ) -> evidence_pb2.BankStatsResponse:
        r = request
        banks = await asyncio.to_thread(self.service.stats, r.line_id, r.dataset, r.category)
        return evidence_pb2.BankStatsResponse(banks=[_bank(b) for b in banks], backbone_id=self.service.backbone_id)

    @grpc_errors
    async def DeleteBank(
        self, request: evidence_pb2.DeleteBankRequest, context: grpc.aio.ServicerContext
    ) -> evidence_pb2.DeleteBankResponse:
        r = request
        n = await asyncio.to_thread(self.service.delete_bank, r.line_id, r.dataset, r.category, list(r.sha256))
        return evidence_pb2.DeleteBankResponse(deleted_images=n)

    @grpc_errors
    async def AddDefect(
        self, request: evidence_pb2.AddDefectRequest, context: grpc.aio.ServicerContext
    ) -> evidence_pb2.AddDefectResponse:
        r = request
        image = await asyncio.to_thread(image_bytes, r.image, field="image")
        res = await asyncio.to_thread(
            self.service.defects.add,
            r.line_id, r.dataset, r.category, image, r.defect_type, _box_in(r), r.inspection_id,
        )  # fmt: skip
        return evidence_pb2.AddDefectResponse(
            added=res.added, entry=_entry(res.entry), library_size=res.library_size, types=res.types
        )

    @grpc_errors
    async def RemoveDefect(
        self, request: evidence_pb2.RemoveDefectRequest, context: grpc.aio.ServicerContext
    ) -> evidence_pb2.RemoveDefectResponse:
        r = request
        removed, size = await asyncio.to_thread(self.service.defects.remove, r.line_id, r.dataset, r.category, r.sha256)
        return evidence_pb2.RemoveDefectResponse(removed=removed, library_size=size)

    @grpc_errors
    async def ClassifyDefect(
        self, request: evidence_pb2.ClassifyDefectRequest, context: grpc.aio.ServicerContext
    ) -> evidence_pb2.ClassifyDefectResponse:
        r = request
        image = await asyncio.to_thread(image_bytes, r.image, field="image")
        res = await self.service.defects.classify(
            r.line_id, r.dataset, r.category, image, _box_in(r), list(r.candidate_types), r.k
        )
        c = res.classified
        nearest_image = b""
        if r.return_nearest_image:
            key = self.service._key(r.line_id, r.dataset, r.category)
            nearest_image = await asyncio.to_thread(self.service.defects.store.get_image, key, c.nearest.sha256) or b""
        return evidence_pb2.ClassifyDefectResponse(
            nearest_image=nearest_image,
            defect_type=c.defect_type,
            votes=[
                evidence_pb2.DefectVote(defect_type=v.defect_type, weight=v.weight, distance=v.distance)
                for v in c.votes
            ],
            library_size=c.library_size,
            box=_box(res.box),
            nearest=_entry(c.nearest),
        )

    async def close(self) -> None:
        """Stop the pipeline and its threads."""
        await self.service.close()

    async def check_health(self) -> None:
        """A real backbone call on a small image through the pipeline, and a read of the bank store."""
        from PIL import Image

        grid, _ = await self.service.extract(encode_png(Image.new("RGB", (8, 8), (128, 128, 128))), "probe")
        if grid.ndim != 3 or not grid.size:
            raise RuntimeError(f"health probe gave patch features of shape {grid.shape}")
        await asyncio.to_thread(self.service.store.probe)
