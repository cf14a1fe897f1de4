"""The answers file of a run: one JSON line per answered question, crash-safe and resumable.

Each line is written whole, flushed and fsync'd before the next question counts
as answered, so a crash (even SIGKILL) loses nothing already written. The only
damage a kill can do is a torn last line; `AnswerLog.open` finds it and cuts
the file back to the last complete line. A rerun then skips every id already
present, so no answer is duplicated or lost. A lock file keeps two runs from
appending to the same file at once.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from services.common.errors import FailedPrecondition

ANSWERS_FILE = "answers.jsonl"
ERRORS_FILE = "errors.jsonl"
RUN_FILE = "run.json"


class AnswerLogError(FailedPrecondition):
    """The answers file is damaged somewhere other than a torn last line; the message names file and line."""


def read_answers(path: str | Path, *, repair: bool = False) -> list[dict[str, Any]]:
    """Every complete record of an answers file, in file order; [] when it does not exist.

    Args:
        path: the answers.jsonl file.
        repair: cut a torn (unterminated or unparseable) last line off the file. Without it the torn line
            is only skipped, so readers never modify a run another process may be writing.

    Raises:
        AnswerLogError: a line other than the last is not valid JSON, or a record has no id.
    """
    path = Path(path)
    if not path.exists():
        return []
    data = path.read_bytes()
    lines = data.split(b"\n")  # the last item is b"" when the file ends with a newline, else a torn tail
    records: list[dict[str, Any]] = []
    good_end = 0  # byte offset just past the last valid line
    complete = lines[:-1]
    for lineno, raw in enumerate(complete, start=1):
        record: Any = None
        if raw.strip():
            try:
                record = json.loads(raw)
            except (json.JSONDecodeError, UnicodeDecodeError):
                record = None
            if not isinstance(record, dict):
                if lineno == len(complete) and not lines[-1]:
                    break  # a damaged final line: treat it like a torn one
                raise AnswerLogError(f"{path}: line {lineno}: not a JSON object; fix or remove it by hand")
            if "id" not in record:
                raise AnswerLogError(f"{path}: line {lineno}: record has no 'id'")
            records.append(record)
        good_end += len(raw) + 1
    if repair and good_end < len(data):
        with path.open("r+b") as f:
            f.truncate(good_end)
            f.flush()
            os.fsync(f.fileno())
    return records


class AnswerLog:
    """Append-only, durable writer over RUN_DIR/answers.jsonl.

    Use `AnswerLog.open(run_dir)`: it takes the run's lock, repairs a torn tail and loads the ids already
    answered. `append` writes one record durably; `close` releases the lock.
    """

    def __init__(self, path: Path, records: list[dict[str, Any]], lock_fd: int) -> None:
        self.path = path
        self.records = records
        self.ids: set[str] = {r["id"] for r in records}
        self.duplicates = len(records) - len(self.ids)
        self._lock_fd = lock_fd
        self._f = path.open("ab")

    @classmethod
    def open(cls, run_dir: str | Path, filename: str = ANSWERS_FILE) -> AnswerLog:
        """Lock the run directory, repair a torn last line, and load what is already answered.

        Raises:
            FailedPrecondition: another process holds the run's lock (two runs would interleave answers).
        """
        run_dir = Path(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        lock_fd = os.open(run_dir / ".lock", os.O_CREAT | os.O_RDWR, 0o644)
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(lock_fd)
            raise FailedPrecondition(f"{run_dir}: another evaluation is writing this run (its .lock is held)") from None
        try:
            path = run_dir / filename
            records = read_answers(path, repair=True)
            return cls(path, records, lock_fd)
        except BaseException:
            os.close(lock_fd)
            raise

    def __contains__(self, question_id: str) -> bool:
        return question_id in self.ids

    def __len__(self) -> int:
        return len(self.ids)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.records)

    def append(self, record: dict[str, Any]) -> None:
        """Write one record as one line and make it durable before returning (write, flush, fsync).

        A record whose id is already present is ignored: an id is answered once.
        """
        qid = record["id"]
        if qid in self.ids:
            return
        line = json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n"
        self._f.write(line.encode("utf-8"))
        self._f.flush()
        os.fsync(self._f.fileno())
        self.ids.add(qid)
        self.records.append(record)

    def close(self) -> None:
        if not self._f.closed:
            self._f.close()
        if self._lock_fd >= 0:
            os.close(self._lock_fd)  # closing the descriptor releases the flock
            self._lock_fd = -1

    def __enter__(self) -> AnswerLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def append_error(run_dir: str | Path, record: dict[str, Any]) -> None:
    """Log a question that failed (it stays unanswered, so a rerun retries it)."""
    with (Path(run_dir) / ERRORS_FILE).open("a", encoding="utf-8") as f:
        f.write(json.dumps(record, ensure_ascii=False) + "\n")
        f.flush()
        os.fsync(f.fileno())
