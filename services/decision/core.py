"""The decision stage's logic: Reasoning Expert + Decision Maker over an injected LLM backend (no gRPC here).

One decision: check the input, decode and fit the images to the pixel budget
(timed apart as preprocess_ms), build the prompt, run the Reasoning Expert pass
when asked (bounded free text), run the constrained final pass(es), and read
the answer out of the reply without guessing.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import logging
import math
import re
import time
from dataclasses import dataclass, field
from typing import Protocol

from PIL import Image

from services.common.answers import match_option, parse_yes_no, read_letter
from services.common.errors import DeadlineExceeded, InvalidArgument
from services.common.health import working
from services.common.names import defect_type_key
from services.decision.backends.base import Backend, Reply
from services.decision.config import DecisionSettings
from services.decision.offline_model import OFFLINE_MODEL
from services.decision.preprocess import prepare_images
from services.decision.prompt import (
    ANSWER_FORMATS,
    YES,
    AnswerFormat,
    ChatPrompt,
    PromptInput,
    final_prompts,
    reasoning_prompt,
)
from services.mmad.types import QUESTION_TYPES

log = logging.getLogger(__name__)
_LETTER = re.compile(r"^[A-Z]$")


@dataclass
class EvidenceInput:
    """The visual evidence expert's finding (the domain form of DecideRequest.evidence)."""

    anomalous: bool
    score: float
    threshold: float
    regions: list[str]  # the boxes' MMAD position words, most anomalous first
    summary: str = ""
    as_text: bool = False  # the prompt shows the summary
    overlay: bytes = b""  # the heat-map overlay; non-empty: the prompt shows it as an extra image
    defect_type: str = ""  # Defect Classification: the nearest confirmed defects' type ("" when none answered)
    defect_summary: str = ""  # their vote in words, or why the product's defect library could not answer


@dataclass
class DecisionInput:
    """One question about one query image (the domain form of echo.v1.DecideRequest)."""

    query_image: bytes
    question: str
    options: dict[str, str]
    reference_images: list[bytes] = field(default_factory=list)
    knowledge: str = ""
    reasoning: bool = False
    answer_format: AnswerFormat = "multiple_choice"
    return_prompt: bool = False
    max_reasoning_tokens: int = 0  # 0: the configured default
    category: str = ""
    request_id: str = ""
    question_type: str = ""  # an MMAD type, "" when unknown (the prompt then never names the product)
    evidence: EvidenceInput | None = None
    defect_example: bytes = b""  # the product's nearest confirmed defect: one more example image, after the others
    defect_example_type: str = ""

    @property
    def overlay(self) -> bytes:
        return self.evidence.overlay if self.evidence is not None else b""

    @property
    def extra_images(self) -> list[bytes]:
        """The images after the query: the heat-map overlay, then the confirmed defect, each when there."""
        return [b for b in (self.overlay, self.defect_example) if b]


@dataclass
class DecisionResult:
    answer: str  # an option letter; "" when the reply named none (unparsed)
    unparsed: bool
    raw_reply: str
    reasoning: str = ""
    prompt: str = ""
    prompt_sha256: str = ""  # the rendered final prompt(s) and their images: what the model was asked
    model_id: str = ""
    compute_ms: float = 0.0
    preprocess_ms: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    scores: dict[str, float] = field(default_factory=dict)  # per option, when the backend gives probabilities
    # what answered (DecideResponse.model_kind): "mllm", "random-weights", "evidence" or "baseline"; the gateway
    # lets the evidence answer Anomaly Detection when a random-weight model could only guess
    model_kind: str = "mllm"


@dataclass
class TextResult:
    """A text-only completion (the Complete RPC)."""

    text: str
    model_id: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    compute_ms: float = 0.0


class Decider(Protocol):
    """What the servicer calls: the Decision Maker over an LLM, or a baseline answerer."""

    backend_name: str
    model_id: str

    async def decide(self, inp: DecisionInput, *, timeout_s: float | None = None) -> DecisionResult: ...

    async def complete_text(
        self, prompt: str, *, max_tokens: int = 0, timeout_s: float | None = None, request_id: str = ""
    ) -> TextResult: ...

    async def check_health(self) -> None: ...

    async def close(self) -> None: ...


