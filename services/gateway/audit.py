"""The Inspector's audit trail: keep one record per answered inspection, and answer queries about them.

The record and the query image are kept before the answer leaves the gateway,
so a caller never holds an answer the plant cannot trace (audit.required). The
records are the contract's own messages (InspectionRecord), so the servicer
hands this class protos; the core only asks it for kept images (plain bytes).
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

from echo.v1 import inspector_pb2
from services.audit.config import AuditSettings
from services.audit.record import Kept, build_record
from services.audit.store import DEFAULT_LIMIT, MAX_LIMIT, AuditLog, AuditQuery
from services.common.errors import InvalidArgument, NotFound, Unavailable
from services.common.images import ImageStore
from services.common.names import check_name
from services.gateway.validation import check_request_id

log = logging.getLogger(__name__)


class AuditTrail:
    """The audit log and the image store it keeps pictures in."""

    def __init__(
        self, log_: AuditLog, images: ImageStore, settings: AuditSettings, memory_images: ImageStore | None = None
    ) -> None:
        self.log = log_
        self.images = images
        self.settings = settings
        self.memory_images = memory_images  # where the references a record points at live

    @classmethod
    def open(cls, settings: AuditSettings, memory_images: ImageStore | None = None) -> AuditTrail:
        """Open the configured log (files: recovered and locked; redis: durability checked). Blocking."""
        images = ImageStore(settings.image_store)
        return cls(open_audit_log(settings, images), images, settings, memory_images)

    async def keep(self, req: inspector_pb2.InspectRequest, resp: inspector_pb2.InspectResponse, kept: Kept) -> None:
        """Store the query image and the record; return once both are durable per audit.fsync."""
        start = time.perf_counter()
        try:
            await self.log.append(build_record(req, resp, kept), kept.images())
        except Exception as e:
            message = f"audit: the record of request {resp.request_id} was not kept ({type(e).__name__}: {e})"
            if self.settings.required:
                log.error("%s; the answer is withheld (audit.required)", message)
                raise Unavailable(f"{message}; the answer is withheld until it can be recorded") from e
            log.warning(message)
            resp.trace.degraded.append(message)
        ms = (time.perf_counter() - start) * 1000.0
        resp.trace.timings.add(stage="audit", ms=ms, compute_ms=ms)  # the caller sees the cost; the record cannot

    async def list_inspections(
        self, req: inspector_pb2.ListInspectionsRequest
    ) -> inspector_pb2.ListInspectionsResponse:
        check_name(req.line_id, "line_id", required=True)
        check_name(req.dataset, "dataset", required=False)
        check_name(req.category, "category", required=False)
        if req.verdict not in inspector_pb2.Verdict.values():
            raise InvalidArgument(f"{req.verdict} is not a known Verdict", field="verdict")
        for name in ("since_unix_ms", "until_unix_ms"):
            if getattr(req, name) < 0:
                raise InvalidArgument(f"must be >= 0, got {getattr(req, name)}", field=name)
        if req.until_unix_ms and req.since_unix_ms >= req.until_unix_ms:
            raise InvalidArgument(
                f"{req.until_unix_ms} is not after since_unix_ms {req.since_unix_ms}", field="until_unix_ms"
            )
        if not 0 <= req.limit <= MAX_LIMIT:
            raise InvalidArgument(f"must be between 0 and {MAX_LIMIT}, got {req.limit}", field="limit")
        records, cursor = await self.log.query(
            AuditQuery(
                line_id=req.line_id,
                dataset=req.dataset,
                category=req.category,
                verdict=req.verdict,
                since_ms=req.since_unix_ms,
                until_ms=req.until_unix_ms,
                limit=req.limit or DEFAULT_LIMIT,
                cursor=req.page_token,
                oldest_first=req.oldest_first,
            )
        )
        return inspector_pb2.ListInspectionsResponse(records=records, next_page_token=cursor)

    async def get_inspection(self, req: inspector_pb2.GetInspectionRequest) -> inspector_pb2.GetInspectionResponse:
        check_name(req.line_id, "line_id", required=True)
        check_request_id(req.request_id)
        record = await self.log.get(req.line_id, req.request_id)
        if record is None:
            raise NotFound(
                f"no inspection {req.request_id!r} on line {req.line_id!r} (or it is past retention)",
                field="request_id",
            )
        return inspector_pb2.GetInspectionResponse(record=record)

    async def image(self, line_id: str, sha256: str) -> bytes | None:
        """An image a record of this line points at: a query or heat map, or a reference (kept in the memory's
        store, and found even after it left the memory)."""
        if not await self.log.has_image(line_id, sha256):
            return None
        for store in (self.images, self.memory_images):
            if store is not None and (data := await asyncio.to_thread(store.get_by_sha256, sha256)) is not None:
                return data
        return None

    async def close(self) -> None:
        await self.log.close()


def open_audit_log(settings: AuditSettings, images: ImageStore) -> AuditLog:
    """The configured store, opened: files recovered and locked, or Redis checked for durability. Blocking."""
    if settings.store == "redis":
        from services.audit.redis_store import RedisAuditLog

        return RedisAuditLog(
            settings.redis_url,
            images=images,
            prefix=settings.redis_prefix,
            fsync=settings.fsync,
            retention_s=settings.retention_days * 86400,
            retention_records=settings.retention_records,
        )
    from services.audit.files import FileAuditLog

    return FileAuditLog(
        Path(settings.dir),
        fsync=settings.fsync,
        fsync_interval_s=settings.fsync_interval_s,
        segment_bytes=int(settings.segment_mb * 1024 * 1024),
        retention_s=settings.retention_days * 86400,
        retention_bytes=int(settings.retention_mb * 1024 * 1024),
        images=images,
    )
