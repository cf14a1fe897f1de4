"""The MMAD vocabulary: question types and the two records every part of Echo passes around.

MMAD ships seven question kinds but spells the last one two ways ("Object Structure",
"Object Details"); Echo, like the paper, treats them as one type, "Object Analysis".
"""

from __future__ import annotations

from dataclasses import dataclass, field

ANOMALY_DETECTION = "Anomaly Detection"
DEFECT_CLASSIFICATION = "Defect Classification"
DEFECT_LOCALIZATION = "Defect Localization"
DEFECT_DESCRIPTION = "Defect Description"
DEFECT_ANALYSIS = "Defect Analysis"
OBJECT_CLASSIFICATION = "Object Classification"
OBJECT_ANALYSIS = "Object Analysis"

QUESTION_TYPES: tuple[str, ...] = (
    ANOMALY_DETECTION,
    DEFECT_CLASSIFICATION,
    DEFECT_LOCALIZATION,
    DEFECT_DESCRIPTION,
    DEFECT_ANALYSIS,
    OBJECT_CLASSIFICATION,
    OBJECT_ANALYSIS,
)
"""The seven canonical types, in MMAD's (and the paper table's) column order."""

DEFECT_TYPES: tuple[str, ...] = QUESTION_TYPES[1:5]
"""Types that are only asked about anomalous images."""

# Raw spellings found in mmad.json -> canonical type.
_ALIASES: dict[str, str] = {t.lower(): t for t in QUESTION_TYPES}
_ALIASES.update({"object structure": OBJECT_ANALYSIS, "object details": OBJECT_ANALYSIS})

# MMAD's query datasets -> their key in domain_knowledge.json.
KNOWLEDGE_DATASET_KEYS: dict[str, str] = {"DS-MVTec": "MVTec", "MVTec-AD": "MVTec"}


def canonical_type(raw: str) -> str | None:
    """Canonical name of a raw mmad.json `type` (case and surrounding space ignored); None if unknown."""
    if not isinstance(raw, str):
        return None
    return _ALIASES.get(" ".join(raw.split()).lower())


def knowledge_dataset_key(dataset: str) -> str:
    """The domain_knowledge.json key for a query dataset (DS-MVTec -> MVTec; others map to themselves)."""
    return KNOWLEDGE_DATASET_KEYS.get(dataset, dataset)


@dataclass
class Question:
    """One multiple-choice question about one image.

    Attributes:
        id: "<image_path>#<index in the conversation>", stable across loads.
        text: the question as written in mmad.json.
        options: letter -> option text, in file order.
        answer: the gold letter.
        type: canonical type, or the raw type when it is unknown.
        raw_type: the type string exactly as in the file.
    """

    id: str
    text: str
    options: dict[str, str]
    answer: str
    type: str
    raw_type: str

    @property
    def known_type(self) -> bool:
        return self.type in QUESTION_TYPES

    def prompt(self) -> str:
        """The question with its lettered options, one per line, as MMAD's reference harness builds it."""
        lines = [self.text, *(f"{k}: {v}" for k, v in self.options.items())]
        return "\n".join(lines)


@dataclass
class Sample:
    """One query image with its templates, mask and questions (one mmad.json entry).

    Paths are relative to the dataset root (the folder holding mmad.json).
    """

    image_path: str
    dataset: str
    category: str
    is_normal: bool
    mask_path: str | None
    similar_templates: list[str] = field(default_factory=list)
    random_templates: list[str] = field(default_factory=list)
    questions: list[Question] = field(default_factory=list)

    @property
    def defect_type(self) -> str:
        """The folder naming the defect ("good" for normal images): broken_large in .../image/broken_large/000.png."""
        parts = self.image_path.split("/")
        return parts[-2] if len(parts) >= 2 else ""