def validate_input(inp: DecisionInput, max_images: int | None = None) -> None:
    """Refuse what no backend can answer; every error names the field."""
    if not inp.query_image:
        raise InvalidArgument("is missing: set data (encoded JPEG/PNG bytes) or uri", field="query_image")
    if not inp.question.strip():
        raise InvalidArgument("is empty", field="question.text")
    if not inp.options:
        raise InvalidArgument("is empty: a question needs lettered options (A, B, ...)", field="question.options")
    for k, v in inp.options.items():
        if not _LETTER.match(k):
            raise InvalidArgument(f"key {k!r} is not a single capital letter", field="question.options")
        if not v.strip():
            raise InvalidArgument(f"option {k} has no text", field="question.options")
    if inp.answer_format not in ANSWER_FORMATS:
        raise InvalidArgument(f"{inp.answer_format!r} is not one of {ANSWER_FORMATS}", field="answer_format")
    if inp.question_type and inp.question_type not in QUESTION_TYPES:
        raise InvalidArgument(f"{inp.question_type!r} is not an MMAD question type", field="question.type")
    if inp.max_reasoning_tokens < 0:
        raise InvalidArgument(f"is {inp.max_reasoning_tokens}; use 0 for the default", field="max_reasoning_tokens")
    if inp.defect_example and not defect_type_key(inp.defect_example_type):
        raise InvalidArgument("is not a defect type; the example image needs its type", field="defect_example_type")
    n = 1 + len(inp.reference_images) + len(inp.extra_images)
    if max_images is not None and n > max_images:
        heat = " and the evidence heat map" if inp.overlay else ""
        heat += " and a confirmed defect" if inp.defect_example else ""
        raise InvalidArgument(
            f"has {n} images (the query, {len(inp.reference_images)} references{heat}); the model allows "
            f"{max_images} (decision.max_images)",
            field="reference_images",
        )


def interpret(
    fmt: AnswerFormat, replies: list[Reply], options: dict[str, str], *, free: bool = False
) -> tuple[str, str, dict[str, float]]:
    """(answer letter or "", raw reply, per-option scores) from the final pass(es).

    `free`: the multiple-choice reply was generated without a constraint and is parsed as MMAD does.
    """
    letters = sorted(options)
    if fmt == "multiple_choice":
        r = replies[0]
        return read_letter(r.text, options, free=free), r.text, dict(r.scores or {})
    if fmt == "open_qa":
        r = replies[0]
        letter, score = match_option(r.text, options)
        return letter, r.text, ({letter: score} if letter else {})
    # true/false: with a yes-probability for every option, the most probably true one (the model's own
    # ranking); without probabilities, the first option answered yes; no yes at all is unparsed.
    raw = "; ".join(f"{k}: {r.text}" for k, r in zip(letters, replies, strict=True))
    yes_prob = {k: r.scores[YES] for k, r in zip(letters, replies, strict=True) if r.scores and YES in r.scores}
    if len(yes_prob) == len(letters):
        return max(letters, key=lambda k: yes_prob[k]), raw, yes_prob
    judged_true = [k for k, r in zip(letters, replies, strict=True) if parse_yes_no(r.text) is True]
    return (judged_true[0] if judged_true else ""), raw, yes_prob


def prompt_hash(rendered: list[str], images: list[bytes]) -> str:
    """One sha256 over the prompt text(s) and the image bytes: equal hashes mean the model saw the same input."""
    h = hashlib.sha256()
    for text in rendered:
        h.update(text.encode())
        h.update(b"\0")
    for data in images:
        h.update(hashlib.sha256(data).digest())
    return h.hexdigest()


def tiny_png(size: int = 56, value: int = 128) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (size, size), (value, value, value)).save(buf, format="PNG")
    return buf.getvalue()


def health_input() -> DecisionInput:
    """The tiny real request a health check sends: a grey 56x56 image and MMAD's anomaly question."""
    return DecisionInput(tiny_png(), "Is there any defect in the object?", {"A": "Yes.", "B": "No."})


