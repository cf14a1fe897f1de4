"""Optional LLM refinement of CSK, cached, with a human review loop (the paper's manual review).

A refiner (the decision stage's model over its Complete RPC: decision_refiner.py)
condenses the extracted knowledge for one kind of question. Results are cached
per (dataset, category, question type, option set): MMAD asks the same options
of many images. `echo-iad knowledge refine --data DIR` fills the cache for a
dataset. The cache is a JSON file; `echo-iad knowledge refine-export` writes it
for review, a reviewer edits `refined` and sets `reviewed: true`, and
`refine-import` reads it back; a running stage re-reads the file when it
changes. A reviewed text is never replaced by the refiner. A cached text
belongs to the knowledge it was made from: when the entry changes (its source
text differs), the cached text is not used.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from services.common.errors import InvalidArgument


@dataclass(frozen=True)
class RefineKey:
    dataset: str
    category: str
    question_type: str
    options: tuple[str, ...]  # normalised and sorted: the letters and their order do not matter

    @classmethod
    def of(cls, dataset: str, category: str, question_type: str, options: list[str] | tuple[str, ...]) -> RefineKey:
        norm = sorted({" ".join(o.split()).rstrip(".").lower() for o in options if o.strip()})
        return cls(dataset, category, question_type, tuple(norm))


@dataclass(frozen=True)
class RefineInput:
    """What a refiner gets: the extracted knowledge and the question it is for."""

    dataset: str
    category: str
    question_type: str
    question: str
    options: tuple[str, ...]
    text: str


@dataclass
class Refined:
    key: RefineKey
    source_sha256: str  # of the CSK text it was made from
    source: str
    refined: str
    refiner: str
    reviewed: bool = False


Refiner = Callable[[RefineInput], "str | Awaitable[str]"]


def refine_prompt(inp: RefineInput) -> str:
    """The instruction the gateway's decision-stage refiner sends to the LLM."""
    options = "; ".join(inp.options) or "(none)"
    return (
        f"You help an industrial inspector answer a {inp.question_type or 'inspection'} question about a "
        f"{inp.category} ({inp.dataset}).\nQuestion: {inp.question}\nOptions: {options}\n"
        "Rewrite the knowledge below into a short note that keeps every fact that helps choose between the "
        "options and drops the rest. Do not invent facts; do not answer the question.\n"
        f"Knowledge:\n{inp.text}"
    )


def refiner_id(refiner: Refiner) -> str:
    return str(getattr(refiner, "model_id", None) or getattr(refiner, "__name__", type(refiner).__name__))


