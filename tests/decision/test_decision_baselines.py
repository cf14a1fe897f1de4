"""The random and oracle answerers that bracket the evaluation harness (floor and ceiling)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from services.common.errors import FailedPrecondition, NotFound
from services.decision.config import DecisionSettings
from services.decision.core import DecisionInput
from services.decision.server import build_decider

AD = "Is there any defect in the object?"
TYPE_Q = "There is a defect in the object. What is the type of the defect?"


def _dataset(root: Path, png) -> dict[str, bytes]:
    """A two-image MMAD-format folder (docs/design.md §2 layout); returns path -> image bytes."""
    images = {
        "DS-MVTec/bottle/image/broken_large/000.png": png(1),
        "DS-MVTec/bottle/image/good/001.png": png(2),
        "MVTec-AD/bottle/train/good/026.png": png(3),
    }
    for rel, data in images.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    mmad = {
        "DS-MVTec/bottle/image/broken_large/000.png": {
            "mask_path": "",
            "similar_templates": ["MVTec-AD/bottle/train/good/026.png"],
            "random_templates": ["MVTec-AD/bottle/train/good/026.png"],
            "conversation": [
                {"Question": AD, "Options": {"A": "Yes.", "B": "No."}, "Answer": "A", "type": "Anomaly Detection"},
                {
                    "Question": TYPE_Q,
                    "Options": {"A": "Scratch.", "B": "Large breakage.", "C": "Contamination."},
                    "Answer": "B",
                    "type": "Defect Classification",
                },
            ],
        },
        "DS-MVTec/bottle/image/good/001.png": {
            "mask_path": None,
            "similar_templates": ["MVTec-AD/bottle/train/good/026.png"],
            "random_templates": [],
            "conversation": [
                {"Question": AD, "Options": {"A": "Yes.", "B": "No."}, "Answer": "B", "type": "Anomaly Detection"}
            ],
        },
    }
    (root / "mmad.json").write_text(json.dumps(mmad))
    (root / "domain_knowledge.json").write_text(json.dumps({"MVTec": {"bottle": {"good": "A clean bottle."}}}))
    return images


async def test_random_answers_are_valid_deterministic_per_question_and_seeded(png) -> None:
    opts = {"A": "Scratch.", "B": "Crack.", "C": "Hole.", "D": "Bent."}
    inps = [DecisionInput(png(i), TYPE_Q, opts, request_id=f"r{i}") for i in range(400)]
    d0 = build_decider(DecisionSettings(backend="random", seed=0))
    first = [(await d0.decide(i)).answer for i in inps]
    again = [
        (await d0.decide(DecisionInput(i.query_image, i.question, i.options, request_id="other"))).answer for i in inps
    ]
    assert first == again  # a new request id does not change the answer to the same question
    counts = Counter(first)
    assert set(counts) == set(opts) and min(counts.values()) > 60  # roughly uniform over 4 options
    d1 = build_decider(DecisionSettings(backend="random", seed=1))
    other_seed = [(await d1.decide(i)).answer for i in inps]
    assert other_seed != first
    await d0.check_health()


async def test_oracle_answers_every_dataset_question_correctly(tmp_path: Path, png) -> None:
    images = _dataset(tmp_path, png)
    d = build_decider(DecisionSettings(backend="oracle", oracle_data=str(tmp_path)))
    await d.check_health()
    bad = images["DS-MVTec/bottle/image/broken_large/000.png"]
    good = images["DS-MVTec/bottle/image/good/001.png"]
    assert (await d.decide(DecisionInput(bad, AD, {"A": "Yes.", "B": "No."}))).answer == "A"
    assert (await d.decide(DecisionInput(good, AD, {"A": "Yes.", "B": "No."}))).answer == "B"
    r = await d.decide(DecisionInput(bad, TYPE_Q, {"A": "Scratch.", "B": "Large breakage.", "C": "Contamination."}))
    assert r.answer == "B" and not r.unparsed


async def test_oracle_refuses_what_the_dataset_does_not_hold(tmp_path: Path, png) -> None:
    images = _dataset(tmp_path, png)
    d = build_decider(DecisionSettings(backend="oracle", oracle_data=str(tmp_path)))
    with pytest.raises(NotFound, match="query_image: oracle: no query image"):
        await d.decide(DecisionInput(png(99), AD, {"A": "Yes.", "B": "No."}))
    with pytest.raises(NotFound, match=r"question\.text: oracle: the dataset asks no such question"):
        await d.decide(DecisionInput(images["DS-MVTec/bottle/image/good/001.png"], TYPE_Q, {"A": "x", "B": "y"}))
    with pytest.raises(FailedPrecondition, match="oracle_data is empty"):
        build_decider(DecisionSettings(backend="oracle"))
