"""The cluster audit log on a real redis-server: durable before the ack, checked at start, trimmed by retention."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from auditkit import T0_MS, make_record
from redis_server import RedisServer

from services.audit.redis_store import RedisAuditLog
from services.audit.store import AuditQuery
from services.common.errors import ConfigError
from services.common.images import ImageStore, encode_png, sha256_hex
from services.common.ports import free_port


async def test_every_acknowledged_record_survives_a_sigkill_of_redis(aof_redis: RedisServer) -> None:
    store = RedisAuditLog(aof_redis.url)
    acked: list[str] = []

    async def writer(w: int) -> None:
        for i in range(25):
            await store.append(make_record(f"w{w}-{i}"))
            acked.append(f"w{w}-{i}")

    tasks = [asyncio.create_task(writer(w)) for w in range(4)]
    while len(acked) < 60:
        await asyncio.sleep(0.001)
    aof_redis.stop()  # SIGKILL while writers are still appending
    await asyncio.gather(*tasks, return_exceptions=True)
    await store.close()
    survivors = list(acked)
    aof_redis.start()  # same port and folder: Redis replays its append-only file
    store = RedisAuditLog(aof_redis.url)
    kept = {r.request_id for r in (await store.query(AuditQuery("line-a", limit=1000)))[0]}
    assert len(survivors) >= 60 and set(survivors) <= kept
    assert await store.get("line-a", survivors[-1]) is not None
    await store.close()


@pytest.mark.parametrize(("appendfsync", "fsync"), [("", "interval"), ("everysec", "always")])
def test_a_redis_that_could_lose_acknowledged_records_is_refused_at_start(
    tmp_path: Path, appendfsync: str, fsync: str
) -> None:
    server = RedisServer(free_port(), tmp_path, appendfsync=appendfsync)
    server.start()
    try:
        with pytest.raises(ConfigError, match=f"audit.fsync: {fsync} needs Redis at .* to run with --appendonly yes"):
            RedisAuditLog(server.url, fsync=fsync)
    finally:
        server.stop()


def test_an_unreachable_redis_is_named_at_start() -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    with pytest.raises(ConfigError, match=f"audit.redis_url: cannot reach Redis at {url}"):
        RedisAuditLog(url)


async def test_retention_trims_old_and_excess_records_and_their_ids(aof_redis: RedisServer) -> None:
    store = RedisAuditLog(aof_redis.url, retention_s=3600, retention_records=5)
    for i in range(8):
        await store.append(make_record(f"k{i}"))
    await store.append(make_record("other-line", line_id="line-b"))
    dropped = await store.retain()
    assert dropped == 3
    assert [r.request_id for r in (await store.query(AuditQuery("line-a")))[0]] == [f"k{i}" for i in range(7, 2, -1)]
    assert await store.get("line-a", "k0") is None and await store.get("line-a", "k3") is not None
    assert aof_redis.client().hlen("echo:audit:{line-a}:ids") == 5
    assert await store.retain(now_s=time.time() + 7200) == 6  # two hours later every record is past retention
    assert (await store.query(AuditQuery("line-a")))[0] == []
    await store.close()


async def test_images_go_to_the_shared_store_before_their_record(aof_redis: RedisServer, tmp_path: Path) -> None:
    from PIL import Image

    images = ImageStore(str(tmp_path / "shared-images"))
    data = encode_png(Image.new("RGB", (8, 8), (1, 2, 3)))
    store = RedisAuditLog(aof_redis.url, images=images)
    await store.append(make_record("img", image_sha256=sha256_hex(data), time_ms=T0_MS), {sha256_hex(data): data})
    assert images.get_by_sha256(sha256_hex(data)) == data
    assert await store.has_image("line-a", sha256_hex(data))
    await store.close()
