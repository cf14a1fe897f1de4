"""Decision planning: which question type is this, and which experts does it need?

MMAD's own phrasings are recognised by rule (confidence 1.0). Anything else goes
to a prototype classifier: the question is embedded with the offline MiniLM and
compared with hand-written prototypes of each type; lexical cues that sentence
embeddings blur add to a type's score, and so do the options (Yes/No points to
Anomaly Detection, defect names to Classification, positions to Localization;
see option_evidence.py). A softmax over the scores is the confidence.

Measured on wordings it was never tuned on: tests/gateway/planner_frozen_eval.jsonl
(written before tuning) against planner_tuning.jsonl; `loadtests/bench/planner.py`
prints both, with the lexical cues on and off.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from services.gateway.option_evidence import option_evidence

# MMAD's phrasings (docs/design.md §2), matched case-insensitively against the question text.
_RULES: list[tuple[str, re.Pattern[str]]] = [
    ("Anomaly Detection", re.compile(r"\b(is|are) there any (defects?|anomal\w*)\b.*\?")),
    ("Defect Classification", re.compile(r"\bwhat is the type of the defects?\b")),
    ("Defect Localization", re.compile(r"\bwhere is the defects?\b")),
    ("Defect Description", re.compile(r"\bwhat is the appearance of the defects?\b")),
    ("Defect Analysis", re.compile(r"\bwhat is the effect of the defects?\b")),
    ("Object Classification", re.compile(r"\bwhat (kind|type|category) of (product|object)\b")),
]

# Prototypes for free-form questions: a few ways an operator might ask each type.
PROTOTYPES: dict[str, list[str]] = {
    "Anomaly Detection": [
        "Is there any defect in the object?",
        "Is this part defective or good?",
        "Does the product have any anomaly?",
        "Is the item normal?",
        "Should this part be rejected?",
        "Is anything wrong with this product?",
        "Is this sample acceptable?",
        "Pass or fail?",
        "Is the object damaged in any way?",
        "Can you see any flaw on it?",
    ],
    "Defect Classification": [
        "What is the type of the defect?",
        "What kind of defect is this?",
        "Which category of flaw does the part show?",
        "Classify the defect.",
        "What defect class is present?",
        "Name the type of damage.",
        "Which failure mode is visible?",
        "What sort of fault is it?",
    ],
    "Defect Localization": [
        "Where is the defect?",
        "In which region of the image is the flaw?",
        "Where on the part is the damage located?",
        "Which area contains the anomaly?",
        "Point out the location of the defect.",
        "Is the defect at the top, bottom, left or right?",
        "Where exactly is the problem?",
        "Which part of the object is damaged?",
    ],
    "Defect Description": [
        "What is the appearance of the defect?",
        "What does the defect look like?",
        "Describe the defect.",
        "How would you describe the flaw visually?",
        "What shape and color is the damage?",
        "Describe how the anomaly appears.",
        "What are the visual characteristics of the defect?",
        "How does the damage look?",
    ],
    "Defect Analysis": [
        "What is the effect of the defect?",
        "How does the defect affect the product's function?",
        "What are the consequences of this damage?",
        "What impact will the flaw have on use?",
        "Is the defect a safety risk?",
        "What problem will this defect cause?",
        "Why does this defect matter?",
        "What is the likely cause of the defect?",
    ],
    "Object Classification": [
        "What kind of product is in the image?",
        "What is this object?",
        "What type of item is shown?",
        "Identify the product.",
        "Which product category is this?",
        "What object is being inspected?",
        "What is shown in the picture?",
        "Name the item in the image.",
    ],
    "Object Analysis": [
        "How many components are on the object?",
        "What is the shape of the object?",
        "What color is the object?",
        "What material is the object made of?",
        "Describe the structure of the object.",
        "What details are visible on the object?",
        "How many holes does the part have?",
        "What is printed on the object?",
        "How is the object arranged?",
        "What is the texture of the surface?",
    ],
}

Embed = Callable[[Sequence[str]], np.ndarray]

_DEFECT_WORDS = r"(defects?|defective|flaws?|damage\w*|faults?|anomal\w*|scratch\w*|cracks?|stains?|marks?|problem)"
# Lexical cues that sentence embeddings blur (e.g. "where" vs "what"): each hit adds CUE_BONUS to that type.
_CUES: dict[str, list[re.Pattern[str]]] = {
    "Anomaly Detection": [
        re.compile(
            r"\b(defective|faulty|flawless|reject\w*|pass\w*|ok|okay|acceptable|abnormal|normal|good or bad|"
            r"free of|anything (wrong|off|abnormal)|something (wrong|off)|ship)\b"
        ),
        re.compile(r"^(is|are|does|do|can|would|should|any)\b"),
    ],
    "Defect Classification": [
        re.compile(rf"\b(type|kind|class|category|categori\w+|name|sort)\b.*\b{_DEFECT_WORDS}"),
        re.compile(rf"\b{_DEFECT_WORDS}\s+(type|class|category)\b"),
        re.compile(r"\bis it an? \w+,? (an? )?\w+ or\b"),
        re.compile(r"\b(classify|categori[sz]e|identify the defect)\b"),
    ],
    "Defect Localization": [
        re.compile(r"\b(where|locat\w*|position|region|corner|area|side|edge or|near the)\b"),
    ],
    "Defect Description": [
        re.compile(
            r"\b(look\w*|appearance|appear\w*|describ\w*|visual\w*|traits?|characteri[sz]\w*|form|"
            r"shape and colou?r|colou?r and (shape|size))\b"
        ),
    ],
    "Defect Analysis": [
        re.compile(
            r"\b(effect|impact|affect\w*|consequences?|lead to|dangerous|danger|safety|risk|failure|function\w*|"
            r"performance|happens if|quality|why)\b"
        ),
    ],
    "Object Classification": [
        re.compile(r"\b(what|which)( kind of| type of)? (product|object|item|thing)\b"),
        re.compile(r"\b(identify|name) the (object|product|item)\b"),
        re.compile(r"\bwhat is this( thing| item| object| product)?\b"),
    ],
    "Object Analysis": [
        re.compile(
            r"\b(how many|colou?r|material|made (of|from)|shape|texture|structure|printed|text|arranged|arrangement|"
            r"consist\w*|interlaced|woven|inside|contain\w*|contents|components|ingredients)\b"
        ),
        # "what kind of head does the screw have?": a kind of some part, not of product or defect
        re.compile(
            r"\b(what|which) (kind|type|sort) of (?!(product|object|item|thing)s?\b)(?!" + _DEFECT_WORDS + r")\w+"
        ),
    ],
}
EXPERTS = ("reference", "knowledge", "reasoning", "evidence")
"""The optional experts, in the order the trace lists them; the decision maker always runs."""
CUE_BONUS = 0.12
OPTION_WEIGHT = 0.2  # score added per type at full option evidence (every option looks like that type's answers)


@dataclass(frozen=True)
class TypeGuess:
    type: str
    confidence: float
    method: str  # "client", "rule" or "prototype"


@dataclass(frozen=True)
class Plan:
    """What one inspection will run."""

    question_type: TypeGuess
    experts: tuple[str, ...]  # subset of EXPERTS; decision always runs
    disabled_by_request: tuple[str, ...] = field(default=())


class QuestionTypeClassifier:
    """Rules for MMAD phrasings; a MiniLM prototype classifier, lexical cues and the options for the rest.

    Args:
        embed: sentence embedder (None: rules only; anything else is guessed as Anomaly Detection).
        prototypes: example questions per type.
        cues: add the lexical cues' bonus (off: prototypes and options only, for measuring what cues add).
        defect_names: normalised defect names (option_evidence.name_vocabulary) that mark an option as a
            defect type, beyond the generic vocabulary.
        product_names: normalised product names that mark an option as a product, likewise.
    """

    def __init__(
        self,
        embed: Embed | None = None,
        prototypes: dict[str, list[str]] | None = None,
        *,
        cues: bool = True,
        defect_names: set[str] | None = None,
        product_names: set[str] | None = None,
    ) -> None:
        self._embed = embed
        self._prototypes = prototypes or PROTOTYPES
        self.cues = cues
        self.defect_names = defect_names or set()
        self.product_names = product_names or set()
        self._labels: list[str] = []
        self._matrix: np.ndarray | None = None

    def _ensure_prototypes(self) -> None:
        if self._matrix is not None or self._embed is None:
            return
        texts, labels = [], []
        for label, examples in self._prototypes.items():
            texts.extend(examples)
            labels.extend([label] * len(examples))
        vecs = np.asarray(self._embed(texts), dtype=np.float32)
        self._matrix = vecs / np.linalg.norm(vecs, axis=1, keepdims=True)
        self._labels = labels

    @staticmethod
    def by_rule(text: str) -> str | None:
        low = " ".join(text.lower().split())
        for label, pattern in _RULES:
            if pattern.search(low):
                return label
        return None

    def classify(self, text: str, options: Mapping[str, str] | None = None) -> TypeGuess:
        label = self.by_rule(text)
        if label is not None:
            return TypeGuess(label, 1.0, "rule")
        if self._embed is None:
            return TypeGuess("Anomaly Detection", 0.0, "default")
        self._ensure_prototypes()
        assert self._matrix is not None
        q = np.asarray(self._embed([text]), dtype=np.float32)[0]
        q = q / (np.linalg.norm(q) or 1.0)
        sims = self._matrix @ q
        # Per type: mean of its three best prototype similarities (robust to one odd prototype),
        # plus a bonus per lexical cue of that type.
        scores = {}
        for label in self._prototypes:
            idx = [i for i, lab in enumerate(self._labels) if lab == label]
            top = np.sort(sims[idx])[-3:]
            scores[label] = float(top.mean())
        if self.cues:
            low = " ".join(text.lower().split())
            has_defect_word = re.search(rf"\b{_DEFECT_WORDS}", low) is not None
            for label, patterns in _CUES.items():
                scores[label] += CUE_BONUS * sum(bool(p.search(low)) for p in patterns)
            if has_defect_word:  # object questions are about the product, not its flaws
                scores["Object Classification"] -= CUE_BONUS
                scores["Object Analysis"] -= CUE_BONUS
            else:  # "what does the surface look like?" asks about the object, not a defect's appearance
                scores["Defect Description"] -= CUE_BONUS
        for label, share in option_evidence(options or {}, self.defect_names, self.product_names).items():
            scores[label] += OPTION_WEIGHT * share
        names = list(scores)
        vals = np.array([scores[n] for n in names])
        probs = np.exp((vals - vals.max()) / 0.05)
        probs /= probs.sum()
        best = int(np.argmax(probs))
        return TypeGuess(names[best], float(probs[best]), "prototype")


def plan_experts(
    question_type: TypeGuess,
    expert_map: dict[str, list[str]],
    switches: dict[str, bool | None],
) -> Plan:
    """Experts from the configured map, then per-request switches force each on or off."""
    chosen = list(expert_map.get(question_type.type, []))
    disabled = []
    for expert in EXPERTS:
        forced = switches.get(expert)
        if forced is True and expert not in chosen:
            chosen.append(expert)
        elif forced is False and expert in chosen:
            chosen.remove(expert)
            disabled.append(expert)
    return Plan(question_type, tuple(e for e in EXPERTS if e in chosen), tuple(disabled))
