"""The stores: files (reloaded on change) and Redis (versioned, shared, seeded, degraded when unreachable)."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from services.common.errors import ConfigError, Unavailable
from services.knowledge.entries import Entry, load_dir
from services.knowledge.stores import FileStore, RedisStore, open_store, redis_entries, redis_put

REPO = Path(__file__).resolve().parents[2]


def _edited(entry: Entry, text: str) -> Entry:
    first = dataclasses.replace(entry.defects[0], signature=text)
    return dataclasses.replace(entry, defects=(first, *entry.defects[1:]), version=0)


def _wait_for(predicate, timeout: float = 5.0, every: float = 0.02) -> float:
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout:
            raise AssertionError("condition not met in time")
        time.sleep(every)
    return time.monotonic() - start


# -- files -----------------------------------------------------------------------------------------------------------


def test_file_store_reloads_a_changed_file_and_bumps_only_its_version(kb_dir: Path) -> None:
    store = FileStore(kb_dir, poll_s=0.05)
    bottle, part = store.get("MVTec/bottle"), store.get("Synthetic/round_part")
    assert bottle is not None and part is not None and bottle.version == part.version == 1
    path = kb_dir / "MVTec" / "bottle.yaml"
    path.write_text(path.read_text().replace("A brown glass bottle", "An amber glass bottle"))
    _wait_for(lambda: "amber" in store.get("MVTec/bottle").normal)
    assert store.get("MVTec/bottle").version == 2
    assert store.get("Synthetic/round_part").version == 1  # unchanged entries keep their version
    assert store.version() == 2


def test_file_store_sees_added_and_removed_files(kb_dir: Path) -> None:
    store = FileStore(kb_dir, poll_s=0.05)
    (kb_dir / "MVTec" / "bottle.yaml").rename(kb_dir / "bottle.bak")
    _wait_for(lambda: store.get("MVTec/bottle") is None)
    (kb_dir / "bottle.bak").rename(kb_dir / "MVTec" / "bottle.yaml")
    _wait_for(lambda: store.get("MVTec/bottle") is not None)


def test_file_store_keeps_serving_when_a_file_breaks_while_running(kb_dir: Path, caplog) -> None:
    store = FileStore(kb_dir, poll_s=0.05)
    path = kb_dir / "MVTec" / "bottle.yaml"
    good = store.get("MVTec/bottle")
    with caplog.at_level(logging.ERROR, logger="services.knowledge.stores"):
        path.write_text(path.read_text().replace("display_name: Bottle", "display_name: ''"))
        _wait_for(lambda: store.status().degraded)
        for _ in range(5):
            time.sleep(0.06)
            assert store.get("MVTec/bottle") == good  # the last good entry
    errors = [r for r in caplog.records if "do not load" in r.getMessage()]
    assert len(errors) == 1 and "bottle.yaml: display_name: is empty" in errors[0].getMessage()


def test_a_malformed_file_fails_the_store_at_start(kb_dir: Path) -> None:
    path = kb_dir / "Synthetic" / "woven_fabric.yaml"
    path.write_text(path.read_text().replace("    cause: Snagging", "    caus: Snagging"))
    with pytest.raises(ConfigError, match=r"woven_fabric.yaml: defects.hole.caus: unknown field"):
        open_store("files", kb_dir)
    with pytest.raises(ConfigError, match=r"woven_fabric.yaml"):  # the Redis store loads the files first too
        open_store("redis", kb_dir, redis_url="redis://127.0.0.1:1/0")


def test_file_store_put_writes_the_file(kb_dir: Path) -> None:
    store = FileStore(kb_dir)
    stored = store.put(_edited(store.get("MVTec/bottle"), "A new signature."))
    assert stored.version == 2 and stored.defects[0].signature == "A new signature."
    assert load_dir(kb_dir)["MVTec/bottle"].defects[0].signature == "A new signature."


# -- redis -----------------------------------------------------------------------------------------------------------


def test_an_empty_redis_is_seeded_from_the_files_once(kb_dir: Path, redis_server) -> None:
    files = FileStore(kb_dir)
    stores = []
    threads = [threading.Thread(target=lambda: stores.append(RedisStore(redis_server.url, files))) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        client = redis_server.client()
        assert int(client.get("echo:kb:version")) == 3  # three entries, each written once: no double seeding
        assert sorted(client.smembers("echo:kb:ids")) == sorted(e.id for e in files.entries())
        for store in stores:
            assert [e.id for e in store.entries()] == [e.id for e in files.entries()]
            assert store.get("MVTec/bottle").same_content(files.get("MVTec/bottle"))
            assert not store.status().degraded
        again = RedisStore(redis_server.url, files)  # a later replica finds it seeded
        assert int(client.get("echo:kb:version")) == 3
        again.close()
    finally:
        for store in stores:
            store.close()


def test_redis_puts_are_versioned_and_seen_by_another_replica_within_a_second(kb_dir: Path, redis_server) -> None:
    files = FileStore(kb_dir)
    a, b = RedisStore(redis_server.url, files), RedisStore(redis_server.url, files)
    try:
        first = a.put(_edited(a.get("MVTec/bottle"), "Edited once."))
        second = a.put(_edited(a.get("MVTec/bottle"), "Edited twice."))
        assert second.version == first.version + 1
        took = _wait_for(lambda: b.get("MVTec/bottle").defects[0].signature == "Edited twice.", timeout=1.0)
        assert took < 1.0
        assert b.get("MVTec/bottle").version == second.version
        assert files.get("MVTec/bottle").defects[0].signature != "Edited twice."  # Redis, not the files
    finally:
        a.close()
        b.close()


def test_a_hot_update_is_visible_in_a_second_process_within_a_second(kb_dir: Path, redis_server, tmp_path: Path):
    """`echo-iad knowledge put --redis` from here; another Python process polls its own store."""
    files = FileStore(kb_dir)
    RedisStore(redis_server.url, files).close()  # seed
    ready, seen = tmp_path / "ready", tmp_path / "seen.json"
    watcher = textwrap.dedent(
        f"""
        import json, sys, time
        from pathlib import Path
        from services.knowledge.stores import FileStore, RedisStore
        store = RedisStore({redis_server.url!r}, FileStore(Path({str(kb_dir)!r})))
        Path({str(ready)!r}).write_text("ok")
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            e = store.get("Synthetic/round_part")
            if e.defects[0].signature == "Hot update.":
                Path({str(seen)!r}).write_text(json.dumps({{"at": time.time(), "version": e.version}}))
                break
            time.sleep(0.01)
        store.close()
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", watcher], cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        _wait_for(ready.exists, timeout=30)
        updated = _edited(files.get("Synthetic/round_part"), "Hot update.")
        cli = kb_dir.parent / "update.yaml"
        cli.write_text(updated.to_yaml())
        put_at = time.time()
        subprocess.run(
            [sys.executable, "-m", "app.cli", "knowledge", "put", str(cli), "--redis", redis_server.url],
            cwd=REPO,
            check=True,
            capture_output=True,
        )
        done_at = time.time()
        proc.wait(timeout=30)
        result = json.loads(seen.read_text())
        assert result["at"] - done_at < 1.0, f"seen {result['at'] - put_at:.2f} s after the put started"
        assert result["version"] == 4  # seeded 1..3, then the hot update
    finally:
        if proc.poll() is None:
            proc.kill()


