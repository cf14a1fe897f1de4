"""The embedded audit log: append-only segment files under data_dir, indexed by SQLite.

    <dir>/seg-0000000000000001.jsonl   one JSON record per line; the name is the first record's sequence number
    <dir>/index.sqlite                 where each record is, and what it is about (rebuilt from the segments)
    <dir>/reviews.jsonl                operator confirmations, one JSON line each (few; never dropped)
    <dir>/LOCK                         one process owns the folder

The segments are the truth. A record is acknowledged only after its line is
written whole (and, with fsync=always, fsynced); concurrent appends share one
write and one fsync (group commit). On open, the index catches up with the
segments (records written but not yet indexed when a process died) and a torn
last line, which no caller was ever told about, is cut off. Retention drops
whole sealed segments by age and by total size, and the images no remaining
record points at. Images are stored by the same single writer just before their
record, so retention never deletes an image a record being written needs.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from echo.v1 import inspector_pb2
from services.audit.record import confirmation_from_json, confirmation_to_json, from_json, image_shas, to_json
from services.audit.store import EMPTY, AuditQuery
from services.common.errors import ConfigError, InvalidArgument
from services.common.images import ImageStore, fsync_dir, image_suffix

log = logging.getLogger(__name__)

SEGMENT_MAX_AGE_S = 86400.0  # a segment is sealed after a day even when small, so age retention can drop it
_SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    seq INTEGER PRIMARY KEY,
    request_id TEXT NOT NULL,
    line_id TEXT NOT NULL,
    dataset TEXT NOT NULL,
    category TEXT NOT NULL,
    verdict INTEGER NOT NULL,
    ts_ms INTEGER NOT NULL,
    segment INTEGER NOT NULL,
    offset INTEGER NOT NULL,
    length INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS records_by_line ON records (line_id, seq);
CREATE INDEX IF NOT EXISTS records_by_request ON records (line_id, request_id);
CREATE INDEX IF NOT EXISTS records_by_segment ON records (segment);
CREATE TABLE IF NOT EXISTS images (
    line_id TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    seq INTEGER NOT NULL,
    PRIMARY KEY (line_id, sha256, seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS images_by_sha ON images (sha256);
CREATE INDEX IF NOT EXISTS images_by_seq ON images (seq);
CREATE TABLE IF NOT EXISTS review_queue (
    seq INTEGER PRIMARY KEY,
    line_id TEXT NOT NULL
);
"""
REVIEWS_FILE = "reviews.jsonl"


def _segment_name(first_seq: int) -> str:
    return f"seg-{first_seq:016d}.jsonl"


def _parse_cursor(cursor: str) -> int:
    if not cursor:
        return 0
    if not cursor.isdigit():
        raise InvalidArgument(f"{cursor[:40]!r} is not a page token from a previous call", field="page_token")
    return int(cursor)


