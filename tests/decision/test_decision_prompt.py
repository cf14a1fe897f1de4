"""The one prompt builder: MMAD wording, section order, answer formats, two passes, materialising images."""

from __future__ import annotations

import base64
import io

import numpy as np
from PIL import Image

from services.decision.prompt import (
    MC_ANSWER,
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
)

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
    pin = PromptInput(QUESTION, OPTIONS, knowledge="Normal: round, shiny.", n_references=2, category="metal_nut")
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


def test_zero_shot_has_no_reference_sentence_and_no_knowledge_section_when_empty() -> None:
    (p,) = final_prompts(PromptInput(QUESTION, OPTIONS), _img(0), [])
    text = "\n".join(_flat(p.messages))
    assert "normal sample" not in text and "Knowledge" not in text
    assert text.count("<img") == 1 and QUERY_WORDING in text


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


def test_true_false_asks_one_statement_per_option_constrained_to_yes_no() -> None:
    opts = {"A": "Scratch.", "B": "Crack.", "C": "Hole."}
    ps = final_prompts(PromptInput("What is the type of the defect?", opts, answer_format="true_false"), _img(0), [])
    assert len(ps) == 3
    for p, text in zip(ps, ("Scratch", "Crack", "Hole"), strict=True):
        flat = "\n".join(_flat(p.messages))
        assert f"Is this true: {text}?" in flat and TF_ANSWER in flat
        assert "A. Scratch." not in flat
        assert p.choices == ("Yes", "No")


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
    assert p.messages[0]["content"][1]["image_url"]["url"] == "echo-image:0"  # the prompt itself is untouched


def test_hf_messages_use_image_parts_and_prompt_text_names_images_by_size() -> None:
    (p,) = final_prompts(PromptInput(QUESTION, OPTIONS, n_references=1), _img(0), [_img(1, (112, 56))])
    kinds = [part["type"] for part in hf_messages(p)[0]["content"]]
    assert kinds.count("image") == 2 and "image_url" not in kinds
    assert "<image 0: 112x56>" in prompt_text(p) and "<image 1: 56x84>" in prompt_text(p)
