"""The visual evidence at the decision stage: in the prompt (text, heat-map image), and the `evidence` backend."""

from __future__ import annotations

import pytest
from PIL import Image

from echo.v1 import common_pb2, decision_pb2
from services.common.errors import FailedPrecondition, InvalidArgument
from services.decision.core import DecisionInput, EvidenceInput, tiny_png, validate_input
from services.decision.evidence_answer import EvidenceDecider, best_region_option
from services.decision.prompt import (
    HEATMAP_WORDING,
    PromptInput,
    example_wording,
    final_prompts,
    image_index,
    reasoning_prompt,
)
from services.decision.servicer import to_input

AD = {"A": "Yes.", "B": "No."}
SUMMARY = "Visual evidence (patch features compared with 5 normal images of this product): ANOMALOUS."


def _ask(question_type: str, options: dict[str, str], evidence: EvidenceInput | None) -> DecisionInput:
    return DecisionInput(tiny_png(), "Is there any defect in the object?", options, question_type=question_type,
                         evidence=evidence)  # fmt: skip


@pytest.mark.parametrize(
    ("region", "options", "expected"),
    [
        ("top left", {"A": "At the top left of the image.", "B": "At the top of the image."}, "A"),
        ("top", {"A": "At the top left of the image.", "B": "At the top of the image."}, "B"),
        ("bottom right", {"A": "Upper left corner.", "B": "Lower right corner."}, "B"),
        ("center", {"A": "On the left edge.", "B": "In the middle of the part."}, "B"),
        ("left", {"A": "Nowhere.", "B": "No defect."}, ""),
    ],
)
def test_localization_options_are_matched_by_their_position_words(region, options, expected) -> None:  # type: ignore[no-untyped-def]
    assert best_region_option(region, options) == expected


@pytest.mark.parametrize(("anomalous", "answer"), [(True, "A"), (False, "B")])
async def test_the_verdict_picks_the_yes_or_no_option(anomalous: bool, answer: str) -> None:
    ev = EvidenceInput(anomalous=anomalous, score=2.0 if anomalous else 0.5, threshold=1.0, regions=["center"])
    result = await EvidenceDecider().decide(_ask("Anomaly Detection", AD, ev))
    assert result.answer == answer and not result.unparsed and "threshold 1" in result.raw_reply


async def test_localization_answers_with_the_top_box_region() -> None:
    ev = EvidenceInput(anomalous=True, score=2.0, threshold=1.0, regions=["bottom left", "center"])
    options = {"A": "At the center of the image.", "B": "At the bottom left of the image."}
    assert (await EvidenceDecider().decide(_ask("Defect Localization", options, ev))).answer == "B"
    none = EvidenceInput(anomalous=False, score=0.2, threshold=1.0, regions=[])
    result = await EvidenceDecider().decide(_ask("Defect Localization", options, none))
    assert result.unparsed and result.answer == ""


@pytest.mark.parametrize("question_type", ["Defect Description", "Object Analysis", ""])
async def test_other_types_are_refused_naming_the_three_it_answers(question_type: str) -> None:
    ev = EvidenceInput(anomalous=True, score=2.0, threshold=1.0, regions=["center"])
    with pytest.raises(
        FailedPrecondition, match="answers Anomaly Detection, Defect Localization, Defect Classification"
    ):
        await EvidenceDecider().decide(_ask(question_type, AD, ev))


DC = {"A": "Scratch.", "B": "Color defect.", "C": "Dent.", "D": "Hole."}


async def test_classification_picks_the_option_naming_the_nearest_confirmed_type() -> None:
    summary = "nearest confirmed defects of this product (6 in its library): color_defect 0.70, hole 0.30"
    ev = EvidenceInput(True, 2.0, 1.0, ["center"], defect_type="color_defect", defect_summary=summary)
    result = await EvidenceDecider().decide(_ask("Defect Classification", DC, ev))
    assert result.answer == "B" and result.raw_reply == summary and result.model_kind == "evidence"


async def test_classification_without_confirmed_defects_is_refused_with_the_library_s_reason() -> None:
    why = "the defect library of line 'l' is empty: confirm defects of this product with their types first"
    ev = EvidenceInput(True, 2.0, 1.0, ["center"], defect_summary=why)
    with pytest.raises(FailedPrecondition, match="is empty: confirm defects") as err:
        await EvidenceDecider().decide(_ask("Defect Classification", DC, ev))
    assert err.value.field == "evidence.defect_type"


