"""The decision prompt, built once for every backend, in the OpenAI chat format.

Sections, in order (DESIGN §1-2): the instruction; the Knowledge Guide's text;
the reference image(s) with MMAD's wording; the query image; the Reasoning
Expert's guidance; the question; the answer format.

Answer formats (one builder for all three):
- multiple choice: the question with lettered options; the reply is constrained
  to the letters (MMAD's protocol).
- open QA: the question without options; the model answers freely and the
  answer is mapped to the closest option text afterwards (the paper's open-QA
  setting).
- true/false: one prompt per option, "Is this true: <option>?", constrained to
  Yes/No; the option with the highest yes-probability wins (backends without
  probabilities: the first option answered Yes; no Yes at all is unparsed).

With the Reasoning Expert, a first pass asks for step-by-step analysis (bounded
tokens); the final pass replays that conversation, the analysis as the
assistant's turn, and asks for the answer. The final prompt therefore holds the
reasoning text, and shares its prefix with the first pass (prefix caching).

Images travel as `image_url` parts whose URL is a placeholder (`echo-image:<i>`,
an index into ChatPrompt.images) until a backend materialises them: data URLs
for HTTP backends, `{"type": "image"}` parts for a local processor.
"""

from __future__ import annotations

import base64
import copy
import io
import json
from dataclasses import dataclass, field
from typing import Any, Literal

from PIL import Image

AnswerFormat = Literal["multiple_choice", "open_qa", "true_false"]
ANSWER_FORMATS: tuple[AnswerFormat, ...] = ("multiple_choice", "open_qa", "true_false")
IMAGE_URL_PREFIX = "echo-image:"
YES, NO = "Yes", "No"

MC_ANSWER = "Answer with the option's letter from the given choices directly."
OPEN_ANSWER = "Answer the question with a short phrase."
TF_ANSWER = "Answer with Yes or No directly."
REASONING_ANSWER = "Think step by step as guided above and explain briefly. Do not give the final answer yet."
QUERY_WORDING = "Following is the query image:"


@dataclass(frozen=True)
class PromptInput:
    """What the prompt says, independent of pixels."""

    question: str
    options: dict[str, str]  # letter -> option text
    knowledge: str = ""
    n_references: int = 0
    category: str = ""
    answer_format: AnswerFormat = "multiple_choice"
    reasoning: bool = False

    @property
    def letters(self) -> tuple[str, ...]:
        return tuple(sorted(self.options))


@dataclass
class ChatPrompt:
    """One model call: OpenAI chat messages, their images in order of appearance, and the reply's shape."""

    messages: list[dict[str, Any]]
    images: list[Image.Image] = field(default_factory=list)
    choices: tuple[str, ...] = ()  # a constrained reply is exactly one of these; () means free text
    max_tokens: int = 1


def reference_wording(k: int) -> str:
    """MMAD's sentence introducing k normal templates."""
    noun = "image" if k == 1 else "images"
    return (
        f"Following is {k} {noun} of normal sample, which can be used as a template to compare the image being queried."
    )


def _product(category: str, default: str = "product") -> str:
    return category.replace("_", " ").strip() or default


def instruction(category: str) -> str:
    return (
        f"You are an industrial inspector who checks {_product(category, 'products')} by images. "
        "Judge whether the query image shows a defect and answer the question about it."
    )


def reasoning_guidance(category: str, n_references: int) -> str:
    """The Reasoning Expert: compare with the reference, find deviations, judge tolerance."""
    against = "the normal template" + ("s" if n_references > 1 else "") if n_references else "a normal sample"
    return (
        f"Reasoning guidance: compare the query image with {against} and the knowledge given. "
        f"1) Recall what a normal {_product(category)} looks like. "
        "2) Go over the query image region by region and note every deviation from normal. "
        "3) Judge whether each deviation is a real defect or within normal tolerance. "
        "4) Decide which answer this evidence supports."
    )


def options_block(options: dict[str, str]) -> str:
    return "\n".join(f"{k}. {options[k]}" for k in sorted(options))


def statement(option_text: str) -> str:
    """True/false wording for one option."""
    return f"Is this true: {option_text.strip().rstrip('.')}?"


def _image_part(index: int) -> dict[str, Any]:
    return {"type": "image_url", "image_url": {"url": f"{IMAGE_URL_PREFIX}{index}"}}


class _Content:
    """Collects text lines and image parts; adjacent lines share one text part."""

    def __init__(self) -> None:
        self.parts: list[dict[str, Any]] = []
        self._lines: list[str] = []

    def text(self, line: str) -> None:
        self._lines.append(line)

    def image(self, index: int) -> None:
        self._flush()
        self.parts.append(_image_part(index))

    def done(self) -> list[dict[str, Any]]:
        self._flush()
        return self.parts

    def _flush(self) -> None:
        if self._lines:
            prefix = "\n" if self.parts else ""
            self.parts.append({"type": "text", "text": prefix + "\n".join(self._lines)})
            self._lines = []