class DecisionMaker:
    """Reasoning Expert + Decision Maker over one LLM backend."""

    def __init__(self, backend: Backend, settings: DecisionSettings) -> None:
        self.backend = backend
        self.settings = settings
        self.backend_name = backend.name
        self.model_id = backend.model_id
        self.model_kind = "random-weights" if settings.model == OFFLINE_MODEL else "mllm"

    async def decide(self, inp: DecisionInput, *, timeout_s: float | None = None) -> DecisionResult:
        validate_input(inp, self.backend.max_images)
        timeout = min(timeout_s if timeout_s is not None else math.inf, self.settings.timeout_s)
        try:
            return await asyncio.wait_for(self._decide(inp), timeout)
        except TimeoutError as e:
            raise DeadlineExceeded(f"{self.backend_name} backend: no decision within {timeout:.3g}s") from e

    async def _decide(self, inp: DecisionInput) -> DecisionResult:
        s = self.settings
        async with self.backend.session():
            t0 = time.perf_counter()
            fields = [("query_image", inp.query_image)]
            fields += [(f"reference_images[{i}]", b) for i, b in enumerate(inp.reference_images)]
            if inp.overlay:
                fields.append(("evidence.overlay_png", inp.overlay))
            if inp.defect_example:
                fields.append(("defect_example", inp.defect_example))
            with working("decision"):  # health: decoding queues on the shared threads; busy, not stuck
                images = await asyncio.to_thread(prepare_images, fields, s.min_pixels, s.max_pixels)
            t1 = time.perf_counter()
            example = images.pop() if inp.defect_example else None
            heatmap = images.pop() if inp.overlay else None
            query, refs = images[0], images[1:]
            ev = inp.evidence
            pin = PromptInput(
                question=inp.question.strip(),
                options=dict(inp.options),
                knowledge=inp.knowledge,
                n_references=len(refs),
                category=inp.category,
                answer_format=inp.answer_format,
                reasoning=inp.reasoning,
                question_type=inp.question_type,
                style=s.prompt_style,
                evidence=ev.summary if ev is not None and ev.as_text else "",
                heatmap=heatmap is not None,
                defect_example=defect_type_key(inp.defect_example_type) if example is not None else "",
            )
            replies: list[Reply] = []
            reasoning: str | None = None
            first: ChatPrompt | None = None
            if inp.reasoning:
                first = reasoning_prompt(
                    pin,
                    query,
                    refs,
                    min(inp.max_reasoning_tokens or s.max_reasoning_tokens, s.max_reasoning_tokens),
                    heatmap,
                    example,
                )
                r = await self.backend.complete(first)
                replies.append(r)
                reasoning = r.text
            free = s.answer_mode == "free"
            finals = final_prompts(
                pin,
                query,
                refs,
                reasoning=reasoning,
                first_pass=first,
                max_answer_tokens=s.max_answer_tokens,
                free_answer_tokens=s.free_answer_tokens if free else 0,
                heatmap=heatmap,
                example=example,
            )
            final_replies = list(await asyncio.gather(*(self.backend.complete(p) for p in finals)))
            replies += final_replies
            t2 = time.perf_counter()
        answer, raw, scores = interpret(inp.answer_format, final_replies, inp.options, free=free)
        if not answer:
            log.info("unparsed reply (request %s): %.200r", inp.request_id or "-", raw)
        rendered = [self.backend.render(p) for p in finals]
        prompt = ""
        if inp.return_prompt:
            if len(rendered) == 1:
                prompt = rendered[0]
            else:
                letters = sorted(inp.options)
                prompt = "\n".join(f"----- option {k} -----\n{t}" for k, t in zip(letters, rendered, strict=True))
        return DecisionResult(
            answer=answer,
            unparsed=not answer,
            raw_reply=raw,
            reasoning=reasoning or "",
            prompt=prompt,
            prompt_sha256=prompt_hash(rendered, [inp.query_image, *inp.reference_images, *inp.extra_images]),
            model_id=self.model_id,
            compute_ms=(t2 - t1) * 1000,
            preprocess_ms=(t1 - t0) * 1000,
            prompt_tokens=sum(r.prompt_tokens for r in replies),
            completion_tokens=sum(r.completion_tokens for r in replies),
            scores=scores,
            model_kind=self.model_kind,
        )

    async def complete_text(
        self, prompt: str, *, max_tokens: int = 0, timeout_s: float | None = None, request_id: str = ""
    ) -> TextResult:
        """The model as a plain text LLM (no images): the Knowledge Guide's refiner."""
        if not prompt.strip():
            raise InvalidArgument("is empty", field="prompt")
        if max_tokens < 0:
            raise InvalidArgument(f"is {max_tokens}; use 0 for the default", field="max_tokens")
        message = {"role": "user", "content": [{"type": "text", "text": prompt}]}
        chat = ChatPrompt([message], [], (), max_tokens or self.settings.max_text_tokens)
        timeout = min(timeout_s if timeout_s is not None else math.inf, self.settings.timeout_s)
        t0 = time.perf_counter()
        try:
            async with self.backend.session():
                r = await asyncio.wait_for(self.backend.complete(chat), timeout)
        except TimeoutError as e:
            raise DeadlineExceeded(f"{self.backend_name} backend: no completion within {timeout:.3g}s") from e
        return TextResult(
            r.text.strip(), self.model_id, r.prompt_tokens, r.completion_tokens, (time.perf_counter() - t0) * 1000
        )

    async def check_health(self) -> None:
        """A tiny real decision; raises when the backend cannot answer."""
        await self.decide(health_input(), timeout_s=self.settings.timeout_s)

    async def close(self) -> None:
        await self.backend.close()
