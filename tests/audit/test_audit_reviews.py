"""The review queue and operator confirmations in both audit stores, and across a restart of each."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from auditkit import T0_MS, make_record

from echo.v1 import inspector_pb2
from services.audit.files import REVIEWS_FILE, FileAuditLog
from services.audit.redis_store import RedisAuditLog
from services.audit.store import AuditQuery

GOOD, DEFECT = inspector_pb2.VERDICT_GOOD, inspector_pb2.VERDICT_DEFECT


@pytest.fixture(params=["files", "redis"])
def open_store(request: pytest.FixtureRequest, tmp_path: Path):  # type: ignore[no-untyped-def]
    """Opens a store of each kind on the same place every time (a restart reads what the last one wrote)."""
    if request.param == "files":
        return lambda: FileAuditLog(tmp_path / "audit")
    server = request.getfixturevalue("aof_redis")
    return lambda: RedisAuditLog(server.url)


def _flagged(request_id: str, line_id: str = "line-a", time_ms: int = T0_MS) -> inspector_pb2.InspectionRecord:
    record = make_record(request_id, line_id=line_id, time_ms=time_ms)
    record.trace.review, record.trace.review_reason = "pending", "the decision model and the evidence disagree"
    return record


def _confirmation(inspection_id: str, verdict: int, by: str, ms: int, line_id: str = "line-a"):  # type: ignore[no-untyped-def]
    return inspector_pb2.ReviewConfirmation(
        line_id=line_id, inspection_id=inspection_id, verdict=verdict, by=by, time_unix_ms=ms,
        defect_type="crack" if verdict == DEFECT else "", category="screw", dataset="Synthetic",
    )  # fmt: skip


async def _fill(store) -> None:  # type: ignore[no-untyped-def]
    for i in range(6):  # r1, r3, r5 flagged for review
        await store.append(_flagged(f"r{i}", time_ms=T0_MS + i) if i % 2 else make_record(f"r{i}", time_ms=T0_MS + i))
        await asyncio.sleep(0.002)
    await store.append(_flagged("b0", line_id="line-b"))
    await store.append_confirmation(_confirmation("r1", GOOD, "lead-1", T0_MS + 100))
    await store.append_confirmation(_confirmation("r1", DEFECT, "lead-2", T0_MS + 200))  # the later one stands
    await store.append_confirmation(_confirmation("b0", GOOD, "lead-b", T0_MS + 300, line_id="line-b"))


async def test_only_flagged_records_make_the_queue_and_every_confirmation_is_kept_in_order(open_store) -> None:  # type: ignore[no-untyped-def]
    store = open_store()
    await _fill(store)
    queued, _ = await store.query(AuditQuery("line-a", review_only=True))
    assert [r.request_id for r in queued] == ["r5", "r3", "r1"]
    kept = await store.confirmations("line-a", "r1")
    assert [(c.verdict, c.by) for c in kept] == [(GOOD, "lead-1"), (DEFECT, "lead-2")]
    assert [c.inspection_id for c in await store.confirmations("line-a")] == ["r1", "r1"]  # within its line
    assert [c.by for c in await store.confirmations("line-b")] == ["lead-b"]
    await store.close()


async def test_the_queue_and_confirmations_survive_a_restart(open_store) -> None:  # type: ignore[no-untyped-def]
    store = open_store()
    await _fill(store)
    await store.close()
    again = open_store()
    queued, _ = await again.query(AuditQuery("line-a", review_only=True))
    assert [r.request_id for r in queued] == ["r5", "r3", "r1"] and queued[0].trace.review == "pending"
    kept = await again.confirmations("line-a", "r1")
    assert [(c.verdict, c.defect_type, c.by, c.time_unix_ms) for c in kept] == [
        (GOOD, "", "lead-1", T0_MS + 100),
        (DEFECT, "crack", "lead-2", T0_MS + 200),
    ]
    await again.close()


async def test_a_rebuilt_files_index_finds_the_queue_again_and_a_torn_confirmation_is_cut(tmp_path: Path) -> None:
    store = FileAuditLog(tmp_path / "audit")
    await _fill(store)
    await store.close()
    (tmp_path / "audit" / "index.sqlite").unlink()  # the segments are the truth
    with open(tmp_path / "audit" / REVIEWS_FILE, "ab") as f:
        f.write(b'{"line_id":"line-a","inspection_id":"r3"')  # a write cut short: never acknowledged
    again = FileAuditLog(tmp_path / "audit")
    assert [r.request_id for r in (await again.query(AuditQuery("line-a", review_only=True)))[0]] == ["r5", "r3", "r1"]
    assert [c.inspection_id for c in await again.confirmations("line-a")] == ["r1", "r1"]
    await again.append_confirmation(_confirmation("r3", GOOD, "lead-3", T0_MS + 400))
    await again.close()
    third = FileAuditLog(tmp_path / "audit")
    assert [c.inspection_id for c in await third.confirmations("line-a")] == ["r1", "r1", "r3"]
    await third.close()
