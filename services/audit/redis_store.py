"""The cluster audit log: one Redis stream per line, shared by every gateway replica.

    {prefix}:{<line>}:log     stream: r = the record's JSON, d / c / v / p = dataset, category, verdict, flagged
                              for review (for filters)
    {prefix}:{<line>}:reviews stream: r = an operator confirmation's JSON, q = its inspection id (never trimmed)
    {prefix}:{<line>}:ids     hash: request id -> stream id of its latest record
    {prefix}:{<line>}:images  sorted set: image sha256 -> when a record last pointed at it
    {prefix}:lines            set: lines that have records

Durability comes from Redis's append-only file: fsync=always needs the server to
run `appendonly yes` and `appendfsync always` (Redis fsyncs before it replies, so
an acknowledged record survives a SIGKILL of Redis or of the gateway), and
fsync=interval needs `appendonly yes`. Both are checked at start. Images go to
the shared image store (an fsspec URL every replica sees) before their record;
their retention is the store's own (an object-store lifecycle rule). A record is
written by one script (stream entry, id and images together), so a reader never
sees half of one. Records are listed in the order Redis stored them and filtered
by their own time (the stream ids' clock only narrows the scan, with CLOCK_SLACK_MS
for gateways whose clocks differ). The keys of one line share a hash tag, so the
script also runs on a Redis Cluster.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Mapping

import redis
import redis.asyncio as aioredis

from echo.v1 import inspector_pb2
from services.audit.record import confirmation_from_json, confirmation_to_json, from_json, image_shas, to_json
from services.audit.store import EMPTY, AuditQuery
from services.common.errors import ConfigError, InvalidArgument
from services.common.images import ImageStore, image_suffix

log = logging.getLogger(__name__)

_APPEND = """
local id = redis.call('XADD', KEYS[1], '*', 'r', ARGV[1], 'q', ARGV[2], 'd', ARGV[3], 'c', ARGV[4], 'v', ARGV[5],
  't', ARGV[6], 'p', ARGV[7])
redis.call('HSET', KEYS[2], ARGV[2], id)
for i = 8, #ARGV do redis.call('ZADD', KEYS[3], ARGV[6], ARGV[i]) end
return id
"""
_EXPIRE = """
for i = 1, #ARGV, 2 do
  if redis.call('HGET', KEYS[2], ARGV[i + 1]) == ARGV[i] then redis.call('HDEL', KEYS[2], ARGV[i + 1]) end
  redis.call('XDEL', KEYS[1], ARGV[i])