async def call_refiner(refiner: Refiner, inp: RefineInput) -> str:
    out = refiner(inp)
    if inspect.isawaitable(out):
        out = await out
    if not isinstance(out, str) or not out.strip():
        raise ValueError(f"refiner {refiner_id(refiner)} returned no text")
    return out.strip()


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class RefineCache:
    """Refined texts by key, persisted to a JSON file (None: memory only).

    Args:
        path: the cache file; read at start if it exists, rewritten atomically after each change.
    """

    def __init__(self, path: str | Path | None = None, reload_s: float = 1.0) -> None:
        self.path = Path(path) if path else None
        self.reload_s = reload_s
        self._items: dict[RefineKey, Refined] = {}
        self._lock = threading.Lock()
        self._mtime_ns = 0
        self._checked_at = 0.0
        self._load()

    def _load(self) -> None:
        if self.path is None or not self.path.is_file():
            return
        mtime = self.path.stat().st_mtime_ns
        items = _parse_items(json.loads(self.path.read_text(encoding="utf-8")), str(self.path))
        self._items = {item.key: item for item in items}
        self._mtime_ns = mtime

    def _reload_if_changed(self) -> None:
        """Pick up a file another process wrote (refine-import beside a running stage), at most every reload_s."""
        now = time.monotonic()
        if self.path is None or now - self._checked_at < self.reload_s:
            return
        self._checked_at = now
        try:
            if self.path.is_file() and self.path.stat().st_mtime_ns != self._mtime_ns:
                with self._lock:
                    self._load()
        except (OSError, ValueError, InvalidArgument):
            pass  # a half-written or broken file: keep serving what we have

    def __len__(self) -> int:
        return len(self._items)

    def items(self) -> list[Refined]:
        self._reload_if_changed()
        return list(self._items.values())

    def get(self, key: RefineKey, source: str) -> Refined | None:
        """The cached text for key, if it was made from this very source text."""
        self._reload_if_changed()
        item = self._items.get(key)
        return item if item is not None and item.source_sha256 == sha256(source) else None

    def put(self, key: RefineKey, source: str, refined: str, refiner: str, reviewed: bool = False) -> Refined:
        item = Refined(key, sha256(source), source, refined, refiner, reviewed)
        with self._lock:
            old = self._items.get(key)
            if old is not None and old.reviewed and old.source_sha256 == item.source_sha256 and not reviewed:
                return old  # a human's text wins over the model's
            self._items[key] = item
            self._save()
        return item

    def _save(self) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".refine.", suffix=".tmp", dir=self.path.parent)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(_dump_items(self._items.values()), f, indent=2, ensure_ascii=False)
        os.replace(tmp, self.path)
        self._mtime_ns = self.path.stat().st_mtime_ns

    def export(self, path: str | Path, only_unreviewed: bool = False) -> int:
        """Write the items for human review; returns how many."""
        items = [i for i in self._items.values() if not (only_unreviewed and i.reviewed)]
        Path(path).write_text(json.dumps(_dump_items(items), indent=2, ensure_ascii=False), encoding="utf-8")
        return len(items)

    def import_reviewed(self, path: str | Path) -> int:
        """Read a reviewed export back; items marked reviewed replace the cache's. Returns how many were taken."""
        items = _parse_items(json.loads(Path(path).read_text(encoding="utf-8")), str(path))
        taken = 0
        with self._lock:
            for item in items:
                if item.reviewed:
                    self._items[item.key] = item
                    taken += 1
            self._save()
        return taken


def _dump_items(items: Any) -> dict[str, Any]:
    out = []
    for item in sorted(items, key=lambda i: (i.key.dataset, i.key.category, i.key.question_type, i.key.options)):
        d = asdict(item)
        key = d.pop("key")
        out.append({**key, "options": list(key["options"]), **d})
    return {
        "format": "echo-iad refined knowledge v1",
        "how_to_review": "Edit 'refined', set 'reviewed' to true, then: echo-iad knowledge refine-import FILE",
        "items": out,
    }


def _parse_items(data: Any, source: str) -> list[Refined]:
    if not isinstance(data, dict) or not isinstance(data.get("items"), list):
        raise InvalidArgument(f"{source}: expected an object with an 'items' list")
    items = []
    for i, raw in enumerate(data["items"]):
        where = f"{source}: items[{i}]"
        if not isinstance(raw, dict):
            raise InvalidArgument(f"{where}: must be an object")
        for field in ("dataset", "category", "question_type", "source", "refined", "refiner"):
            if not isinstance(raw.get(field), str):
                raise InvalidArgument(f"{where}.{field}: must be a string")
        if not raw["refined"].strip():
            raise InvalidArgument(f"{where}.refined: is empty")
        if not isinstance(raw.get("options"), list) or not all(isinstance(o, str) for o in raw["options"]):
            raise InvalidArgument(f"{where}.options: must be a list of strings")
        key = RefineKey.of(raw["dataset"], raw["category"], raw["question_type"], raw["options"])
        items.append(
            Refined(
                key=key,
                source_sha256=sha256(raw["source"]),
                source=raw["source"],
                refined=raw["refined"].strip(),
                refiner=raw["refiner"],
                reviewed=bool(raw.get("reviewed", False)),
            )
        )
    return items
