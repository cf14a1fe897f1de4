"""The operator in the loop: the review queue of a line, and confirmations that teach the product.

An answer the line should not trust blindly (the evidence scored the part in its review band, or a real
model and the evidence disagree) is given at once and marked `review: pending` in its trace; its audit
record is the queue entry. An operator's confirmation is an audit record of its own (who, when, what it
changed); the latest confirmation of an inspection stands, and the product follows it:

- good (a false alarm): the image joins the product's normal memory and evidence bank through the one ingest
  path (content-addressed; the bank recalibrates), and leaves the defect library if an earlier
  confirmation put it there;
- defect: the image joins the product's defect library (Evidence.AddDefect) with its type and box, and
  leaves the normal memory and bank (the existing delete path) if an earlier "good" put it there.

The records and confirmations are the contract's messages, so this module speaks protos like the audit trail.
"""

from __future__ import annotations

import asyncio
import time

from echo.v1 import common_pb2, inspector_pb2
from services.audit.record import iso_time, verdict_name
from services.audit.store import DEFAULT_LIMIT, MAX_LIMIT, AuditQuery
from services.common.errors import FailedPrecondition, InvalidArgument, NotFound
from services.common.names import MAX_DEFECT_TYPE_CHARS, check_name, defect_type_key
from services.common.stage_client import Deadline
from services.gateway.audit import AuditTrail
from services.gateway.core import Inspector
from services.gateway.validation import check_request_id

FORCE_RATIO = 2.0  # a "good" of a part scored over this many times its threshold needs force
MAX_NOTE_CHARS = 500
_GOOD, _DEFECT = inspector_pb2.VERDICT_GOOD, inspector_pb2.VERDICT_DEFECT


def _check_confirm(req: inspector_pb2.ConfirmReviewRequest) -> None:
    """Refuse what cannot be a confirmation, naming the field."""
    check_name(req.line_id, "line_id", required=True)
    check_request_id(req.inspection_id, "inspection_id")
    if req.verdict not in (_GOOD, _DEFECT):
        raise InvalidArgument("must be VERDICT_GOOD or VERDICT_DEFECT (what the part really is)", field="verdict")
    kind = req.defect_type.strip()
    if req.verdict == _DEFECT and not kind:
        raise InvalidArgument("is required with a defect: what kind (e.g. crack, scratch)", field="defect_type")
    if req.verdict == _GOOD and (kind or req.HasField("box")):
        raise InvalidArgument("is only for a defect confirmation", field="defect_type" if kind else "box")
    if len(kind) > MAX_DEFECT_TYPE_CHARS or not kind.isprintable():
        raise InvalidArgument(f"must be printable, at most {MAX_DEFECT_TYPE_CHARS} characters", field="defect_type")
    if req.HasField("box"):
        b = req.box
        if min(b.x0, b.y0) < 0 or b.x1 <= b.x0 or b.y1 <= b.y0:
            raise InvalidArgument(
                f"({b.x0}, {b.y0}, {b.x1}, {b.y1}) is not a region: need 0 <= x0 < x1 and 0 <= y0 < y1", field="box"
            )
    if len(req.note) > MAX_NOTE_CHARS or not req.note.replace("\n", " ").isprintable():
        raise InvalidArgument(f"must be printable, at most {MAX_NOTE_CHARS} characters", field="note")


def _words(c: inspector_pb2.ReviewConfirmation) -> str:
    what = verdict_name(c.verdict) + (f": {c.defect_type}" if c.defect_type else "")
    return f"{what} by {c.by} at {iso_time(c.time_unix_ms)}"


def _same(c: inspector_pb2.ReviewConfirmation, req: inspector_pb2.ConfirmReviewRequest) -> bool:
    """Would this request confirm what already stands (a box given must match the standing one)? Types compare
    as the defect library keys them ("Color defect." is "color_defect"), so the same type in other words
    changes nothing."""
    if c.verdict != req.verdict or defect_type_key(c.defect_type) != defect_type_key(req.defect_type):
        return False
    return not req.HasField("box") or (c.box.x0, c.box.y0, c.box.x1, c.box.y1) == (
        req.box.x0, req.box.y0, req.box.x1, req.box.y1,
    )  # fmt: skip


