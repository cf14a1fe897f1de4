"""Golden test: the `mmad` prompt style is the official MMAD query prompt for Qwen-VL, part for part.

The expected payload below is transcribed from the public repository jam-cc/MMAD:

- evaluation/examples/Transformers/qwen2_5_vl_query.py (commit 08f81dd), `QwenQuery.get_query`, lines 93-134:
  the domain-knowledge part (l. 95-99), "Following is/are {k} image of normal sample, ..." (l. 100-104), one
  image part per template (l. 105-113), then the payload (l. 124-132): `instruction`, "Answer with the option's
  letter from the given choices directly! ", the in-context parts, "Following is the query image: ", the query
  image, "Following is the question list: ", the question. `generate_answer` (l. 48-54) asks one question per
  call; the same script sets max_pixels = 1280*28*28 and generates up to 128 new tokens (l. 75).
- evaluation/examples/GPT4/gpt4v.py (commit f9a0e6f), `instruction` (lines 29-32), imported by the Qwen script,
  and `GPT4Query.parse_conversation`, which writes each question as f"Question {i + 1}: {question} \\n" followed
  by f"{letter}. {option}\\n" per option. Our Inspector answers one question per request, so it is always
  "Question 1:" (the first of a one-question list).
- the domain knowledge MMAD passes is '\\n'.join(domain_knowledge[dataset][category].values()).
"""

from __future__ import annotations

from typing import Any

import pytest
from PIL import Image

from services.decision.backends.local import LocalModel
from services.decision.prompt import PromptInput, final_prompts, hf_messages, image_index

# One record of mmad.json (the fixture), and its category's domain_knowledge.json entry.
RECORD = {
    "image": "DS-MVTec/bottle/image/broken_large/000.png",
    "random_templates": ["MVTec-AD/bottle/train/good/026.png"],
    "conversation": [
        {
            "Question": "Is there any defect in the object?",
            "Options": {"A": "Yes.", "B": "No."},
            "Answer": "A",
            "type": "Anomaly Detection",
        },
        {
            "Question": "There is a defect in the object. What is the type of the defect?",
            "Options": {"A": "Broken large.", "B": "Contamination.", "C": "Broken small.", "D": "Good."},
            "Answer": "A",
            "type": "Defect Classification",
        },
    ],
}
DOMAIN_KNOWLEDGE = {
    "good": " <Normal Characteristics>\n Description: A round glass bottle seen from above.",
    "broken_large": " <Large Breakage>\n Description: A large piece of the rim is missing.",
}

# ---- MMAD's payload, transcribed (text parts verbatim; "<ref i>" and "<query>" stand for the image parts) ----
MMAD_INSTRUCTION = """
You are an industrial inspector who checks products by images. You should judge whether there is a defect in the query image and answer the questions about it.
Answer with the option's letter from the given choices directly.
"""  # noqa: E501  (verbatim)


def mmad_question(i: int, qa: dict[str, Any]) -> str:
    options_text = "".join(f"{chr(65 + j)}. {value}\n" for j, value in enumerate(qa["Options"].values()))
    return f"Question {i + 1}: {qa['Question']} \n{options_text}"


def mmad_payload(qa: dict[str, Any], few_shot: list[str], domain_knowledge: str | None) -> list[Any]:
    incontext: list[Any] = []
    if domain_knowledge:
        incontext.append(
            "Following is the domain knowledge which contains some type of defect and the normal object "
            f"characteristics: \n {domain_knowledge}"
        )
    if few_shot:
        incontext.append(
            f"Following is/are {len(few_shot)} image of normal sample, which can be used as a template to compare "
            "the image being queried."
        )
    incontext += [f"<ref {i}>" for i in range(len(few_shot))]
    return [
        MMAD_INSTRUCTION,
        "Answer with the option's letter from the given choices directly! ",
        *incontext,
        "Following is the query image: ",
        "<query>",
        "Following is the question list: ",
        mmad_question(0, qa),
    ]


# ---- ours ----
def ours(qa: dict[str, Any], n_refs: int, knowledge: str) -> list[Any]:
    pin = PromptInput(
        qa["Question"], qa["Options"], knowledge=knowledge, n_references=n_refs, category="bottle", style="mmad"
    )
    (prompt,) = final_prompts(pin, Image.new("RGB", (56, 56)), [Image.new("RGB", (56, 56))] * n_refs)
    assert len(prompt.messages) == 1 and prompt.messages[0]["role"] == "user"
    flat = []
    for part in prompt.messages[0]["content"]:
        i = image_index(part)
        flat.append(part["text"] if i is None else ("<query>" if i == n_refs else f"<ref {i}>"))
    return flat


@pytest.mark.parametrize("with_knowledge", [False, True])
@pytest.mark.parametrize("n_refs", [0, 1])
def test_mmad_style_is_the_official_qwen_vl_query_prompt(n_refs: int, with_knowledge: bool) -> None:
    qa = RECORD["conversation"][1]
    dk = "\n".join(DOMAIN_KNOWLEDGE.values()) if with_knowledge else None
    expected = mmad_payload(qa, RECORD["random_templates"][:n_refs], dk)
    assert ours(qa, n_refs, dk or "") == expected


def test_golden_text_of_the_fixture() -> None:
    """The whole text, spelled out once, for a reader checking it against the official code by eye."""
    qa = RECORD["conversation"][0]
    text = "".join(p if not p.startswith("<") else "<image>" for p in ours(qa, 1, ""))
    assert text == (
        "\nYou are an industrial inspector who checks products by images. You should judge whether there is a "
        "defect in the query image and answer the questions about it.\n"
        "Answer with the option's letter from the given choices directly.\n"
        "Answer with the option's letter from the given choices directly! "
        "Following is/are 1 image of normal sample, which can be used as a template to compare the image being "
        "queried.<image>"
        "Following is the query image: <image>"
        "Following is the question list: "
        "Question 1: Is there any defect in the object? \nA. Yes.\nB. No.\n"
    )


def test_the_model_sees_the_same_tokens_as_with_mmads_payload(local_model: LocalModel) -> None:
    """Rendered through the Qwen2-VL chat template, our prompt and MMAD's payload are the same string."""
    qa = RECORD["conversation"][1]
    dk = "\n".join(DOMAIN_KNOWLEDGE.values())
    official = [
        {"type": "image"} if p.startswith("<") and p.endswith(">") else {"type": "text", "text": p}
        for p in mmad_payload(qa, RECORD["random_templates"], dk)
    ]
    pin = PromptInput(qa["Question"], qa["Options"], knowledge=dk, n_references=1, style="mmad")
    (prompt,) = final_prompts(pin, Image.new("RGB", (56, 56)), [Image.new("RGB", (56, 56))])
    template = local_model.processor.apply_chat_template
    mmad_text = template([{"role": "user", "content": official}], tokenize=False, add_generation_prompt=True)
    assert template(hf_messages(prompt), tokenize=False, add_generation_prompt=True) == mmad_text
    assert local_model.render(prompt) == mmad_text