@pytest.mark.parametrize("style", ["mmad", "echo"])
def test_a_confirmed_defect_follows_the_heat_map_as_the_last_image_with_its_type(style: str) -> None:
    query, heat, example = (Image.new("RGB", (56, 56), (v, v, v)) for v in (10, 30, 40))
    inp = PromptInput("What is the type of the defect?", DC, style=style, heatmap=True, defect_example="color_defect",  # type: ignore[arg-type]
                      question_type="Defect Classification")  # fmt: skip
    for prompt in (*final_prompts(inp, query, [], heatmap=heat, example=example),
                   reasoning_prompt(inp, query, [], 64, heat, example)):  # fmt: skip
        assert prompt.images == [query, heat, example]
        parts = prompt.messages[0]["content"]
        order = [("image", image_index(p)) if image_index(p) is not None else ("text", p["text"]) for p in parts]
        at_example = order.index(("image", 2))
        assert order[at_example - 1][1].strip() == example_wording("color_defect")
        assert "'color defect'" in example_wording("color_defect")


async def test_the_decision_maker_shows_the_example_and_counts_it_against_max_images(tmp_path) -> None:  # type: ignore[no-untyped-def]
    req = decision_pb2.DecideRequest(
        query_image=common_pb2.Image(data=tiny_png()),
        question=common_pb2.Question(text="What is the type of the defect?", options=DC),
        defect_example=common_pb2.Image(data=tiny_png(value=200)),
        defect_example_type="Color defect",
    )
    inp = to_input(req)
    assert inp.extra_images == [tiny_png(value=200)] and inp.defect_example_type == "Color defect"
    validate_input(inp, 2)
    with pytest.raises(InvalidArgument, match="a confirmed defect"):
        validate_input(inp, 1)
    inp.defect_example_type = "?!"
    with pytest.raises(InvalidArgument, match=r"^defect_example_type"):
        validate_input(inp, 2)


async def test_a_question_without_evidence_is_refused_saying_what_to_add() -> None:
    with pytest.raises(FailedPrecondition, match=r"evidence bank.*product add"):
        await EvidenceDecider().decide(_ask("Anomaly Detection", AD, None))


async def test_the_evidence_backend_checks_its_health_with_a_real_decision() -> None:
    await EvidenceDecider().check_health()


@pytest.mark.parametrize("style", ["mmad", "echo"])
def test_the_prompt_shows_the_evidence_after_the_query_and_the_heat_map_as_the_last_image(style: str) -> None:
    query, ref, heat = (Image.new("RGB", (56, 56), (v, v, v)) for v in (10, 20, 30))
    inp = PromptInput("Is there any defect?", AD, n_references=1, style=style, evidence=SUMMARY, heatmap=True,  # type: ignore[arg-type]
                      question_type="Anomaly Detection")  # fmt: skip
    for prompt in (*final_prompts(inp, query, [ref], heatmap=heat), reasoning_prompt(inp, query, [ref], 64, heat)):
        assert prompt.images == [ref, query, heat]
        parts = prompt.messages[0]["content"]
        order = [("image", image_index(p)) if image_index(p) is not None else ("text", p["text"]) for p in parts]
        at_query = order.index(("image", 1))
        after = " ".join(str(v) for _, v in order[at_query + 1 :])
        assert HEATMAP_WORDING in after and SUMMARY in after and ("image", 2) in order[at_query + 1 :]
    plain = final_prompts(PromptInput("Is there any defect?", AD, style=style), query, [])[0]  # type: ignore[arg-type]
    assert plain.images == [query] and "Visual evidence" not in str(plain.messages)


def test_the_request_evidence_becomes_text_and_image_only_as_the_gateway_says() -> None:
    boxes = [common_pb2.EvidenceBox(region="top left"), common_pb2.EvidenceBox(region="center")]
    evidence = common_pb2.TraceEvidence(
        score=2.0, threshold=1.0, anomalous=True, summary=SUMMARY, sent_as_text=True, sent_as_image=False,
        overlay_png=b"\x89PNG", boxes=boxes,
    )  # fmt: skip
    req = decision_pb2.DecideRequest(
        query_image=common_pb2.Image(data=tiny_png()),
        question=common_pb2.Question(text="Is there any defect?", options=AD),
        evidence=evidence,
    )
    inp = to_input(req)
    assert inp.evidence is not None and inp.evidence.regions == ["top left", "center"]
    assert inp.evidence.as_text and inp.overlay == b""  # not sent as an image: the prompt shows none
    req.evidence.sent_as_image = True
    assert to_input(req).overlay == b"\x89PNG"
    assert to_input(decision_pb2.DecideRequest(query_image=req.query_image, question=req.question)).evidence is None