end
return #ARGV / 2
"""
_STREAM_ID = re.compile(r"\d+-\d+")
_CHUNK = 256
CLOCK_SLACK_MS = 300_000
RETENTION_EVERY_S = 60.0


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class RedisAuditLog:
    """Audit records in Redis streams (see the module docstring); opening checks reachability and durability."""

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "echo:audit",
        fsync: str = "always",
        retention_s: float = 0.0,
        retention_records: int = 0,
        images: ImageStore | None = None,
    ) -> None:
        self.url = url
        self.images = images
        self.durable = fsync == "always"
        self.prefix = prefix
        self.description = f"redis at {url} (fsync {fsync})"
        self.retention_s = retention_s
        self.retention_records = retention_records
        self._check_durability(fsync)
        self.redis = aioredis.Redis.from_url(url, socket_timeout=10, socket_connect_timeout=5)
        self._append = self.redis.register_script(_APPEND)
        self._expire = self.redis.register_script(_EXPIRE)
        self._retained_at = 0.0

    def _check_durability(self, fsync: str) -> None:
        client = redis.Redis.from_url(self.url, socket_timeout=5, socket_connect_timeout=5, decode_responses=True)
        try:
            config = {**client.config_get("appendonly"), **client.config_get("appendfsync")}
        except redis.exceptions.ResponseError as e:  # CONFIG renamed or forbidden on a managed Redis
            log.warning("audit: cannot read the durability settings of Redis at %s (%s); trusting them", self.url, e)
            return
        except redis.RedisError as e:
            raise ConfigError(f"audit.redis_url: cannot reach Redis at {self.url}: {e}") from None
        finally:
            client.close()
        want = {"appendonly": "yes", **({"appendfsync": "always"} if fsync == "always" else {})}
        wrong = {k: config.get(k) for k, v in want.items() if config.get(k) != v}
        if wrong:
            needed = " ".join(f"--{k} {v}" for k, v in want.items())
            found = ", ".join(f"{k} {v}" for k, v in wrong.items())
            raise ConfigError(
                f"audit.fsync: {fsync} needs Redis at {self.url} to run with {needed} (found {found}): "
                "without them an acknowledged record can be lost"
            )

    def _key(self, line_id: str, kind: str) -> str:
        return f"{self.prefix}:{{{line_id}}}:{kind}"

    # ------------------------------------------------------------------ writing
    async def append(self, record: inspector_pb2.InspectionRecord, images: Mapping[str, bytes] = EMPTY) -> None:
        """Store the images (the shared image store), then the record in one script."""
        for data in images.values():
            if self.images is None:
                raise RuntimeError("this audit log has no image store")
            await asyncio.to_thread(self.images.put, data, image_suffix(data), durable=self.durable)
        line = record.line_id
        await self._append(
            keys=[self._key(line, "log"), self._key(line, "ids"), self._key(line, "images")],
            args=[
                to_json(record),
                record.request_id,
                record.dataset,
                record.category,
                record.verdict,
                record.time_unix_ms,
                1 if record.trace.review else 0,
                *sorted(image_shas(record)),
            ],
        )
        await self.redis.sadd(f"{self.prefix}:lines", line)
        if time.monotonic() - self._retained_at > RETENTION_EVERY_S:
            self._retained_at = time.monotonic()
            await self.retain()

    async def retain(self, now_s: float | None = None) -> int:
        """Drop records past retention_s or beyond retention_records per line; returns how many went."""
        now_s = time.time() if now_s is None else now_s
        dropped = 0
        for line in sorted(_text(x) for x in await self.redis.smembers(f"{self.prefix}:lines")):
            key = self._key(line, "log")
            if self.retention_s:
                cutoff = int((now_s - self.retention_s) * 1000)
                dropped += await self._drop_oldest(line, f"({cutoff}-0", None)
                await self.redis.zremrangebyscore(self._key(line, "images"), "-inf", f"({cutoff}")
            if self.retention_records:
                excess = await self.redis.xlen(key) - self.retention_records
                if excess > 0:
                    dropped += await self._drop_oldest(line, "+", excess)
        return dropped

    async def _drop_oldest(self, line: str, below: str, count: int | None) -> int:
        key, dropped = self._key(line, "log"), 0
        while count is None or dropped < count:
            n = _CHUNK if count is None else min(_CHUNK, count - dropped)
            entries = await self.redis.xrange(key, "-", below, count=n)
            if not entries:
                break
            args: list[str] = []
            for sid, fields in entries:
                args += [_text(sid), _text(fields[b"q"])]
            await self._expire(keys=[key, self._key(line, "ids")], args=args)
            dropped += len(entries)
        return dropped

    # ------------------------------------------------------------------ reading
    async def query(self, q: AuditQuery) -> tuple[list[inspector_pb2.InspectionRecord], str]:
        if q.cursor and not _STREAM_ID.fullmatch(q.cursor):
            raise InvalidArgument(f"{q.cursor[:40]!r} is not a page token from a previous call", field="page_token")
        key = self._key(q.line_id, "log")
        low = f"{max(0, q.since_ms - CLOCK_SLACK_MS)}-0" if q.since_ms else "-"
        high = f"({q.until_ms + CLOCK_SLACK_MS}-0" if q.until_ms else "+"
        if q.cursor and q.oldest_first:
            low = f"({q.cursor}"
        elif q.cursor:
            high = f"({q.cursor}"
        found: list[tuple[str, inspector_pb2.InspectionRecord]] = []
        while len(found) <= q.limit:
            if q.oldest_first:
                entries = await self.redis.xrange(key, low, high, count=_CHUNK)
            else:
                entries = await self.redis.xrevrange(key, high, low, count=_CHUNK)
            for sid, fields in entries:
                if self._wanted(q, fields):
                    found.append((_text(sid), from_json(fields[b"r"])))
            if len(entries) < _CHUNK:
                break
            last = _text(entries[-1][0])
            if q.oldest_first:
                low = f"({last}"
            else:
                high = f"({last}"
        more = len(found) > q.limit
        found = found[: q.limit]
        return [r for _, r in found], (found[-1][0] if more and found else "")

    @staticmethod
    def _wanted(q: AuditQuery, fields: dict[bytes, bytes]) -> bool:
        t = int(fields[b"t"])
        return (
            (not q.dataset or _text(fields[b"d"]) == q.dataset)
            and (not q.category or _text(fields[b"c"]) == q.category)
            and (not q.verdict or int(fields[b"v"]) == q.verdict)
            and (not q.since_ms or t >= q.since_ms)
            and (not q.until_ms or t < q.until_ms)
            and (not q.review_only or fields.get(b"p") == b"1")
        )

    async def get(self, line_id: str, request_id: str) -> inspector_pb2.InspectionRecord | None:
        sid = await self.redis.hget(self._key(line_id, "ids"), request_id)
        if sid is None:
            return None
        entries = await self.redis.xrange(self._key(line_id, "log"), sid, sid)
        return from_json(entries[0][1][b"r"]) if entries else None

    async def has_image(self, line_id: str, sha256: str) -> bool:
        return await self.redis.zscore(self._key(line_id, "images"), sha256) is not None

    async def append_confirmation(self, confirmation: inspector_pb2.ReviewConfirmation) -> None:
        """One stream entry; durable as the records are (the server's append-only file, checked at start)."""
        key = self._key(confirmation.line_id, "reviews")
        await self.redis.xadd(key, {"r": confirmation_to_json(confirmation), "q": confirmation.inspection_id})
        await self.redis.sadd(f"{self.prefix}:lines", confirmation.line_id)

    async def confirmations(self, line_id: str, inspection_id: str = "") -> list[inspector_pb2.ReviewConfirmation]:
        found, low = [], "-"
        while True:
            entries = await self.redis.xrange(self._key(line_id, "reviews"), low, "+", count=_CHUNK)
            found += [
                confirmation_from_json(fields[b"r"])
                for _, fields in entries
                if not inspection_id or _text(fields[b"q"]) == inspection_id
            ]
            if len(entries) < _CHUNK:
                return found
            low = f"({_text(entries[-1][0])}"

    async def close(self) -> None:
        await self.redis.aclose()
