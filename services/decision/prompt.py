"""The decision prompt, built once for every backend, in the OpenAI chat format.

Two styles (decision.prompt_style):

- `mmad` (the default, the paper's protocol): the official MMAD query prompt for
  Qwen-VL, part for part (jam-cc/MMAD evaluation/examples/Transformers/
  qwen2_5_vl_query.py `get_query`, with the `instruction` of
  evaluation/examples/GPT4/gpt4v.py): the instruction, the answer directive, the
  domain-knowledge header, "Following is/are 1 image of normal sample ...", the
  references, "Following is the query image: ", the query, "Following is the
  question list: " and "Question 1: ...". tests/decision/test_decision_prompt_golden.py
  proves it. Echo's additions go where the paper puts them: the Knowledge Guide's
  text in MMAD's knowledge slot (MMAD's DK setting, which the paper's DK and CSK
  replace), the Reasoning Expert's guidance after the query image, before the
  question.
- `echo`: Echo-IAD's own wording with named sections, in the same order.

Neither names the product for an Object Classification question (or one of
unknown type): "checks metal nut by images" would give the answer away.

Answer formats (one builder for all three):
- multiple choice: the question with lettered options; the reply is constrained
  to the letters (or, with decision.answer_mode free, generated and parsed as
  MMAD does).
- open QA: the question without options; the model answers freely and the
  answer is mapped to the closest option text afterwards (the paper's open-QA
  setting).
- true/false: one prompt per option, the paper's statement for it ("The query
  image contains no anomalies."), constrained to Yes/No; the option with the
  highest yes-probability wins (backends without probabilities: the first
  option answered Yes; no Yes at all is unparsed).

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
import re
from dataclasses import dataclass, field
from typing import Any, Literal

from PIL import Image

from services.mmad.types import (
    ANOMALY_DETECTION,
    DEFECT_ANALYSIS,
    DEFECT_CLASSIFICATION,
    DEFECT_DESCRIPTION,
    DEFECT_LOCALIZATION,
    OBJECT_CLASSIFICATION,
)

AnswerFormat = Literal["multiple_choice", "open_qa", "true_false"]
ANSWER_FORMATS: tuple[AnswerFormat, ...] = ("multiple_choice", "open_qa", "true_false")
PromptStyle = Literal["mmad", "echo"]
PROMPT_STYLES: tuple[PromptStyle, ...] = ("mmad", "echo")
IMAGE_URL_PREFIX = "echo-image:"
YES, NO = "Yes", "No"

MC_ANSWER = "Answer with the option's letter from the given choices directly."
OPEN_ANSWER = "Answer the question with a short phrase."
TF_ANSWER = "Answer with Yes or No directly."
REASONING_ANSWER = "Think step by step as guided above and explain briefly. Do not give the final answer yet."
QUERY_WORDING = "Following is the query image:"
HEATMAP_WORDING = (
    "Following is the anomaly heat map of the query image, laid over it (red: unlike any normal sample, "
    "blue: like the normal samples):"
)

# MMAD's texts, verbatim (jam-cc/MMAD; file and line cited in test_decision_prompt_golden.py).
MMAD_ROLE = (
    "\nYou are an industrial inspector who checks products by images. You should judge whether there is a defect "
    "in the query image and answer the questions about it.\n"
)
MMAD_INSTRUCTION = MMAD_ROLE + MC_ANSWER + "\n"  # gpt4v.py `instruction`
MMAD_DIRECTIVE = "Answer with the option's letter from the given choices directly! "
MMAD_KNOWLEDGE = (
    "Following is the domain knowledge which contains some type of defect and the normal object characteristics: \n "
)
MMAD_QUERY = "Following is the query image: "
MMAD_QUESTION_LIST = "Following is the question list: "


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
    question_type: str = ""  # an MMAD type; "" when unknown
    style: PromptStyle = "mmad"
    evidence: str = ""  # the visual evidence expert's summary, after the query image
    heatmap: bool = False  # the evidence's heat-map overlay follows as one more image (after the query)
    defect_example: str = ""  # a confirmed defect of this type follows as one more image (after the heat map)

    @property
    def letters(self) -> tuple[str, ...]:
        return tuple(sorted(self.options))

    @property
    def product(self) -> str:
        """The category as the prompt may name it: never when the question asks what the object is."""
        if not self.question_type or self.question_type == OBJECT_CLASSIFICATION:
            return ""
        return self.category


@dataclass
class ChatPrompt:
    """One model call: OpenAI chat messages, their images in order of appearance, and the reply's shape."""

    messages: list[dict[str, Any]]
    images: list[Image.Image] = field(default_factory=list)
    choices: tuple[str, ...] = ()  # a constrained reply is exactly one of these; () means free text
    max_tokens: int = 1


