"""The one prompt builder: both styles, section order, no answer leak, answer formats, two passes, images.

The `mmad` style's exact text is proven against the official code in test_decision_prompt_golden.py.
"""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from PIL import Image

from services.decision.prompt import (
    MC_ANSWER,
    MMAD_QUERY,
    QUERY_WORDING,
    TF_ANSWER,
    PromptInput,
    final_prompts,
    hf_messages,
    image_index,
    openai_messages,
    prompt_text,
    reasoning_prompt,
    reference_wording,
    statement,
)
from services.mmad.types import QUESTION_TYPES

OPTIONS = {"A": "Yes.", "B": "No."}
QUESTION = "Is there any defect in the object?"


def _img(value: int, size: tuple[int, int] = (56, 84)) -> Image.Image:
    return Image.new("RGB", size, (value, value, value))


def _flat(messages: list[dict]) -> list[str]:
    """Each message's parts as text, images as '<img i>'."""
    out = []
    for m in messages:
        content = m["content"] if isinstance(m["content"], list) else [{"type": "text", "text": m["content"]}]
        for p in content:
            i = image_index(p)
            out.append(f"<img {i}>" if i is not None else p["text"])
    return out


def test_mmad_reference_wording_for_one_and_k_images() -> None:
    assert reference_wording(1) == (
        "Following is 1 image of normal sample, which can be used as a template to compare the image being queried."
    )
    assert reference_wording(3).startswith("Following is 3 images of normal sample, which can be used as a template")


def test_sections_come_in_the_documented_order() -> None:
    pin = PromptInput(
        QUESTION,
        OPTIONS,
        knowledge="Normal: round, shiny.",
        n_references=2,
        category="metal_nut",
        question_type="Anomaly Detection",
        style="echo",
    )
    (p,) = final_prompts(pin, _img(0), [_img(1), _img(2)])
    text = "\n".join(_flat(p.messages))
    order = [
        "You are an industrial inspector who checks metal nut",
        "Knowledge about this product:\nNormal: round, shiny.",
        reference_wording(2),
        "<img 0>",
        "<img 1>",
        QUERY_WORDING,
        "<img 2>",
        f"{QUESTION}\nA. Yes.\nB. No.",
        MC_ANSWER,
    ]
    positions = [text.index(s) for s in order]
    assert positions == sorted(positions)
    assert p.choices == ("A", "B") and p.max_tokens == 1
    # images are ordered as they appear: references first, the query last
    assert [img.getpixel((0, 0))[0] for img in p.images] == [1, 2, 0]


@pytest.mark.parametrize("style", ["mmad", "echo"])
def test_zero_shot_has_no_reference_sentence_and_no_knowledge_section_when_empty(style: str) -> None:
    (p,) = final_prompts(PromptInput(QUESTION, OPTIONS, style=style), _img(0), [])
    text = "\n".join(_flat(p.messages))
    assert "normal sample" not in text and "knowledge" not in text.lower()
    assert text.count("<img") == 1 and (QUERY_WORDING if style == "echo" else MMAD_QUERY) in text


@pytest.mark.parametrize("style", ["mmad", "echo"])
@pytest.mark.parametrize("fmt", ["multiple_choice", "open_qa", "true_false"])
def test_object_classification_never_names_the_category(style: str, fmt: str) -> None:
    """ "checks metal nut by images" would answer "What kind of product is this?" for the model."""
    options = {"A": "Metal nut.", "B": "Washer.", "C": "Gear.", "D": "Bolt."}
    pin = PromptInput(
        "What kind of product is shown in the image?",
        options,
        n_references=1,
        category="metal_nut",
        question_type="Object Classification",
        answer_format=fmt,
        reasoning=True,
        style=style,
    )
    first = reasoning_prompt(pin, _img(0), [_img(1)], max_tokens=8)
    prompts = [first, *final_prompts(pin, _img(0), [_img(1)])]
    for p in prompts:
        instruction = _flat(p.messages)[0]
        assert "metal nut" not in instruction.lower() and "metal_nut" not in instruction
        outside_options = "\n".join(_flat(p.messages)).replace("Metal nut.", "")
        assert "metal nut" not in outside_options.lower(), outside_options


def test_the_category_is_named_only_where_the_question_is_not_about_the_objects_identity() -> None:
    for qtype in (*QUESTION_TYPES, ""):
        pin = PromptInput(QUESTION, OPTIONS, category="metal_nut", question_type=qtype, style="echo")
        (p,) = final_prompts(pin, _img(0), [])
        named = "metal nut" in _flat(p.messages)[0]
        assert named == (qtype not in ("", "Object Classification")), qtype


