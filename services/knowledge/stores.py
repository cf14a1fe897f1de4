"""Where knowledge entries live: a folder of YAML files (embedded default) or Redis (shared by replicas).

Both stores hand out immutable `Entry` objects with a version. The file store
re-reads the folder when a file changes; the Redis store keeps a local copy that
a pub/sub subscription (or, when the subscription is down, a version check on
read) keeps within a second of every other replica. When Redis is unreachable
the Redis store serves the files, reports itself degraded and logs the outage
once; it reconnects in the background.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from services.common.errors import ConfigError, Unavailable
from services.knowledge.entries import Entry, SchemaError, knowledge_files, load_dir, parse_entry, write_entry

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StoreStatus:
    kind: str  # "files" or "redis"
    degraded: bool
    detail: str
    version: int


class KnowledgeStore(Protocol):
    kind: str

    def get(self, entry_id: str) -> Entry | None: ...
    def entries(self) -> list[Entry]: ...
    def put(self, entry: Entry) -> Entry: ...
    def version(self) -> int: ...
    def status(self) -> StoreStatus: ...
    def close(self) -> None: ...


class FileStore:
    """Entries read from `<root>/<Dataset>/<category>.yaml`, re-read when a file changes.

    A malformed file fails construction (start-up). A file broken later, while
    serving, is logged and the last good entries keep being served.

    Args:
        root: the knowledge folder.
        poll_s: at most this often a read checks the folder's files for changes.
    """

    kind = "files"

    def __init__(self, root: Path, poll_s: float = 1.0) -> None:
        self.root = Path(root)
        self.poll_s = poll_s
        self._lock = threading.Lock()
        self._version = 0
        self._entries: dict[str, Entry] = {}
        self._signature = self._scan()
        self._apply(load_dir(self.root))
        self._checked = time.monotonic()
        self._broken: str | None = None

    def _scan(self) -> tuple[tuple[str, int, int], ...]:
        try:
            files = knowledge_files(self.root)
        except ConfigError:
            files = sorted(p for p in self.root.rglob("*.y*ml") if p.is_file())
        out = []
        for p in files:
            try:
                st = p.stat()
            except FileNotFoundError:  # removed between listing and stat
                continue
            out.append((str(p), st.st_mtime_ns, st.st_size))
        return tuple(out)

    def _apply(self, loaded: dict[str, Entry]) -> None:
        """Swap in a new set of entries; only changed entries get a new version."""
        bump = self._version + 1
        changed = False
        fresh: dict[str, Entry] = {}
        for eid, entry in loaded.items():
            old = self._entries.get(eid)
            if old is not None and old.same_content(entry):
                fresh[eid] = old
            else:
                fresh[eid] = entry.with_version(bump)
                changed = True
        if changed or set(fresh) != set(self._entries):
            self._version = bump
        self._entries = fresh

    def refresh(self, force: bool = False) -> None:
        """Re-read the folder if any file was added, removed or modified since the last look."""
        now = time.monotonic()
        if not force and now - self._checked < self.poll_s:
            return
        with self._lock:
            self._checked = now
            signature = self._scan()
            if signature == self._signature and not force:
                return
            try:
                loaded = load_dir(self.root)
            except ConfigError as e:
                if str(e) != self._broken:  # log each breakage once, not per request
                    log.error("knowledge files changed but do not load; serving the last good entries: %s", e)
                    self._broken = str(e)
                self._signature = signature
                return
            self._broken = None
            self._signature = signature
            self._apply(loaded)
            log.info("knowledge files reloaded: %d entries, version %d", len(self._entries), self._version)

    def get(self, entry_id: str) -> Entry | None:
        self.refresh()
        return self._entries.get(entry_id)

    def entries(self) -> list[Entry]:
        self.refresh()
        return sorted(self._entries.values(), key=lambda e: e.id)

    def put(self, entry: Entry) -> Entry:
        """Write the entry's file and reload; the returned entry carries its new version."""
        write_entry(self.root, entry)
        self.refresh(force=True)
        stored = self._entries.get(entry.id)
        if stored is None or not stored.same_content(entry):
            raise Unavailable(f"knowledge entry {entry.id} was written but did not load: {self._broken}")
        return stored

    def version(self) -> int:
        self.refresh()
        return self._version

    def status(self) -> StoreStatus:
        self.refresh()
        detail = f"{len(self._entries)} entries from {self.root}"
        if self._broken:
            detail += f"; a changed file does not load: {self._broken}"
        return StoreStatus(self.kind, bool(self._broken), detail, self._version)

    def close(self) -> None:
        pass