def reference_wording(k: int) -> str:
    """Echo's sentence introducing k normal templates (MMAD's, with the number agreeing)."""
    noun = "image" if k == 1 else "images"
    return (
        f"Following is {k} {noun} of normal sample, which can be used as a template to compare the image being queried."
    )


def mmad_reference_wording(k: int) -> str:
    """MMAD's own sentence, verbatim ("is/are", "image" whatever k is)."""
    return (
        f"Following is/are {k} image of normal sample, which can be used as a template to compare the image "
        "being queried."
    )


def _product(category: str, default: str = "product") -> str:
    return category.replace("_", " ").strip() or default


def instruction(category: str) -> str:
    """Echo's instruction; pass PromptInput.product, which is empty when naming the product would leak."""
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


def mmad_question(question: str, options: dict[str, str] | None) -> str:
    """MMAD's question item: "Question 1: <text> \\n" then "A. <option>\\n" per option (one question per request)."""
    return f"Question 1: {question} \n" + "".join(f"{k}. {options[k]}\n" for k in sorted(options or {}))


_YES_NO = re.compile(r"^\s*(yes|no)\b", re.IGNORECASE)
_ASPECT = {
    DEFECT_CLASSIFICATION: "type",
    DEFECT_LOCALIZATION: "location",
    DEFECT_DESCRIPTION: "appearance",
    DEFECT_ANALYSIS: "effect",
}


def statement(option_text: str, question_type: str = "", question: str = "") -> str:
    """The paper's true/false wording for one option: a statement about the query image, per question type."""
    text = option_text.strip().rstrip(".")
    m = _YES_NO.match(text)
    if question_type == ANOMALY_DETECTION and m:
        return "The query image contains " + ("anomalies." if m.group(1).lower() == "yes" else "no anomalies.")
    if question_type in _ASPECT:
        return f"The {_ASPECT[question_type]} of the defect in the query image is: {text}."
    if question_type == OBJECT_CLASSIFICATION:
        return f"The object in the query image is: {text}."
    if question.strip():
        return f'The answer to "{question.strip()}" is: {text}.'
    return f"{text}."


def tf_question(inp: PromptInput, letter: str) -> str:
    return f"Is the following statement true? {statement(inp.options[letter], inp.question_type, inp.question)}"


def _image_part(index: int) -> dict[str, Any]:
    return {"type": "image_url", "image_url": {"url": f"{IMAGE_URL_PREFIX}{index}"}}


def _text_part(text: str) -> dict[str, Any]:
    return {"type": "text", "text": text}


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
            self.parts.append(_text_part(prefix + "\n".join(self._lines)))
            self._lines = []


def _echo_message(inp: PromptInput, question_block: str, answer_line: str) -> dict[str, Any]:
    """Echo's single user turn: named sections; images are indexed refs first, then the query."""
    c = _Content()
    c.text(instruction(inp.product))
    if inp.knowledge.strip():
        c.text(f"Knowledge about this product:\n{inp.knowledge.strip()}")
    if inp.n_references:
        c.text(reference_wording(inp.n_references))
        for i in range(inp.n_references):
            c.image(i)
    c.text(QUERY_WORDING)
    c.image(inp.n_references)
    if inp.heatmap:
        c.text(HEATMAP_WORDING)
        c.image(inp.n_references + 1)
    if inp.defect_example:
        c.text(example_wording(inp.defect_example))
        c.image(inp.n_references + 1 + inp.heatmap)
    if inp.evidence.strip():
        c.text(inp.evidence.strip())
    if inp.reasoning:
        c.text(reasoning_guidance(inp.product, inp.n_references))
    c.text(question_block)
    c.text(answer_line)
    return {"role": "user", "content": c.done()}


def _mmad_message(inp: PromptInput, question_item: str, answer_line: str) -> dict[str, Any]:
    """MMAD's user turn, one part per part of the official payload.

    Multiple choice keeps MMAD's instruction and directive verbatim; other answer
    formats and the reasoning pass keep MMAD's role sentence and state their own
    directive last.
    """
    verbatim = answer_line == MC_ANSWER and not inp.reasoning
    parts = [_text_part(MMAD_INSTRUCTION if verbatim else MMAD_ROLE)]
    if verbatim:
        parts.append(_text_part(MMAD_DIRECTIVE))
    if inp.knowledge.strip():
        parts.append(_text_part(MMAD_KNOWLEDGE + inp.knowledge))  # as given: MMAD does not strip it
    if inp.n_references:
        parts.append(_text_part(mmad_reference_wording(inp.n_references)))
        parts += [_image_part(i) for i in range(inp.n_references)]
    parts += [_text_part(MMAD_QUERY), _image_part(inp.n_references)]
    if inp.heatmap:
        parts += [_text_part(HEATMAP_WORDING), _image_part(inp.n_references + 1)]
    if inp.defect_example:
        parts += [_text_part(example_wording(inp.defect_example)), _image_part(inp.n_references + 1 + inp.heatmap)]
    if inp.evidence.strip():
        parts.append(_text_part(inp.evidence.strip()))
    if inp.reasoning:
        parts.append(_text_part(reasoning_guidance(inp.product, inp.n_references)))
    parts += [_text_part(MMAD_QUESTION_LIST), _text_part(question_item)]
    if not verbatim:
        parts.append(_text_part(answer_line))
    return {"role": "user", "content": parts}


