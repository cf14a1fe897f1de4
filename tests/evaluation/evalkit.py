"""Helpers for the evaluation tests (a uniquely named module, so tests can import it beside other parts' conftests)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from services.mmad.loader import MMADDataset


def records_for(
    dataset: MMADDataset, answer: Callable[[Any, Any], str], *, dataset_name: str | None = None
) -> list[dict[str, Any]]:
    """answers.jsonl-shaped records where `answer(sample, question)` gives each predicted letter."""
    out = []
    for i, (s, q) in enumerate(dataset.questions()):
        a = answer(s, q)
        out.append(
            {
                "id": q.id if dataset_name is None else f"{dataset_name}:{q.id}",
                "dataset": dataset_name or s.dataset,
                "category": s.category,
                "type": q.type,
                "gold": q.answer,
                "answer": a,
                "correct": a == q.answer,
                "unparsed": a == "",
                "is_normal": s.is_normal,
                "n_options": len(q.options),
                "latency_ms": 10.0 + i,
                "cell": "full",
                "session": 1000.0,
                "ts": 1000.0 + 0.1 * (i + 1),
                "trace": {"timings": [{"stage": "total", "ms": 5.0 + i}, {"stage": "decision", "ms": 2.0}]},
            }
        )
    return out


def write_config(path: Path, state: Path, **decision: Any) -> Path:
    """A settings file whose state lives in `state` (memory, images, model caches)."""
    path.write_text(yaml.safe_dump({"data_dir": str(state), "decision": decision}), encoding="utf-8")
    return path


class ServerThread:
    """The embedded server on its own event loop in a thread, so tests can run clients and subprocesses beside it."""

    def __init__(self, settings: Any) -> None:
        self.settings = settings
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="eval-embedded", daemon=True)
        self.embedded: Any = None

    def start(self) -> ServerThread:
        from app.embedded import start_embedded

        self.thread.start()
        self.embedded = asyncio.run_coroutine_threadsafe(start_embedded(self.settings), self.loop).result(300)
        return self

    @property
    def address(self) -> str:
        return self.embedded.address

    def stop(self) -> None:
        if self.embedded is not None:
            asyncio.run_coroutine_threadsafe(self.embedded.stop(grace=1.0), self.loop).result(30)
        asyncio.run_coroutine_threadsafe(_cancel_others(), self.loop).result(30)  # e.g. stages' batching tasks
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


async def _cancel_others() -> None:
    me = asyncio.current_task()
    tasks = [t for t in asyncio.all_tasks() if t is not me]
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
