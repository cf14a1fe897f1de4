"""MMAD-style questions whose correct answers come from what was drawn."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from services.mmad.catalogue import (
    CATEGORIES,
    DEFECT_LABELS,
    EXTRA_DEFECT_LABELS,
    PRODUCT_DISTRACTORS,
    REGION_NAMES,
    region_text,
)
from services.mmad.types import (
    ANOMALY_DETECTION,
    DEFECT_ANALYSIS,
    DEFECT_CLASSIFICATION,
    DEFECT_DESCRIPTION,
    DEFECT_LOCALIZATION,
    OBJECT_CLASSIFICATION,
)

# MMAD's phrasings.
Q_AD = "Is there any defect in the object?"
Q_DC = "There is a defect in the object. What is the type of the defect?"
Q_DL = "There is a defect in the object. Where is the defect?"
Q_DD = "There is a defect in the object. What is the appearance of the defect?"
Q_DA = "There is a defect in the object. What is the effect of the defect?"
Q_OC = "What kind of product is shown in the image?"

APPEARANCE_EXAMPLES: dict[str, tuple[str, ...]] = {
    "scratch": (
        "A thin bright long line running diagonally across the surface.",
        "A thin dark short line running horizontally across the surface.",
        "A thin bright short line running vertically across the surface.",
    ),
    "crack": (
        "A dark, jagged long crack line with a branching fissure.",
        "A dark, jagged short crack line with a branching fissure.",
    ),
    "hole": (
        "A small opening with clean edges where the material is gone.",
        "A large opening with frayed, ragged edges where the material is gone.",
    ),
    "contamination": (
        "An irregular dark brown stain or deposit on the surface.",
        "An irregular greyish-white stain or deposit on the surface.",
    ),
    "color_defect": (
        "A bluish discoloured patch that differs from the surrounding colour.",
        "A reddish-brown discoloured patch that differs from the surrounding colour.",
    ),
    "missing_part": ("A component is absent, leaving its bare solder pads exposed.",),
    "misplacement": ("A component is shifted to the left, off its solder pads.",),
}


def _choose(rng: np.random.Generator, pool: Sequence[str], k: int, exclude: set[str]) -> list[str]:
    cands = list(dict.fromkeys(p for p in pool if p not in exclude))
    if len(cands) < k:
        raise ValueError(f"need {k} distractors, have {len(cands)}")
    idx = rng.permutation(len(cands))[:k]
    return [cands[i] for i in sorted(idx)]


def _mc(rng: np.random.Generator, text: str, correct: str, distractors: list[str], qtype: str) -> dict[str, Any]:
    opts = [correct, *distractors]
    order = rng.permutation(len(opts))
    letters = "ABCDE"
    options = {letters[i]: opts[j] for i, j in enumerate(order)}
    answer = letters[int(np.flatnonzero(order == 0)[0])]
    return {"Question": text, "Options": options, "Answer": answer, "type": qtype}


def make_questions(
    category: str, rng: np.random.Generator, info: dict[str, Any] | None, facts: dict[str, str]
) -> list[dict[str, Any]]:
    """The MMAD conversation for one image: AD + object questions, plus the four defect questions if `info`."""
    spec = CATEGORIES[category]
    anomalous = info is not None
    conv = [_mc(rng, Q_AD, "Yes." if anomalous else "No.", ["No." if anomalous else "Yes."], ANOMALY_DETECTION)]
    if info is not None:
        d = info["defect_type"]
        own = [f"{DEFECT_LABELS[x]}." for x in spec.defects if x != d]
        extra = [f"{x}." for x in EXTRA_DEFECT_LABELS]
        correct = f"{DEFECT_LABELS[d]}."
        picks = _choose(rng, own, min(3, len(own)), {correct})
        picks += _choose(rng, extra, 3 - len(picks), {correct, *picks})
        conv.append(_mc(rng, Q_DC, correct, picks, DEFECT_CLASSIFICATION))

        region = info["region"]
        others = [region_text(r) for r in REGION_NAMES if r != region]
        conv.append(_mc(rng, Q_DL, region_text(region), _choose(rng, others, 3, set()), DEFECT_LOCALIZATION))

        pool_types = [x for x in (*spec.defects, "scratch", "crack", "hole", "contamination", "color_defect") if x != d]
        pool = [t for x in dict.fromkeys(pool_types) for t in APPEARANCE_EXAMPLES[x]]
        conv.append(_mc(rng, Q_DD, info["appearance"], _choose(rng, pool, 3, {info["appearance"]}), DEFECT_DESCRIPTION))

        effects = [spec.effects[x] for x in spec.defects if x != d]
        effects += [e for c in CATEGORIES.values() if c.name != category for e in c.effects.values()]
        own_pick = _choose(rng, effects[: len(spec.defects) - 1], 2, {info["effect"]})
        far_pick = _choose(rng, effects, 1, {info["effect"], *own_pick})
        conv.append(_mc(rng, Q_DA, info["effect"], own_pick + far_pick, DEFECT_ANALYSIS))

    conv.append(_mc(rng, Q_OC, spec.product, _choose(rng, PRODUCT_DISTRACTORS, 3, set()), OBJECT_CLASSIFICATION))
    oq = spec.object_questions[int(rng.integers(len(spec.object_questions)))]
    correct = oq.answers[facts[oq.answer_fact]]
    conv.append(_mc(rng, oq.text, correct, _choose(rng, oq.distractors, 3, {correct}), oq.raw_type))
    return conv
