"""Baseline answerers that check the evaluation harness: a seeded random guesser and an oracle.

Random sets the floor (its accuracy is 1/#options in expectation, and balanced
accuracy 50% for anomaly detection); the oracle sets the ceiling (100%) and
proves the harness scores what it should. Neither looks at pixels.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import threading
import time
from pathlib import Path

from services.common.errors import FailedPrecondition, NotFound
from services.common.images import sha256_hex
from services.decision.config import DecisionSettings
from services.decision.core import DecisionInput, DecisionResult, TextResult, health_input, validate_input


async def no_text_model(backend: str) -> TextResult:
    """Baselines answer letters without a language model, so they cannot complete text (refine knowledge)."""
    raise FailedPrecondition(
        f"decision backend {backend!r} has no language model to complete text; configure transformers, openai or vllm"
    )


def question_key(inp: DecisionInput) -> str:
    """Identifies a question independently of request ids: the query image's hash, the text and the options."""
    opts = "|".join(f"{k}={inp.options[k]}" for k in sorted(inp.options))
    return f"{sha256_hex(inp.query_image)}|{inp.question.strip()}|{opts}"


class RandomDecider:
    """Answers a uniformly random option, seeded by settings.decision.seed and the question (deterministic)."""

    backend_name = "random"

    def __init__(self, settings: DecisionSettings) -> None:
        self.seed = settings.seed
        self.model_id = f"random(seed={settings.seed})"

    async def decide(self, inp: DecisionInput, *, timeout_s: float | None = None) -> DecisionResult:
        t0 = time.perf_counter()
        validate_input(inp)
        digest = hashlib.sha256(f"{self.seed}|{question_key(inp)}".encode()).digest()
        letter = random.Random(digest).choice(sorted(inp.options))
        return DecisionResult(
            answer=letter,
            unparsed=False,
            raw_reply=letter,
            model_id=self.model_id,
            compute_ms=(time.perf_counter() - t0) * 1000,
            model_kind="baseline",
        )

    async def complete_text(self, prompt: str, **_: object) -> TextResult:
        return await no_text_model(self.backend_name)

    async def check_health(self) -> None:
        await self.decide(health_input())

    async def close(self) -> None:
        return None


class OracleDecider:
    """Answers from the ground truth of an MMAD-format dataset (settings.decision.oracle_data).

    A request is matched to a dataset question by the query image (sha256 of its
    bytes; the dataset's query images are hashed lazily, once) and the question
    text. A request that matches nothing is NOT_FOUND: the oracle never guesses.
    """

    backend_name = "oracle"

    def __init__(self, settings: DecisionSettings) -> None:
        if not settings.oracle_data:
            raise FailedPrecondition("decision.oracle_data is empty: the oracle backend needs an MMAD-format dataset")
        self.root = Path(settings.oracle_data)
        self.model_id = f"oracle({self.root.name})"
        self._index: dict[str, dict[str, str]] | None = None  # image sha256 -> question text -> answer
        self._lock = threading.Lock()

    def _build_index(self) -> dict[str, dict[str, str]]:
        from services.mmad.loader import load_dataset

        with self._lock:
            if self._index is None:
                ds = load_dataset(self.root, check_files=False)
                by_path: dict[str, dict[str, str]] = {}
                for sample, q in ds.questions():
                    by_path.setdefault(sample.image_path, {})[q.text.strip()] = q.answer
                index: dict[str, dict[str, str]] = {}
                for rel, answers in by_path.items():
                    path = ds.abspath(rel)
                    if path.is_file():
                        index.setdefault(sha256_hex(path.read_bytes()), {}).update(answers)
                self._index = index
            return self._index

    async def decide(self, inp: DecisionInput, *, timeout_s: float | None = None) -> DecisionResult:
        t0 = time.perf_counter()
        validate_input(inp)
        index = self._index if self._index is not None else await asyncio.to_thread(self._build_index)
        answers = index.get(sha256_hex(inp.query_image))
        if answers is None:
            raise NotFound(f"oracle: no query image in {self.root} has these bytes", field="query_image")
        answer = answers.get(inp.question.strip())
        if answer is None:
            raise NotFound(
                f"oracle: the dataset asks no such question about this image: {inp.question!r}", field="question.text"
            )
        return DecisionResult(
            answer=answer,
            unparsed=False,
            raw_reply=answer,
            model_id=self.model_id,
            compute_ms=(time.perf_counter() - t0) * 1000,
            model_kind="baseline",
        )

    async def complete_text(self, prompt: str, **_: object) -> TextResult:
        return await no_text_model(self.backend_name)

    async def check_health(self) -> None:
        index = self._index if self._index is not None else await asyncio.to_thread(self._build_index)
        if not index:
            raise FailedPrecondition(f"oracle: {self.root} has no readable query images")

    async def close(self) -> None:
        return None