def _question_block(inp: PromptInput, *, with_options: bool, tf_letter: str = "") -> str:
    """The question as the style writes it: MMAD's "Question 1: ..." item, or Echo's plain lines."""
    if tf_letter:
        text = tf_question(inp, tf_letter)
        return mmad_question(text, None) if inp.style == "mmad" else text
    if inp.style == "mmad":
        return mmad_question(inp.question, inp.options if with_options else None)
    return f"{inp.question}\n{options_block(inp.options)}" if with_options else inp.question


def _first_user_message(inp: PromptInput, question_block: str, answer_line: str) -> dict[str, Any]:
    build = _mmad_message if inp.style == "mmad" else _echo_message
    return build(inp, question_block, answer_line)


def _ordered(
    query: Image.Image,
    references: list[Image.Image],
    heatmap: Image.Image | None,
    example: Image.Image | None = None,
) -> list[Image.Image]:
    return [*references, query, *(img for img in (heatmap, example) if img is not None)]


def example_wording(defect_type: str) -> str:
    """The words before a confirmed defect's image: its type, as the operator confirmed it."""
    return (
        f"Following is another image of this product with a confirmed defect of type "
        f"'{defect_type.replace('_', ' ')}' (an example, not the query):"
    )


def reasoning_prompt(
    inp: PromptInput,
    query: Image.Image,
    references: list[Image.Image],
    max_tokens: int,
    heatmap: Image.Image | None = None,
    example: Image.Image | None = None,
) -> ChatPrompt:
    """The Reasoning Expert's pass: free text, bounded. `heatmap`: the evidence overlay (with inp.heatmap);
    `example`: a confirmed defect (with inp.defect_example)."""
    block = _question_block(inp, with_options=inp.answer_format == "multiple_choice")
    msg = _first_user_message(inp, block, REASONING_ANSWER)
    return ChatPrompt([msg], _ordered(query, references, heatmap, example), (), max_tokens)


def final_prompts(
    inp: PromptInput,
    query: Image.Image,
    references: list[Image.Image],
    *,
    reasoning: str | None = None,
    first_pass: ChatPrompt | None = None,
    max_answer_tokens: int = 16,
    free_answer_tokens: int = 0,
    heatmap: Image.Image | None = None,
    example: Image.Image | None = None,
) -> list[ChatPrompt]:
    """The Decision Maker's pass(es): one prompt, or one per option for true/false.

    With `reasoning` (and the `first_pass` it answered), each prompt replays that
    turn and the analysis, then asks for the answer. `free_answer_tokens` > 0
    generates the multiple-choice and true/false answers freely (up to that many
    tokens, parsed afterwards) instead of constraining them. `heatmap`: the evidence overlay (with inp.heatmap);
    `example`: a confirmed defect (with inp.defect_example).
    """
    images = _ordered(query, references, heatmap, example)
    two_pass = reasoning is not None
    if two_pass and first_pass is None:
        raise ValueError("the two-pass mode needs the first pass it continues")
    fmt = inp.answer_format
    letters = inp.letters

    def one(question_block: str, answer_line: str, choices: tuple[str, ...], max_tokens: int) -> ChatPrompt:
        if free_answer_tokens and choices:
            choices, max_tokens = (), free_answer_tokens
        if two_pass:
            assert first_pass is not None
            messages = [
                *copy.deepcopy(first_pass.messages),
                {"role": "assistant", "content": reasoning},
                {"role": "user", "content": [_text_part(f"{question_block}\n{answer_line}".strip())]},
            ]
        else:
            messages = [_first_user_message(inp, question_block, answer_line)]
        return ChatPrompt(messages, images, choices, max_tokens)

    if fmt == "multiple_choice":
        block = "" if two_pass else _question_block(inp, with_options=True)
        return [one(block, MC_ANSWER, letters, 1)]
    if fmt == "open_qa":
        block = "" if two_pass else _question_block(inp, with_options=False)
        return [one(block, OPEN_ANSWER, (), max_answer_tokens)]
    if fmt == "true_false":
        out = []
        for k in letters:
            block = tf_question(inp, k) if two_pass else _question_block(inp, with_options=False, tf_letter=k)
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