def test_redis_unreachable_at_start_serves_the_files_degraded_and_logs_once(kb_dir: Path, unused_redis_url, caplog):
    with caplog.at_level(logging.WARNING, logger="services.knowledge.stores"):
        store = RedisStore(unused_redis_url, FileStore(kb_dir), retry_s=0.05)
        try:
            for _ in range(20):
                assert store.get("MVTec/bottle") is not None
                assert len(store.entries()) == 3
            time.sleep(0.3)  # several background retries fail too
            status = store.status()
            assert status.degraded and "unreachable" in status.detail and str(kb_dir) in status.detail
            with pytest.raises(Unavailable, match="not stored"):
                store.put(store.get("MVTec/bottle"))
        finally:
            store.close()
    outage_logs = [r for r in caplog.records if "unreachable" in r.getMessage()]
    assert len(outage_logs) == 1


def test_redis_going_down_degrades_to_the_files_and_recovery_reseeds(kb_dir: Path, redis_server, caplog) -> None:
    files = FileStore(kb_dir)
    store = RedisStore(redis_server.url, files, retry_s=0.1)
    try:
        store.put(_edited(store.get("MVTec/bottle"), "Only in Redis."))
        assert store.get("MVTec/bottle").defects[0].signature == "Only in Redis."
        with caplog.at_level(logging.WARNING, logger="services.knowledge.stores"):
            redis_server.stop()
            _wait_for(lambda: store.status().degraded, timeout=5)
            for _ in range(10):  # served from the files, quietly
                assert store.get("MVTec/bottle").same_content(files.get("MVTec/bottle"))
            redis_server.start()  # back, empty (no persistence): reseeded from the files
            _wait_for(lambda: not store.status().degraded, timeout=5)
        assert len([r for r in caplog.records if "unreachable" in r.getMessage()]) == 1
        assert len([r for r in caplog.records if "reachable again" in r.getMessage()]) == 1
        assert sorted(redis_server.client().smembers("echo:kb:ids")) == [e.id for e in files.entries()]
        b = RedisStore(redis_server.url, files)
        b.put(_edited(b.get("MVTec/bottle"), "After recovery."))
        _wait_for(lambda: store.get("MVTec/bottle").defects[0].signature == "After recovery.", timeout=1.0)
        b.close()
    finally:
        store.close()


def test_a_dropped_subscription_is_covered_by_the_version_check(kb_dir: Path, redis_server) -> None:
    files = FileStore(kb_dir)
    a, b = RedisStore(redis_server.url, files), RedisStore(redis_server.url, files)
    try:
        admin = redis_server.client()
        admin.client_kill_filter(_type="pubsub")  # every subscriber loses its connection; Redis stays up
        a.put(_edited(a.get("MVTec/bottle"), "While unsubscribed."))
        took = _wait_for(lambda: b.get("MVTec/bottle").defects[0].signature == "While unsubscribed.", timeout=1.0)
        assert took < 1.0 and not b.status().degraded
    finally:
        a.close()
        b.close()


def test_cli_helpers_put_and_read_redis_directly(kb_dir: Path, redis_server) -> None:
    entry = load_dir(kb_dir)["MVTec/bottle"]
    assert redis_put(redis_server.url, entry) == 1
    assert redis_put(redis_server.url, _edited(entry, "Again.")) == 2
    (got,) = redis_entries(redis_server.url)
    assert got.version == 2 and got.defects[0].signature == "Again."
    store = RedisStore(redis_server.url, FileStore(kb_dir))  # seeding keeps the newer Redis entry
    try:
        assert store.get("MVTec/bottle").defects[0].signature == "Again."
        assert len(store.entries()) == 3
    finally:
        store.close()
