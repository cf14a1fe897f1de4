"""Context-specific extraction (CSK): the parts of an entry a question needs, within a token budget."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.knowledge.embedder import TokenCounter
from services.knowledge.entries import Entry, default_root, load_dir
from services.knowledge.relevance import (
    DEFECT_CLASSIFICATION,
    Extractor,
    guess_question_type,
    header,
    passages_of,
    piece,
    render,
)

Q_AD = "Is there any defect in the object?"
Q_DC = "There is a defect in the object. What is the type of the defect?"
Q_DL = "There is a defect in the object. Where is the defect?"
Q_DD = "There is a defect in the object. What is the appearance of the defect?"
Q_DA = "There is a defect in the object. What is the effect of the defect?"
DISTRACTORS = ("Dent", "Deformation", "Fold", "Burr")  # MMAD-style wrong answers that are no type of the product


def classification_questions(entry: Entry) -> list[dict[str, str]]:
    """Synthetic Defect Classification option sets, four options each, that name every defect type at least once
    (MMAD-style distractors fill up when a category has fewer than four types)."""
    names = [d.display_name for d in entry.defects]
    out = []
    for start in range(0, len(names), 4):
        opts = names[start : start + 4]
        opts += [n for n in names if n not in opts][: 4 - len(opts)]
        opts += list(DISTRACTORS[: 4 - len(opts)])
        out.append(dict(zip("ABCD", opts, strict=True)))
    return out


@pytest.fixture
def entries(kb_dir: Path) -> dict[str, Entry]:
    return load_dir(kb_dir)


def _all_entries(kb_dir: Path) -> list[Entry]:
    """The fixtures and every shipped entry (MVTec, VisA, Synthetic)."""
    return [*load_dir(kb_dir).values(), *load_dir(default_root()).values()]


@pytest.mark.slow  # MiniLM over every category's knowledge
def test_classification_csk_holds_every_options_knowledge_in_half_the_size(extractor: Extractor, kb_dir: Path):
    checked = 0
    for entry in _all_entries(kb_dir):
        full = extractor.full(entry).text
        for options in classification_questions(entry):
            csk = extractor.extract(entry, Q_DC, options, DEFECT_CLASSIFICATION, 256)
            for d in entry.defects:
                if d.display_name in options.values():
                    assert d.signature in csk.text, f"{entry.id}: {d.name} missing for {options}"
                    assert f"{entry.id}#{d.name}.signature" in {p.id for p in csk.passages}
            assert len(csk.text) <= len(full) / 2, f"{entry.id} {options}: {len(csk.text)} of {len(full)} chars"
            assert csk.tokens <= 256
            checked += 1
    assert checked >= 34  # the fixtures and the 31 shipped categories


def test_options_name_defects_through_synonyms_and_spelling(extractor: Extractor, entries: dict[str, Entry]):
    bottle = entries["MVTec/bottle"]
    assert extractor.extract(bottle, Q_DC, {"A": "Large breakage", "B": "No defect"}).defects == ("broken_large",)
    assert set(extractor.extract(bottle, Q_DC, {"A": "Crack"}).defects) == {"broken_large", "broken_small"}
    part = entries["Synthetic/round_part"]
    got = extractor.extract(part, Q_DC, {"A": "Fracture", "B": "Stain", "C": "Discolouration", "D": "None"})
    assert got.defects == ("crack", "contamination", "color_defect")
    assert extractor.extract(part, Q_DC, {"A": "Scratches", "B": "Yes."}).defects == ("scratch",)


def test_descriptive_options_imply_defects_by_meaning(extractor: Extractor, entries: dict[str, Entry]):
    part = entries["Synthetic/round_part"]
    options = {
        "A": "A thin bright line across the face.",
        "B": "A jagged dark line starting at the edge.",
        "C": "A round opening showing the background.",
        "D": "A bluish tinted patch.",
    }
    got = extractor.extract(part, Q_DD, options, "Defect Description", 256)
    assert set(got.defects) == {"scratch", "crack", "hole", "color_defect"}
    assert {p.field for p in got.passages} >= {"signature"}


def test_each_question_type_gets_the_fields_it_needs(extractor: Extractor, entries: dict[str, Entry]):
    part = entries["Synthetic/round_part"]
    loc = extractor.extract(part, Q_DL, {"A": "Top left.", "B": "Center.", "C": "On the outer edge."}, "", 256)
    assert loc.question_type == "Defect Localization"
    assert {p.field for p in loc.passages} == {"location"}
    assert len([p for p in loc.passages if p.field == "location"]) == len(part.defects)

    ana = extractor.extract(part, Q_DA, {"A": "The part can break under load.", "B": "Purely cosmetic."}, "", 256)
    assert ana.question_type == "Defect Analysis"
    assert "crack" in ana.defects
    crack_fields = {p.field for p in ana.passages if p.defect == "crack"}
    assert {"signature", "effect", "cause"} <= crack_fields

    cls = extractor.extract(part, Q_DC, {"A": "Scratch", "B": "Hole"}, DEFECT_CLASSIFICATION, 256)
    assert {p.field for p in cls.passages} >= {"signature", "look_alikes"}
    assert not any(p.defect is None for p in cls.passages)  # not a normality question


def test_normality_questions_get_the_normal_description(extractor: Extractor, entries: dict[str, Entry]):
    part = entries["Synthetic/round_part"]
    ad = extractor.extract(part, Q_AD, {"A": "Yes.", "B": "No."}, "", 256)
    assert ad.question_type == "Anomaly Detection"
    normal_ids = [p.id for p in ad.passages if p.defect is None]
    assert normal_ids == [p.id for p in passages_of(part) if p.defect is None]
    assert ad.text.startswith(f"{part.display_name}, normal appearance: ")
    obj = extractor.extract(part, "What kind of product is shown in the image?", {}, "Object Classification", 256)
    assert {p.field for p in obj.passages} == {"normal"}


def test_the_budget_is_a_hard_cap_that_shortens_before_it_drops(extractor: Extractor, entries: dict[str, Entry]):
    part = entries["Synthetic/round_part"]
    options = {"A": "Scratch", "B": "Crack", "C": "Hole", "D": "Contamination"}
    for budget in (16, 40, 80, 150, 400):
        got = extractor.extract(part, Q_DC, options, DEFECT_CLASSIFICATION, budget)
        assert got.tokens <= budget
        assert extractor.counter.count(got.text) == got.tokens
    tight = extractor.extract(part, Q_DC, options, DEFECT_CLASSIFICATION, 80)
    assert {p.defect for p in tight.passages} == {"scratch", "crack", "hole", "contamination"}  # all four, shortened
    assert any(p.text != part.defect(p.defect).signature for p in tight.passages)


def test_passages_name_their_source_and_render_in_schema_order(extractor: Extractor, entries: dict[str, Entry]):
    bottle = entries["MVTec/bottle"]
    got = extractor.extract(bottle, Q_DC, {"A": "Contamination", "B": "Large breakage"}, DEFECT_CLASSIFICATION, 256)
    ids = [p.id for p in got.passages]
    assert ids[0] == "MVTec/bottle#broken_large.signature"
    assert all(i.startswith("MVTec/bottle#") for i in ids)
    assert got.text == render(bottle, list(got.passages))
    assert got.text.index("Large breakage") < got.text.index("Contamination (contamination)")


def test_token_count_of_a_text_is_the_sum_of_its_pieces(counter: TokenCounter, entries: dict[str, Entry]):
    for entry in entries.values():
        ps = passages_of(entry)
        pieces = [header(entry, None), *(header(entry, d.name) for d in entry.defects), *(piece(p) for p in ps)]
        assert counter.count(render(entry, ps)) == sum(counter.count(x) for x in pieces)


def test_dk_is_the_whole_entry(extractor: Extractor, entries: dict[str, Entry]):
    bottle = entries["MVTec/bottle"]
    dk = extractor.full(bottle)
    assert len(dk.passages) == len(passages_of(bottle))
    for d in bottle.defects:
        for f in ("signature", "location", "look_alikes", "tolerance", "cause", "effect"):
            assert d.field(f) in dk.text


def test_question_types_are_guessed_from_mmad_phrasings():
    assert guess_question_type(Q_AD) == "Anomaly Detection"
    assert guess_question_type(Q_DC) == "Defect Classification"
    assert guess_question_type(Q_DL) == "Defect Localization"
    assert guess_question_type(Q_DD) == "Defect Description"
    assert guess_question_type(Q_DA) == "Defect Analysis"
