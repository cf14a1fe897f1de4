"""Both audit stores answer the same queries the same way: files (embedded) and Redis streams (cluster)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from auditkit import T0_MS, make_record

from echo.v1 import inspector_pb2
from services.audit.files import FileAuditLog
from services.audit.redis_store import RedisAuditLog
from services.audit.store import AuditQuery
from services.common.errors import InvalidArgument

GOOD, DEFECT = inspector_pb2.VERDICT_GOOD, inspector_pb2.VERDICT_DEFECT


@pytest.fixture(params=["files", "redis"])
def open_store(request: pytest.FixtureRequest, tmp_path: Path):  # type: ignore[no-untyped-def]
    """A function that opens a fresh store of each kind (Redis: a real redis-server with appendfsync always)."""
    if request.param == "files":
        return lambda: FileAuditLog(tmp_path / "audit")
    server = request.getfixturevalue("aof_redis")
    return lambda: RedisAuditLog(server.url)


async def _fill(store) -> None:  # type: ignore[no-untyped-def]
    """Ten records on line-a (alternating screw / round_part, every third a defect) and two on line-b."""
    for i in range(10):
        await store.append(
            make_record(
                f"r{i}",
                category="screw" if i % 2 == 0 else "round_part",
                verdict=DEFECT if i % 3 == 0 else GOOD,
                time_ms=T0_MS + i * 1000,
            )
        )
        await asyncio.sleep(0.002)  # Redis stream ids carry the server's clock: keep them apart
    for i in range(2):
        await store.append(make_record(f"b{i}", line_id="line-b"))


def _ids(records) -> list[str]:  # type: ignore[no-untyped-def]
    return [r.request_id for r in records]


async def test_records_come_back_newest_first_and_stay_within_their_line(open_store) -> None:  # type: ignore[no-untyped-def]
    store = open_store()
    await _fill(store)
    records, cursor = await store.query(AuditQuery("line-a"))
    assert _ids(records) == [f"r{i}" for i in reversed(range(10))] and cursor == ""
    assert records[0] == make_record("r9", category="round_part", verdict=DEFECT, time_ms=T0_MS + 9000)
    assert _ids((await store.query(AuditQuery("line-b")))[0]) == ["b1", "b0"]
    assert (await store.query(AuditQuery("line-c")))[0] == []
    await store.close()


async def test_filters_by_category_verdict_and_dataset_combine(open_store) -> None:  # type: ignore[no-untyped-def]
    store = open_store()
    await _fill(store)
    screws = (await store.query(AuditQuery("line-a", category="screw")))[0]
    assert _ids(screws) == ["r8", "r6", "r4", "r2", "r0"]
    defects = (await store.query(AuditQuery("line-a", verdict=DEFECT)))[0]
    assert _ids(defects) == ["r9", "r6", "r3", "r0"]
    assert _ids((await store.query(AuditQuery("line-a", category="screw", verdict=DEFECT)))[0]) == ["r6", "r0"]
    assert (await store.query(AuditQuery("line-a", dataset="VisA")))[0] == []
    await store.close()


async def test_pages_follow_each_other_without_gaps_or_repeats_both_ways(open_store) -> None:  # type: ignore[no-untyped-def]
    store = open_store()
    await _fill(store)
    for oldest_first in (False, True):
        seen, cursor = [], ""
        while True:
            page, cursor = await store.query(AuditQuery("line-a", limit=3, cursor=cursor, oldest_first=oldest_first))
            assert len(page) <= 3
            seen += _ids(page)
            if not cursor:
                break
        expected = [f"r{i}" for i in range(10)]
        assert seen == (expected if oldest_first else expected[::-1])
    filtered, cursor = await store.query(AuditQuery("line-a", verdict=DEFECT, limit=2))
    assert _ids(filtered) == ["r9", "r6"]
    assert _ids((await store.query(AuditQuery("line-a", verdict=DEFECT, limit=2, cursor=cursor)))[0]) == ["r3", "r0"]
    await store.close()


async def test_get_returns_the_latest_record_of_a_request_id_on_its_line_only(open_store) -> None:  # type: ignore[no-untyped-def]
    store = open_store()
    await _fill(store)
    await store.append(make_record("r3", verdict=GOOD, category="retried"))  # a client retried the same id
    got = await store.get("line-a", "r3")
    assert got is not None and got.category == "retried"
    assert await store.get("line-b", "r3") is None
    assert await store.get("line-a", "nope") is None
    await store.close()


async def test_images_are_known_per_line(open_store) -> None:  # type: ignore[no-untyped-def]
    store = open_store()
    q, ref, overlay = "a" * 64, "b" * 64, "c" * 64
    await store.append(make_record("x", image_sha256=q, reference_sha256=ref, overlay_sha256=overlay))
    for sha in (q, ref, overlay):
        assert await store.has_image("line-a", sha)
        assert not await store.has_image("line-b", sha)
    assert not await store.has_image("line-a", "d" * 64)
    await store.close()


async def test_records_survive_reopening_the_store(open_store) -> None:  # type: ignore[no-untyped-def]
    store = open_store()
    await _fill(store)
    await store.close()
    store = open_store()
    assert _ids((await store.query(AuditQuery("line-a", limit=3)))[0]) == ["r9", "r8", "r7"]
    await store.close()


async def test_a_page_token_from_elsewhere_is_refused_naming_the_field(open_store) -> None:  # type: ignore[no-untyped-def]
    store = open_store()
    with pytest.raises(InvalidArgument, match=r"^page_token: "):
        await store.query(AuditQuery("line-a", cursor="not-a-token"))
    await store.close()


async def test_time_bounds_select_records_by_their_own_time(open_store) -> None:  # type: ignore[no-untyped-def]
    import time

    store = open_store()
    now = int(time.time() * 1000)
    for i in range(6):
        await store.append(make_record(f"t{i}", time_ms=now - (6 - i) * 60_000))  # one a minute, the last 1 min ago
    since = (await store.query(AuditQuery("line-a", since_ms=now - 3 * 60_000)))[0]
    assert _ids(since) == ["t5", "t4", "t3"]
    window = (await store.query(AuditQuery("line-a", since_ms=now - 5 * 60_000, until_ms=now - 2 * 60_000)))[0]
    assert _ids(window) == ["t3", "t2", "t1"]  # since is inclusive, until exclusive
    oldest = (await store.query(AuditQuery("line-a", until_ms=now - 4 * 60_000, oldest_first=True)))[0]
    assert _ids(oldest) == ["t0", "t1"]
    await store.close()