def test_reasoning_guidance_sits_between_the_query_image_and_the_question() -> None:
    pin = PromptInput(QUESTION, OPTIONS, n_references=1, reasoning=True)
    first = reasoning_prompt(pin, _img(0), [_img(1)], max_tokens=64)
    text = "\n".join(_flat(first.messages))
    assert text.index("<img 1>") < text.index("Reasoning guidance") < text.index(QUESTION)
    assert first.choices == () and first.max_tokens == 64
    assert "normal template" in text


def test_two_pass_final_prompt_replays_the_first_pass_and_holds_the_reasoning() -> None:
    pin = PromptInput(QUESTION, OPTIONS, n_references=1, reasoning=True)
    first = reasoning_prompt(pin, _img(0), [_img(1)], max_tokens=64)
    analysis = "The query shows a scratch that the template lacks."
    (final,) = final_prompts(pin, _img(0), [_img(1)], reasoning=analysis, first_pass=first)
    assert final.messages[0] == first.messages[0]  # shared prefix: the KV cache of pass 1 is reusable
    assert final.messages[1] == {"role": "assistant", "content": analysis}
    assert _flat([final.messages[2]]) == [MC_ANSWER]
    assert final.choices == ("A", "B")


def test_open_qa_hides_the_options_and_answers_freely() -> None:
    (p,) = final_prompts(PromptInput(QUESTION, OPTIONS, answer_format="open_qa"), _img(0), [], max_answer_tokens=12)
    text = "\n".join(_flat(p.messages))
    assert "A. Yes." not in text and QUESTION in text
    assert p.choices == () and p.max_tokens == 12


@pytest.mark.parametrize("style", ["mmad", "echo"])
def test_true_false_asks_the_papers_statement_per_option_constrained_to_yes_no(style: str) -> None:
    opts = {"A": "Scratch.", "B": "Crack.", "C": "Hole."}
    pin = PromptInput(
        "What is the type of the defect?",
        opts,
        answer_format="true_false",
        question_type="Defect Classification",
        style=style,
    )
    ps = final_prompts(pin, _img(0), [])
    assert len(ps) == 3
    for p, text in zip(ps, ("Scratch", "Crack", "Hole"), strict=True):
        flat = "\n".join(_flat(p.messages))
        assert f"The type of the defect in the query image is: {text}." in flat and TF_ANSWER in flat
        assert "A. Scratch." not in flat and "Is this true" not in flat
        assert p.choices == ("Yes", "No")


def test_statements_follow_the_question_type() -> None:
    assert statement("No.", "Anomaly Detection") == "The query image contains no anomalies."
    assert statement("Yes.", "Anomaly Detection") == "The query image contains anomalies."
    assert statement("At the top left.", "Defect Localization").startswith("The location of the defect")
    assert (
        statement("It may leak.", "Defect Analysis") == "The effect of the defect in the query image is: It may leak."
    )
    assert statement("Bottle.", "Object Classification") == "The object in the query image is: Bottle."
    assert statement("Three.", "Object Analysis", "How many holes?") == 'The answer to "How many holes?" is: Three.'


def test_openai_messages_carry_the_exact_pixels_as_png_data_urls() -> None:
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 256, (56, 84, 3), dtype=np.uint8))
    (p,) = final_prompts(PromptInput(QUESTION, OPTIONS), img, [])
    msgs = openai_messages(p)
    parts = [part for part in msgs[0]["content"] if part["type"] == "image_url"]
    assert len(parts) == 1
    url = parts[0]["image_url"]["url"]
    assert url.startswith("data:image/png;base64,")
    back = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
    assert np.array_equal(np.asarray(back), np.asarray(img))
    images = [part for part in p.messages[0]["content"] if part["type"] == "image_url"]
    assert images[0]["image_url"]["url"] == "echo-image:0"  # the prompt itself is untouched


def test_hf_messages_use_image_parts_and_prompt_text_names_images_by_size() -> None:
    (p,) = final_prompts(PromptInput(QUESTION, OPTIONS, n_references=1), _img(0), [_img(1, (112, 56))])
    kinds = [part["type"] for part in hf_messages(p)[0]["content"]]
    assert kinds.count("image") == 2 and "image_url" not in kinds
    assert "<image 0: 112x56>" in prompt_text(p) and "<image 1: 56x84>" in prompt_text(p)