def _first_user_message(inp: PromptInput, question_block: str, answer_line: str) -> dict[str, Any]:
    """The single user turn with every section; images are indexed refs first, then the query."""
    c = _Content()
    c.text(instruction(inp.category))
    if inp.knowledge.strip():
        c.text(f"Knowledge about this product:\n{inp.knowledge.strip()}")
    if inp.n_references:
        c.text(reference_wording(inp.n_references))
        for i in range(inp.n_references):
            c.image(i)
    c.text(QUERY_WORDING)
    c.image(inp.n_references)
    if inp.reasoning:
        c.text(reasoning_guidance(inp.category, inp.n_references))
    c.text(question_block)
    c.text(answer_line)
    return {"role": "user", "content": c.done()}


def _ordered(query: Image.Image, references: list[Image.Image]) -> list[Image.Image]:
    return [*references, query]


def reasoning_prompt(
    inp: PromptInput, query: Image.Image, references: list[Image.Image], max_tokens: int
) -> ChatPrompt:
    """The Reasoning Expert's pass: free text, bounded."""
    block = inp.question if inp.answer_format != "multiple_choice" else f"{inp.question}\n{options_block(inp.options)}"
    msg = _first_user_message(inp, block, REASONING_ANSWER)
    return ChatPrompt([msg], _ordered(query, references), (), max_tokens)


def final_prompts(
    inp: PromptInput,
    query: Image.Image,
    references: list[Image.Image],
    *,
    reasoning: str | None = None,
    first_pass: ChatPrompt | None = None,
    max_answer_tokens: int = 16,
) -> list[ChatPrompt]:
    """The Decision Maker's pass(es): one prompt, or one per option for true/false.

    With `reasoning` (and the `first_pass` it answered), each prompt replays that
    turn and the analysis, then asks for the answer.
    """
    images = _ordered(query, references)
    two_pass = reasoning is not None
    if two_pass and first_pass is None:
        raise ValueError("the two-pass mode needs the first pass it continues")
    fmt = inp.answer_format
    letters = inp.letters

    def one(question_block: str, answer_line: str, choices: tuple[str, ...], max_tokens: int) -> ChatPrompt:
        if two_pass:
            assert first_pass is not None
            messages = [
                *copy.deepcopy(first_pass.messages),
                {"role": "assistant", "content": reasoning},
                {"role": "user", "content": [{"type": "text", "text": f"{question_block}\n{answer_line}".strip()}]},
            ]
        else:
            messages = [_first_user_message(inp, question_block, answer_line)]
        return ChatPrompt(messages, images, choices, max_tokens)

    if fmt == "multiple_choice":
        block = "" if two_pass else f"{inp.question}\n{options_block(inp.options)}"
        return [one(block, MC_ANSWER, letters, 1)]
    if fmt == "open_qa":
        return [one("" if two_pass else inp.question, OPEN_ANSWER, (), max_answer_tokens)]
    if fmt == "true_false":
        out = []
        for k in letters:
            block = statement(inp.options[k]) if two_pass else f"{inp.question}\n{statement(inp.options[k])}"
            out.append(one(block, TF_ANSWER, (YES, NO), 1))
        return out
    raise ValueError(f"unknown answer format {fmt!r}")


# ----- materialising for a backend -----


def image_index(part: dict[str, Any]) -> int | None:
    """The ChatPrompt.images index an image part points at, or None for a text part."""
    if part.get("type") != "image_url":
        return None
    url = part["image_url"]["url"]
    return int(url.removeprefix(IMAGE_URL_PREFIX)) if url.startswith(IMAGE_URL_PREFIX) else None


def png_data_url(img: Image.Image) -> str:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _map_parts(prompt: ChatPrompt, image_part: Any) -> list[dict[str, Any]]:
    out = []
    for msg in prompt.messages:
        content = msg["content"]
        if isinstance(content, list):
            parts = []
            for p in content:
                i = image_index(p)
                parts.append(image_part(i) if i is not None else dict(p))
            content = parts
        out.append({"role": msg["role"], "content": content})
    return out


def openai_messages(prompt: ChatPrompt, encode: Any = png_data_url) -> list[dict[str, Any]]:
    """Messages with each image as a data URL (lossless PNG: the pixels the local model sees)."""
    urls = [encode(img) for img in prompt.images]
    return _map_parts(prompt, lambda i: {"type": "image_url", "image_url": {"url": urls[i]}})


def hf_messages(prompt: ChatPrompt) -> list[dict[str, Any]]:
    """Messages for a transformers processor's chat template: image parts become {"type": "image"}."""
    return _map_parts(prompt, lambda i: {"type": "image"})


def prompt_text(prompt: ChatPrompt) -> str:
    """The prompt as JSON, each image named by its index and size (for traces of HTTP backends)."""
    sizes = [f"{img.width}x{img.height}" for img in prompt.images]
    msgs = _map_parts(prompt, lambda i: {"type": "image_url", "image_url": {"url": f"<image {i}: {sizes[i]}>"}})
    return json.dumps(msgs, ensure_ascii=False, indent=1)