class Reviews:
    """The queue (ListReviews) and the confirmations (ConfirmReview) of every line."""

    def __init__(self, inspector: Inspector, audit: AuditTrail) -> None:
        self.inspector = inspector
        self.audit = audit
        self._lock = asyncio.Lock()  # one confirmation at a time: the standing one is read, then replaced

    # ------------------------------------------------------------------ the queue
    async def list(self, req: inspector_pb2.ListReviewsRequest) -> inspector_pb2.ListReviewsResponse:
        check_name(req.line_id, "line_id", required=True)
        check_name(req.dataset, "dataset", required=False)
        check_name(req.category, "category", required=False)
        if req.state not in inspector_pb2.ReviewState.values():
            raise InvalidArgument(f"{req.state} is not a known ReviewState", field="state")
        if req.inspection_id:
            check_request_id(req.inspection_id, "inspection_id")
        if not 0 <= req.limit <= MAX_LIMIT:
            raise InvalidArgument(f"must be between 0 and {MAX_LIMIT}, got {req.limit}", field="limit")
        if req.page_token and not req.page_token.isdigit():
            raise InvalidArgument(f"{req.page_token[:40]!r} is not a page token from a previous call", "page_token")
        line = req.line_id
        history: dict[str, list[inspector_pb2.ReviewConfirmation]] = {}
        for c in await self.audit.log.confirmations(line, req.inspection_id):
            history.setdefault(c.inspection_id, []).append(c)
        records: dict[str, inspector_pb2.InspectionRecord] = {}
        if req.inspection_id:
            if (found := await self.audit.log.get(line, req.inspection_id)) is not None:
                records[found.request_id] = found
        else:
            cursor = ""
            while True:  # flagged records are a small share of a line's; newest first, the latest of an id wins
                page, cursor = await self.audit.log.query(
                    AuditQuery(line, req.dataset, req.category, limit=MAX_LIMIT, cursor=cursor, review_only=True)
                )
                for r in page:
                    records.setdefault(r.request_id, r)
                if not cursor:
                    break
            for inspection_id in history.keys() - records.keys():  # confirmed without being flagged
                if (found := await self.audit.log.get(line, inspection_id)) is not None:
                    records[inspection_id] = found
        items = []
        for inspection_id, record in records.items():
            if (req.dataset and record.dataset != req.dataset) or (req.category and record.category != req.category):
                continue
            confirmations = history.get(inspection_id, [])
            state = inspector_pb2.REVIEW_CONFIRMED if confirmations else inspector_pb2.REVIEW_PENDING
            items.append(inspector_pb2.ReviewItem(record=record, state=state, confirmations=confirmations))
        pending = sum(i.state == inspector_pb2.REVIEW_PENDING for i in items)
        if req.state:
            items = [i for i in items if i.state == req.state]
        items.sort(
            key=lambda i: (
                i.state != inspector_pb2.REVIEW_PENDING,
                -(i.confirmations[-1].time_unix_ms if i.confirmations else i.record.time_unix_ms),
            )
        )
        start, limit = int(req.page_token or 0), req.limit or DEFAULT_LIMIT
        more = start + limit < len(items)
        return inspector_pb2.ListReviewsResponse(
            items=items[start : start + limit], next_page_token=str(start + limit) if more else "", pending=pending
        )

    # ------------------------------------------------------------------ confirmations
    async def confirm(
        self, req: inspector_pb2.ConfirmReviewRequest, by: str, deadline: Deadline
    ) -> inspector_pb2.ConfirmReviewResponse:
        """Record an operator's confirmation and make the product follow it (see the module docstring).

        Args:
            by: who confirms (the token's name), already checked for the review right.
        """
        _check_confirm(req)
        line = req.line_id
        record = await self.audit.log.get(line, req.inspection_id)
        if record is None:
            raise NotFound(
                f"no inspection {req.inspection_id!r} on line {line!r} (or it is past retention)",
                field="inspection_id",
            )
        if not record.category:
            raise FailedPrecondition(
                f"inspection {req.inspection_id!r} names no product category, so no product can learn from it"
            )
        async with self._lock:
            history = await self.audit.log.confirmations(line, req.inspection_id)
            standing = history[-1] if history else None
            if standing is not None and _same(standing, req):
                return inspector_pb2.ConfirmReviewResponse(
                    confirmation=standing,
                    changed=False,
                    message=f"already confirmed {_words(standing)}: nothing changed",
                )
            e = record.evidence
            if req.verdict == _GOOD and not req.force and e.threshold > 0 and e.score > FORCE_RATIO * e.threshold:
                raise FailedPrecondition(
                    f"scored {e.score:.4g}, over {FORCE_RATIO:g}x the threshold {e.threshold:.4g}: pass force if you "
                    "are sure; a misclick must not teach the line that a broken part is normal",
                    field="force",
                )
            image = await self.audit.image(line, record.image_sha256) if record.image_sha256 else None
            if image is None:
                raise FailedPrecondition(
                    f"the image of inspection {req.inspection_id!r} is no longer kept (past retention), so no product "
                    "can learn from it"
                )
            c = inspector_pb2.ReviewConfirmation(
                line_id=line,
                inspection_id=req.inspection_id,
                verdict=req.verdict,
                defect_type=req.defect_type.strip(),
                note=req.note,
                forced=req.force and req.verdict == _GOOD,
                by=by,
                dataset=record.dataset,
                category=record.category,
                image_sha256=record.image_sha256,
            )
            resp = inspector_pb2.ConfirmReviewResponse(changed=True)
            if req.verdict == _GOOD:
                await self._as_good(record, image, standing, c, resp, deadline)
            else:
                await self._as_defect(record, image, req, standing, c, resp, deadline)
            c.time_unix_ms = int(time.time() * 1000)
            await self.audit.log.append_confirmation(c)  # after the product follows: a retry redoes idempotent steps
        resp.confirmation.CopyFrom(c)
        was = f" (it was {_words(standing)})" if standing is not None else ""
        resp.message = f"confirmed {_words(c)}{was}: {c.outcome}"
        return resp

    async def _as_good(
        self,
        record: inspector_pb2.InspectionRecord,
        image: bytes,
        standing: inspector_pb2.ReviewConfirmation | None,
        c: inspector_pb2.ReviewConfirmation,
        resp: inspector_pb2.ConfirmReviewResponse,
        deadline: Deadline,
    ) -> None:
        line, ds, cat = record.line_id, record.dataset, record.category
        left = ""
        if standing is not None and standing.verdict == _DEFECT:
            removed = await self.inspector.clients.remove_defect(line, ds, cat, record.image_sha256, deadline)
            left = f"; left the defect library ({removed} entries)"
        added = await self.inspector.add_normal_images(line, ds, cat, [image], deadline)
        bank = added.bank
        resp.evidence_bank_images, resp.evidence_threshold = (bank.images, bank.threshold) if bank else (0, 0.0)
        joined = "joined" if added.added or (bank and bank.added) else "was already in"
        c.outcome = (
            f"{joined} the normal memory of {ds}/{cat} and its evidence bank ({resp.evidence_bank_images} images, "
            f"threshold {resp.evidence_threshold:.4g}){left}"
        )

    async def _as_defect(
        self,
        record: inspector_pb2.InspectionRecord,
        image: bytes,
        req: inspector_pb2.ConfirmReviewRequest,
        standing: inspector_pb2.ReviewConfirmation | None,
        c: inspector_pb2.ReviewConfirmation,
        resp: inspector_pb2.ConfirmReviewResponse,
        deadline: Deadline,
    ) -> None:
        line, ds, cat, sha = record.line_id, record.dataset, record.category, record.image_sha256
        if req.HasField("box"):
            c.box.CopyFrom(req.box)
        elif record.evidence.boxes:
            c.box.CopyFrom(record.evidence.boxes[0])
        left = ""
        if standing is not None and standing.verdict == _GOOD:
            held = await self.inspector.clients.stats(line, ds, cat, deadline, list_limit=10, sha256=sha)
            ids = [item.id for item in held.items if item.sha256 == sha]
            deleted = await self.inspector.delete_normal_images(line, ds, cat, ids, deadline) if ids else 0
            left = f"; left the normal memory and evidence bank ({deleted} images)"
        elif standing is not None:  # a defect of another type or box: the old entries go first
            await self.inspector.clients.remove_defect(line, ds, cat, sha, deadline)
        box = common_pb2.EvidenceBox()
        box.CopyFrom(c.box)
        size = await self.inspector.clients.add_defect(
            line, ds, cat, image, c.defect_type, box if c.HasField("box") else None, c.inspection_id, deadline
        )
        resp.defect_library_size = size
        c.outcome = f"joined the defect library of {ds}/{cat} as {c.defect_type} ({size} entries){left}"