# Atomic put: bump the global counter, store the entry with it, index it, announce it.
_PUT_SCRIPT = """
local v = redis.call('INCR', KEYS[1])
redis.call('HSET', KEYS[2], 'data', ARGV[1], 'version', v)
redis.call('SADD', KEYS[3], ARGV[2])
redis.call('PUBLISH', ARGV[3], cjson.encode({id = ARGV[2], version = v}))
return v
"""
# Seeding is that put, only for entries that are not there yet, so a hot update made before seeding survives.
_SEED_SCRIPT = "\nif redis.call('EXISTS', KEYS[2]) == 1 then return 0 end" + _PUT_SCRIPT


class RedisStore:
    """Versioned entries in Redis, shared by every replica; the files are the seed and the fallback.

    Keys (prefix `p`): `p:version` (global counter, bumped by every write),
    `p:entry:<dataset>/<category>` (hash: data = entry JSON, version), `p:ids`
    (set of entry ids), `p:seeded`, `p:seed-lock`; updates are published on
    the channel `p:updates`.

    Args:
        url: Redis address, e.g. redis://localhost:6379/0.
        files: the file store: seeds an empty Redis and serves while Redis is unreachable.
        prefix: key prefix, so several knowledge bases can share one Redis.
        check_s: the listener compares the global version this often (and reads do, while it is down).
        retry_s: how often the background thread retries an unreachable Redis.
        timeout_s: socket timeout of each Redis call.
    """

    kind = "redis"

    def __init__(
        self,
        url: str,
        files: FileStore,
        prefix: str = "echo:kb",
        check_s: float = 0.2,
        retry_s: float = 2.0,
        timeout_s: float = 1.0,
    ) -> None:
        import redis  # the embedded default never needs it

        self.url = url
        self.files = files
        self.prefix = prefix
        self.check_s = check_s
        self.retry_s = retry_s
        self._redis_mod = redis
        self._client = redis.Redis.from_url(
            url, decode_responses=True, socket_connect_timeout=timeout_s, socket_timeout=timeout_s
        )
        self._put = self._client.register_script(_PUT_SCRIPT)
        self._seed = self._client.register_script(_SEED_SCRIPT)
        self._lock = threading.Lock()
        self._entries: dict[str, Entry] = {}
        self._version = 0
        self._checked = 0.0
        self._degraded: str | None = None
        self._subscribed = threading.Event()
        self._stop = threading.Event()
        self._pubsub: Any = None
        try:
            self._pubsub = self._subscribe()
            self._seed_if_empty()
            self._reload()
            self._subscribed.set()
        except redis.RedisError as e:
            self._mark_down(e)
        self._thread = threading.Thread(target=self._listen, name="knowledge-redis-sub", daemon=True)
        self._thread.start()

    # -- keys ---------------------------------------------------------------------------------------------------
    @property
    def _k_version(self) -> str:
        return f"{self.prefix}:version"

    @property
    def _k_ids(self) -> str:
        return f"{self.prefix}:ids"

    @property
    def channel(self) -> str:
        return f"{self.prefix}:updates"

    def _k_entry(self, entry_id: str) -> str:
        return f"{self.prefix}:entry:{entry_id}"

    # -- health -------------------------------------------------------------------------------------------------
    def _mark_down(self, err: Exception) -> None:
        """Log the outage once (on the transition), then serve the files until the listener reconnects."""
        self._subscribed.clear()
        if self._degraded is None:
            log.warning(
                "knowledge: redis at %s unreachable (%s); serving the files at %s, retrying every %.0f s",
                self.url,
                err,
                self.files.root,
                self.retry_s,
            )
        self._degraded = f"redis unreachable at {self.url}: {type(err).__name__}: {err}"

    def _mark_up(self) -> None:
        if self._degraded is not None:
            log.warning("knowledge: redis at %s reachable again; serving the shared entries", self.url)
        self._degraded = None

    # -- reading and seeding ------------------------------------------------------------------------------------
    def _subscribe(self) -> Any:
        pubsub = self._client.pubsub(ignore_subscribe_messages=True)
        pubsub.subscribe(self.channel)
        return pubsub

    def _decode(self, entry_id: str, raw: dict[str, str]) -> Entry | None:
        try:
            return parse_entry(json.loads(raw["data"])).with_version(int(raw["version"]))
        except (KeyError, ValueError, SchemaError) as e:  # written by hand or by an old version: skip, say so
            log.error("knowledge: redis entry %s is malformed, skipped: %s", entry_id, e)
            return None

    def _reload(self) -> None:
        """Read the whole store (version first, so a concurrent write is seen again rather than missed)."""
        version = int(self._client.get(self._k_version) or 0)
        ids = sorted(self._client.smembers(self._k_ids))
        pipe = self._client.pipeline(transaction=False)
        for eid in ids:
            pipe.hgetall(self._k_entry(eid))
        entries = {}
        for eid, raw in zip(ids, pipe.execute(), strict=True):
            if raw and (entry := self._decode(eid, raw)) is not None:
                entries[eid] = entry
        with self._lock:
            self._entries = entries
            self._version = version
            self._checked = time.monotonic()
        self._mark_up()

    def _apply(self, entry: Entry) -> None:
        """Take a newer entry. The local version only advances over contiguous writes (the counter
        moves by one per write), so after a missed update the version check still sees a gap."""
        with self._lock:
            old = self._entries.get(entry.id)
            if old is None or old.version < entry.version:
                self._entries = {**self._entries, entry.id: entry}
            if entry.version == self._version + 1:
                self._version = entry.version

    def _fetch_one(self, entry_id: str) -> None:
        raw = self._client.hgetall(self._k_entry(entry_id))
        if raw and (entry := self._decode(entry_id, raw)) is not None:
            self._apply(entry)

    def _seed_if_empty(self) -> None:
        """Copy the files into an empty Redis; a lock keeps two replicas starting together from both seeding."""
        if self._client.exists(f"{self.prefix}:seeded"):
            return
        token = uuid.uuid4().hex
        lock = f"{self.prefix}:seed-lock"
        if self._client.set(lock, token, nx=True, px=30_000):
            try:
                seeded = 0
                for entry in self.files.entries():
                    keys = [self._k_version, self._k_entry(entry.id), self._k_ids]
                    seeded += bool(self._seed(keys=keys, args=[json.dumps(entry.to_dict()), entry.id, self.channel]))
                self._client.set(f"{self.prefix}:seeded", "1")
                log.info("knowledge: seeded redis %s with %d entries from %s", self.url, seeded, self.files.root)
            finally:
                if self._client.get(lock) == token:
                    self._client.delete(lock)
            return
        deadline = time.monotonic() + 30
        while not self._client.exists(f"{self.prefix}:seeded"):  # another replica is seeding
            if time.monotonic() > deadline:
                raise self._redis_mod.TimeoutError("waited 30 s for another replica to seed redis")
            time.sleep(0.05)

    def _maybe_check(self) -> None:
        """Subscription down but Redis up: compare the global version (throttled) and reload when it moved."""
        if self._subscribed.is_set() or self._degraded is not None:
            return
        now = time.monotonic()
        if now - self._checked < self.check_s:
            return
        self._checked = now
        try:
            if int(self._client.get(self._k_version) or 0) != self._version:
                self._reload()
        except self._redis_mod.RedisError as e:
            self._mark_down(e)

    def _listen(self) -> None:
        """Background: apply published updates, and every `check_s` compare the global version.

        The version check catches what pub/sub cannot promise: messages lost while
        the connection was re-established, or a Redis restarted empty (re-seeded).
        """
        last_check = time.monotonic()
        while not self._stop.is_set():
            try:
                if not self._subscribed.is_set():
                    if self._pubsub is not None:
                        self._pubsub.close()
                    self._pubsub = self._subscribe()
                    self._seed_if_empty()  # Redis may have restarted empty
                    self._reload()
                    self._subscribed.set()
                msg = self._pubsub.get_message(timeout=self.check_s)
                if msg and msg.get("type") == "message":
                    update = json.loads(msg["data"])
                    self._fetch_one(str(update["id"]))
                if time.monotonic() - last_check >= self.check_s:
                    last_check = time.monotonic()
                    if int(self._client.get(self._k_version) or 0) != self._version:
                        self._seed_if_empty()
                        self._reload()
            except self._redis_mod.RedisError as e:
                if self._stop.is_set():
                    return
                self._subscribed.clear()
                try:  # the subscription dropped; is Redis itself down?
                    self._client.ping()
                    wait = 0.05
                except self._redis_mod.RedisError:
                    self._mark_down(e)
                    wait = self.retry_s
                self._stop.wait(wait)
            except (ValueError, KeyError, TypeError) as e:
                log.error("knowledge: malformed update on %s ignored: %s", self.channel, e)

    # -- the store API -----------------------------------------------------------------------------------------
    def get(self, entry_id: str) -> Entry | None:
        self._maybe_check()
        if self._degraded is not None:
            return self.files.get(entry_id)
        return self._entries.get(entry_id)

    def entries(self) -> list[Entry]:
        self._maybe_check()
        if self._degraded is not None:
            return self.files.entries()
        return sorted(self._entries.values(), key=lambda e: e.id)

    def put(self, entry: Entry) -> Entry:
        """Store the entry for every replica; fails (UNAVAILABLE) rather than update only this one."""
        keys = [self._k_version, self._k_entry(entry.id), self._k_ids]
        try:
            version = int(self._put(keys=keys, args=[json.dumps(entry.to_dict()), entry.id, self.channel]))
        except self._redis_mod.RedisError as e:
            self._mark_down(e)
            raise Unavailable(f"knowledge: redis at {self.url} unreachable, entry {entry.id} not stored: {e}") from e
        stored = entry.with_version(version)
        self._apply(stored)
        return stored

    def version(self) -> int:
        self._maybe_check()
        return self.files.version() if self._degraded is not None else self._version

    def status(self) -> StoreStatus:
        if self._degraded is not None:
            return StoreStatus(self.kind, True, f"{self._degraded}; serving the files at {self.files.root}", 0)
        sub = "subscribed" if self._subscribed.is_set() else "subscription down, checking versions on read"
        return StoreStatus(self.kind, False, f"{len(self._entries)} entries at {self.url} ({sub})", self._version)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        try:
            if self._pubsub is not None:
                self._pubsub.close()
            self._client.close()
        except self._redis_mod.RedisError:
            pass