class FileAuditLog:
    """Append-only segment files with a durability policy and retention; one process per folder.

    Args:
        folder: the log folder (created).
        fsync: "always": an append returns after fsync; "interval": after write, with an fsync every
            fsync_interval_s (a killed process loses nothing either way; a power cut loses the interval).
        segment_bytes: seal the active segment past this size (or after a day).
        retention_s / retention_bytes: drop sealed segments older than this / while the log is larger (0: never).
        images: the audit image store; images no remaining record points at are deleted with their segments.
        clock: seconds since the epoch (tests move it).
    """

    def __init__(
        self,
        folder: Path,
        *,
        fsync: str = "always",
        fsync_interval_s: float = 1.0,
        segment_bytes: int = 64 * 1024 * 1024,
        retention_s: float = 0.0,
        retention_bytes: int = 0,
        images: ImageStore | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.description = f"files at {self.folder} (fsync {fsync})"
        self.always = fsync == "always"
        self.fsync_interval_s = fsync_interval_s
        self.segment_bytes = segment_bytes
        self.retention_s = retention_s
        self.retention_bytes = retention_bytes
        self.images = images
        self.clock = clock
        self._lock_file = self._take_lock()
        self._io = threading.Lock()  # the index connection and the active segment, across worker threads
        # The single writer has its own thread: on the event loop's shared pool a group commit waited behind
        # other stages' slow work (embedded mode), and every answer waits for its record.
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="audit-writer")
        self._db = sqlite3.connect(self.folder / "index.sqlite", check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")  # the index is rebuilt from the segments; they are the truth
        self._db.executescript(_SCHEMA)
        self._fd = -1
        self._active = 0  # first seq of the active segment
        self._active_started = 0.0
        self._size = 0
        self._next_seq = 1
        self._dirty = False
        self._closed = False
        self._pending: list[tuple[inspector_pb2.InspectionRecord, Mapping[str, bytes], asyncio.Future[None]]] = []
        self._flusher: asyncio.Task[None] | None = None
        with self._io:
            self._recover()
            self._retain()
        self._confirmations = self._load_confirmations()
        self._syncer: threading.Thread | None = None
        if not self.always:
            self._stop = threading.Event()
            self._syncer = threading.Thread(target=self._sync_every_interval, name="audit-fsync", daemon=True)
            self._syncer.start()

    # ------------------------------------------------------------------ opening
    def _take_lock(self):  # type: ignore[no-untyped-def]
        f = open(self.folder / "LOCK", "a+")  # noqa: SIM115 (held open for the log's lifetime)
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "another process"
            f.close()
            raise ConfigError(
                f"audit log {self.folder} is held by {holder}: one process owns a files log; run several gateway "
                "replicas with audit.store: redis"
            ) from None
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()}\n")
        f.flush()
        return f

    def _segments(self) -> list[int]:
        return sorted(int(p.name[4:-6]) for p in self.folder.glob("seg-*.jsonl") if p.name[4:-6].isdigit())

    def _recover(self) -> None:
        """Bring the index in line with the segment files; cut a torn last line; open the active segment."""
        segments = self._segments()
        known = {row[0] for row in self._db.execute("SELECT DISTINCT segment FROM records")}
        for gone in sorted(known - set(segments)):  # dropped by retention before the index heard of it
            self._forget_segment(gone, delete_file=False)
        for i, first in enumerate(segments):
            self._catch_up(first, last=i == len(segments) - 1)
        if segments:
            self._open_segment(segments[-1])
        else:
            self._open_segment(self._next_seq)

    def _catch_up(self, first: int, *, last: bool) -> None:
        path = self.folder / _segment_name(first)
        size = path.stat().st_size
        end, max_seq = self._db.execute(
            "SELECT COALESCE(MAX(offset + length), 0), COALESCE(MAX(seq), ?) FROM records WHERE segment = ?",
            (first - 1, first),
        ).fetchone()
        if end > size:  # records indexed but not on disk (a power cut under fsync=interval)
            self._db.execute("BEGIN")
            self._db.execute(
                "DELETE FROM images WHERE seq IN (SELECT seq FROM records WHERE segment=? AND offset>=?)", (first, size)
            )
            self._db.execute(
                "DELETE FROM review_queue WHERE seq IN (SELECT seq FROM records WHERE segment=? AND offset>=?)",
                (first, size),
            )
            self._db.execute("DELETE FROM records WHERE segment = ? AND offset >= ?", (first, size))
            self._db.execute("COMMIT")
            end, max_seq = self._db.execute(
                "SELECT COALESCE(MAX(offset + length), 0), COALESCE(MAX(seq), ?) FROM records WHERE segment = ?",
                (first - 1, first),
            ).fetchone()
        seq = max_seq
        rows: list[tuple[int, inspector_pb2.InspectionRecord, int, int]] = []
        if size > end:
            with open(path, "rb") as f:
                f.seek(end)
                tail = f.read()
            offset = end
            for line in tail.splitlines(keepends=True):
                complete = line.endswith(b"\n")
                try:
                    record = from_json(line) if complete else None
                except ValueError:
                    record = None
                if record is None and last and offset + len(line) == size:
                    log.warning(
                        "audit log %s: cut %d bytes of a torn last record (it was never acknowledged)", path, len(line)
                    )
                    with open(path, "r+b") as f:
                        f.truncate(offset)
                        os.fsync(f.fileno())
                    break
                seq += 1
                if record is None:
                    log.error("audit log %s: unreadable record at byte %d left out of the index", path, offset)
                else:
                    rows.append((seq, record, offset, len(line)))
                offset += len(line)
            if rows:
                log.info("audit log %s: indexed %d records written before the last stop", path, len(rows))
                self._index(first, rows)
        self._next_seq = max(self._next_seq, seq + 1)

    def _open_segment(self, first: int) -> None:
        path = self.folder / _segment_name(first)
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        fsync_dir(self.folder)
        self._active = first
        self._size = os.fstat(self._fd).st_size
        started = self._db.execute("SELECT MIN(ts_ms) FROM records WHERE segment = ?", (first,)).fetchone()[0]
        self._active_started = started / 1000 if started else self.clock()

    # ------------------------------------------------------------------ writing
    async def append(self, record: inspector_pb2.InspectionRecord, images: Mapping[str, bytes] = EMPTY) -> None:
        """Returns once the images and the record are durable per the policy; concurrent appends share one
        write and fsync of the segment."""
        if self._closed:
            raise RuntimeError("the audit log is closed")
        if images and self.images is None:
            raise RuntimeError("this audit log has no image store")
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        fut.add_done_callback(lambda f: f.cancelled() or f.exception())  # retrieved even if the caller left
        self._pending.append((record, images, fut))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush())
        await asyncio.shield(fut)  # a caller that gives up does not take the write with it

    async def _flush(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, []
            try:
                loop = asyncio.get_running_loop()
                await loop.run_in_executor(self._writer, self._write, [(r, i) for r, i, _ in batch])
            except Exception as e:
                for *_, fut in batch:
                    if not fut.done():
                        fut.set_exception(e)
            else:
                for *_, fut in batch:
                    if not fut.done():
                        fut.set_result(None)

    def _write(self, batch: list[tuple[inspector_pb2.InspectionRecord, Mapping[str, bytes]]]) -> None:
        """The single writer: images, then the records' lines (one write, one fsync), the index, retention."""
        for _, images in batch:
            for data in images.values():
                self.images.put(data, image_suffix(data), durable=self.always)  # type: ignore[union-attr]
        records = [r for r, _ in batch]
        lines = [(to_json(r) + "\n").encode() for r in records]
        with self._io:
            rolled = bool(self._size) and (
                self._size >= self.segment_bytes or self.clock() - self._active_started >= SEGMENT_MAX_AGE_S
            )
            if rolled:
                self._roll()
            if not self._size:
                self._active_started = self.clock()
            view = memoryview(b"".join(lines))
            try:
                while view:
                    view = view[os.write(self._fd, view) :]
                if self.always:
                    os.fsync(self._fd)
            except OSError:
                os.ftruncate(self._fd, self._size)  # no half-written batch stays ahead of the next one
                raise
            self._dirty = not self.always
            rows = []
            offset = self._size
            for record, line in zip(records, lines, strict=True):
                rows.append((self._next_seq, record, offset, len(line)))
                self._next_seq += 1
                offset += len(line)
            self._size = offset
            self._index(self._active, rows)
            if rolled:
                self._retain()  # after this batch is indexed: its images count as used

    def _index(self, segment: int, rows: list[tuple[int, inspector_pb2.InspectionRecord, int, int]]) -> None:
        self._db.execute("BEGIN")
        self._db.executemany(
            "INSERT OR REPLACE INTO records VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (seq, r.request_id, r.line_id, r.dataset, r.category, r.verdict, r.time_unix_ms, segment, off, n)
                for seq, r, off, n in rows
            ],
        )
        self._db.executemany(
            "INSERT OR IGNORE INTO images VALUES (?, ?, ?)",
            [(r.line_id, sha, seq) for seq, r, _, _ in rows for sha in image_shas(r)],
        )
        self._db.executemany(
            "INSERT OR REPLACE INTO review_queue VALUES (?, ?)",
            [(seq, r.line_id) for seq, r, _, _ in rows if r.trace.review],
        )
        self._db.execute("COMMIT")

    def _roll(self) -> None:
        os.fsync(self._fd)
        os.close(self._fd)
        self._dirty = False
        self._open_segment(self._next_seq)

    def _sync_every_interval(self) -> None:
        while not self._stop.wait(self.fsync_interval_s):
            with self._io:
                if self._dirty and self._fd >= 0:
                    os.fsync(self._fd)
                    self._dirty = False

    # ------------------------------------------------------------------ retention
    def _retain(self) -> None:
        """Drop the oldest sealed segments that are past retention_s or over retention_bytes."""
        sealed = [s for s in self._segments() if s != self._active]
        sizes = {s: (self.folder / _segment_name(s)).stat().st_size for s in sealed}
        total = sum(sizes.values()) + self._size
        now_ms = self.clock() * 1000
        for first in sealed:
            newest = self._db.execute("SELECT MAX(ts_ms) FROM records WHERE segment = ?", (first,)).fetchone()[0]
            too_old = self.retention_s and newest is not None and newest < now_ms - self.retention_s * 1000
            too_big = self.retention_bytes and total > self.retention_bytes
            if not (too_old or too_big):
                break
            self._forget_segment(first, delete_file=True)
            total -= sizes[first]

    def _forget_segment(self, first: int, *, delete_file: bool) -> None:
        shas = {
            row[0]
            for row in self._db.execute(
                "SELECT DISTINCT sha256 FROM images WHERE seq IN (SELECT seq FROM records WHERE segment = ?)", (first,)
            )
        }
        self._db.execute("BEGIN")
        self._db.execute("DELETE FROM images WHERE seq IN (SELECT seq FROM records WHERE segment = ?)", (first,))
        self._db.execute("DELETE FROM review_queue WHERE seq IN (SELECT seq FROM records WHERE segment = ?)", (first,))
        n = self._db.execute("DELETE FROM records WHERE segment = ?", (first,)).rowcount
        self._db.execute("COMMIT")
        if delete_file:
            (self.folder / _segment_name(first)).unlink(missing_ok=True)
            fsync_dir(self.folder)
            log.info("audit log %s: retention dropped segment %d (%d records)", self.folder, first, n)
        if self.images is not None:
            for sha in shas:
                if self._db.execute("SELECT 1 FROM images WHERE sha256 = ? LIMIT 1", (sha,)).fetchone() is None:
                    self.images.delete_by_sha256(sha)

    # ------------------------------------------------------------------ reading
    async def query(self, q: AuditQuery) -> tuple[list[inspector_pb2.InspectionRecord], str]:
        return await asyncio.to_thread(self._query, q)

    def _query(self, q: AuditQuery) -> tuple[list[inspector_pb2.InspectionRecord], str]:
        cursor = _parse_cursor(q.cursor)
        where, args = ["line_id = ?"], [q.line_id]
        for column, value in (("dataset", q.dataset), ("category", q.category), ("verdict", q.verdict)):
            if value:
                where.append(f"{column} = ?")
                args.append(value)
        if q.review_only:
            where.append("seq IN (SELECT seq FROM review_queue WHERE line_id = ?)")
            args.append(q.line_id)
        if q.since_ms:
            where.append("ts_ms >= ?")
            args.append(q.since_ms)
        if q.until_ms:
            where.append("ts_ms < ?")
            args.append(q.until_ms)
        if cursor:
            where.append("seq > ?" if q.oldest_first else "seq < ?")
            args.append(cursor)
        order = "ASC" if q.oldest_first else "DESC"
        sql = (
            f"SELECT seq, segment, offset, length FROM records WHERE {' AND '.join(where)} ORDER BY seq {order} LIMIT ?"
        )
        with self._io:
            rows = self._db.execute(sql, (*args, q.limit + 1)).fetchall()
        more = len(rows) > q.limit
        rows = rows[: q.limit]
        records = [self._read(segment, offset, length) for _, segment, offset, length in rows]
        return records, (str(rows[-1][0]) if more and rows else "")

    def _read(self, segment: int, offset: int, length: int) -> inspector_pb2.InspectionRecord:
        fd = os.open(self.folder / _segment_name(segment), os.O_RDONLY)
        try:
            return from_json(os.pread(fd, length, offset))
        finally:
            os.close(fd)

    async def get(self, line_id: str, request_id: str) -> inspector_pb2.InspectionRecord | None:
        def find() -> inspector_pb2.InspectionRecord | None:
            with self._io:
                row = self._db.execute(
                    "SELECT segment, offset, length FROM records WHERE line_id = ? AND request_id = ? "
                    "ORDER BY seq DESC LIMIT 1",
                    (line_id, request_id),
                ).fetchone()
            return self._read(*row) if row else None

        return await asyncio.to_thread(find)

    async def has_image(self, line_id: str, sha256: str) -> bool:
        def find() -> bool:
            with self._io:
                return (
                    self._db.execute(
                        "SELECT 1 FROM images WHERE line_id = ? AND sha256 = ? LIMIT 1", (line_id, sha256)
                    ).fetchone()
                    is not None
                )

        return await asyncio.to_thread(find)

    # ------------------------------------------------------------------ operator confirmations
    def _load_confirmations(self) -> list[inspector_pb2.ReviewConfirmation]:
        """Every confirmation in reviews.jsonl; a torn last line (never acknowledged) is cut off."""
        path = self.folder / REVIEWS_FILE
        if not path.exists():
            return []
        data = path.read_bytes()
        kept: list[inspector_pb2.ReviewConfirmation] = []
        offset = 0
        for line in data.splitlines(keepends=True):
            try:
                kept.append(confirmation_from_json(line))
            except ValueError:
                if offset + len(line) == len(data) and not line.endswith(b"\n"):
                    log.warning("audit log %s: cut a torn last confirmation (it was never acknowledged)", path)
                    with open(path, "r+b") as f:
                        f.truncate(offset)
                        os.fsync(f.fileno())
                    break
                log.error("audit log %s: unreadable confirmation at byte %d left out", path, offset)
            offset += len(line)
        return kept

    async def append_confirmation(self, confirmation: inspector_pb2.ReviewConfirmation) -> None:
        """Appended to reviews.jsonl by the single writer; fsynced before it returns (confirmations are rare, so
        every policy fsyncs them: an operator's acknowledged click is never lost)."""
        line = (confirmation_to_json(confirmation) + "\n").encode()

        def write() -> None:
            path = self.folder / REVIEWS_FILE
            new = not path.exists()
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            try:
                view = memoryview(line)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
            if new:
                fsync_dir(self.folder)
            with self._io:
                self._confirmations.append(confirmation)

        if self._closed:
            raise RuntimeError("the audit log is closed")
        await asyncio.get_running_loop().run_in_executor(self._writer, write)

    async def confirmations(self, line_id: str, inspection_id: str = "") -> list[inspector_pb2.ReviewConfirmation]:
        with self._io:
            return [
                c
                for c in self._confirmations
                if c.line_id == line_id and (not inspection_id or c.inspection_id == inspection_id)
            ]

    # ------------------------------------------------------------------ closing
    async def close(self) -> None:
        if self._flusher is not None:
            await asyncio.gather(self._flusher, return_exceptions=True)
        self.close_sync()

    def close_sync(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._writer.shutdown(wait=True)
        if self._syncer is not None:
            self._stop.set()
            self._syncer.join(5)
        with self._io:
            if self._fd >= 0:
                os.fsync(self._fd)
                os.close(self._fd)
                self._fd = -1
            self._db.close()
        fcntl.flock(self._lock_file, fcntl.LOCK_UN)
        self._lock_file.close()
