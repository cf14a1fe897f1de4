"""The embedded audit log: segments are the truth, the index follows them, retention drops whole segments."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
from auditkit import T0_MS, make_record

from services.audit.files import FileAuditLog
from services.audit.record import to_json
from services.audit.store import AuditQuery
from services.common.errors import ConfigError
from services.common.images import ImageStore, encode_png


def _segments(folder: Path) -> list[Path]:
    return sorted(folder.glob("seg-*.jsonl"))


async def _ids(store: FileAuditLog, line: str = "line-a") -> list[str]:
    return [r.request_id for r in (await store.query(AuditQuery(line, limit=1000, oldest_first=True)))[0]]


async def test_concurrent_appends_all_land_whole_in_one_line_each(tmp_path: Path) -> None:
    store = FileAuditLog(tmp_path)
    await asyncio.gather(*(store.append(make_record(f"c{i:03d}")) for i in range(200)))
    assert sorted(await _ids(store)) == [f"c{i:03d}" for i in range(200)]
    lines = _segments(tmp_path)[0].read_bytes().splitlines()
    assert len(lines) == 200 and all(line.startswith(b"{") and line.endswith(b"}") for line in lines)
    await store.close()


async def test_a_torn_last_line_is_cut_and_every_whole_record_kept(tmp_path: Path) -> None:
    store = FileAuditLog(tmp_path)
    for i in range(3):
        await store.append(make_record(f"w{i}"))
    await store.close()
    segment = _segments(tmp_path)[0]
    whole = segment.stat().st_size
    with open(segment, "ab") as f:  # a process killed in the middle of a write
        f.write(to_json(make_record("torn")).encode()[:57])
    store = FileAuditLog(tmp_path)
    assert await _ids(store) == ["w0", "w1", "w2"]
    assert segment.stat().st_size == whole
    await store.append(make_record("after"))
    assert await _ids(store) == ["w0", "w1", "w2", "after"]
    await store.close()


async def test_records_written_but_never_indexed_are_found_on_open(tmp_path: Path) -> None:
    store = FileAuditLog(tmp_path)
    await store.append(make_record("indexed"))
    await store.close()
    with open(_segments(tmp_path)[0], "ab") as f:  # the process died between the write and the index update
        f.write((to_json(make_record("unindexed")) + "\n").encode())
    store = FileAuditLog(tmp_path)
    assert await _ids(store) == ["indexed", "unindexed"]
    assert (await store.get("line-a", "unindexed")) == make_record("unindexed")
    await store.close()


async def test_a_lost_index_is_rebuilt_from_the_segments(tmp_path: Path) -> None:
    store = FileAuditLog(tmp_path, segment_bytes=2000)  # several segments
    for i in range(12):
        await store.append(make_record(f"s{i:02d}", time_ms=T0_MS + i))
    await store.close()
    assert len(_segments(tmp_path)) > 2
    for name in ("index.sqlite", "index.sqlite-wal", "index.sqlite-shm"):
        (tmp_path / name).unlink(missing_ok=True)
    store = FileAuditLog(tmp_path, segment_bytes=2000)
    assert await _ids(store) == [f"s{i:02d}" for i in range(12)]
    await store.append(make_record("next"))
    assert (await _ids(store))[-1] == "next"
    await store.close()


async def test_a_second_process_cannot_open_the_same_log(tmp_path: Path) -> None:
    store = FileAuditLog(tmp_path)
    with pytest.raises(ConfigError, match=rf"audit log {tmp_path} is held by pid {os.getpid()}.*audit.store: redis"):
        FileAuditLog(tmp_path)
    await store.close()
    FileAuditLog(tmp_path).close_sync()  # released on close


async def test_retention_by_age_drops_old_segments_and_the_images_only_they_used(tmp_path: Path) -> None:
    images = ImageStore(str(tmp_path / "images"))
    shared, old_only = (images.put(encode_png(_png(v))) for v in (10, 20))
    shared_sha, old_sha = (Path(u).stem for u in (shared, old_only))
    now = [T0_MS / 1000]
    store = FileAuditLog(tmp_path / "log", segment_bytes=1, retention_s=86400, images=images, clock=lambda: now[0])
    await store.append(make_record("old", time_ms=T0_MS, image_sha256=old_sha, reference_sha256=shared_sha))
    now[0] += 2 * 86400
    await store.append(make_record("new", time_ms=T0_MS + 2 * 86400_000, image_sha256=shared_sha))
    await store.append(make_record("newest", time_ms=T0_MS + 2 * 86400_000))  # seals "new", drops "old"
    assert await _ids(store) == ["new", "newest"]
    assert images.get_by_sha256(old_sha) is None  # only the dropped record used it
    assert images.get_by_sha256(shared_sha) is not None  # a kept record still points at it
    assert not await store.has_image("line-a", old_sha)
    await store.close()


async def test_retention_by_size_drops_the_oldest_segments_first(tmp_path: Path) -> None:
    one = len(to_json(make_record("x00"))) + 1
    store = FileAuditLog(tmp_path, segment_bytes=1, retention_bytes=3 * one)  # one record per segment
    for i in range(8):
        await store.append(make_record(f"x{i:02d}"))
    kept = await _ids(store)
    assert kept == ["x05", "x06", "x07"]
    assert sum(p.stat().st_size for p in _segments(tmp_path)) <= 3 * one
    await store.close()


async def test_interval_policy_acknowledges_after_the_write_and_fsyncs_in_the_background(tmp_path: Path) -> None:
    store = FileAuditLog(tmp_path, fsync="interval", fsync_interval_s=0.05)
    await store.append(make_record("i0"))
    assert b'"i0"' in _segments(tmp_path)[0].read_bytes()  # written (a killed process keeps it) before the fsync
    await asyncio.sleep(0.2)
    assert not store._dirty  # the background fsync ran
    await store.close()


def _png(value: int):  # type: ignore[no-untyped-def]
    from PIL import Image

    return Image.new("RGB", (8, 8), (value, value, value))