def open_store(
    kind: str,
    root: Path,
    redis_url: str = "",
    prefix: str = "echo:kb",
    poll_s: float = 1.0,
    retry_s: float = 2.0,
) -> KnowledgeStore:
    """Build the configured store; the files are always loaded (and validated) first."""
    files = FileStore(root, poll_s=poll_s)
    if kind == "files":
        return files
    if kind == "redis":
        return RedisStore(redis_url, files, prefix=prefix, retry_s=retry_s)
    raise ConfigError(f"knowledge.store: unknown store {kind!r} (files or redis)")


def redis_put(url: str, entry: Entry, prefix: str = "echo:kb") -> int:
    """Store one entry in Redis without running a store (the CLI's `put --redis`); returns its version.

    Replicas see it through the same announcement as a PutEntry RPC. An unseeded
    Redis stays unseeded: the first replica seeds every other entry around it.
    """
    import redis

    client = redis.Redis.from_url(url, decode_responses=True, socket_connect_timeout=2, socket_timeout=5)
    try:
        keys = [f"{prefix}:version", f"{prefix}:entry:{entry.id}", f"{prefix}:ids"]
        args = [json.dumps(entry.to_dict()), entry.id, f"{prefix}:updates"]
        return int(client.register_script(_PUT_SCRIPT)(keys=keys, args=args))
    except redis.RedisError as e:
        raise Unavailable(f"redis at {url}: {e}") from e
    finally:
        client.close()


def redis_entries(url: str, prefix: str = "echo:kb") -> list[Entry]:
    """Every entry stored in Redis (the CLI's `list/show --redis`)."""
    import redis

    client = redis.Redis.from_url(url, decode_responses=True, socket_connect_timeout=2, socket_timeout=5)
    try:
        ids = sorted(client.smembers(f"{prefix}:ids"))
        out = []
        for eid in ids:
            raw = client.hgetall(f"{prefix}:entry:{eid}")
            if raw:
                out.append(parse_entry(json.loads(raw["data"])).with_version(int(raw["version"])))
        return out
    except redis.RedisError as e:
        raise Unavailable(f"redis at {url}: {e}") from e
    finally:
        client.close()
