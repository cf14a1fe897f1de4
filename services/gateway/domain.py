"""The Inspector's plain values: what the core takes and gives, with no proto or gRPC type in them.

Field names follow the contract (echo.v1), so the servicer converts with one call
each way; enums are names here ("1-shot*", "csk", "Anomaly Detection", ...).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from services.common.values import Box, ProductCount

if TYPE_CHECKING:
    from services.knowledge.entries import Entry


@dataclass
class Inspection:
    """One question about one image (the domain form of InspectRequest); "" or 0 means the configured default."""

    line_id: str
    image: bytes
    question: str
    options: dict[str, str]
    question_type: str = ""  # MMAD's name; "" lets the planner classify the question
    dataset: str = ""
    category: str = ""  # "" is inferred from the memory
    request_id: str = ""
    reference_mode: str = ""  # 0-shot, 1-shot, 1-shot*, k-shot
    k_shots: int = 0
    knowledge_mode: str = ""  # none, dk, csk
    answer_format: str = ""  # multiple_choice, open_qa, true_false
    experts: dict[str, bool] = field(default_factory=dict)  # forced on or off (ablations)
    deadline_ms: float = 0.0
    return_prompt: bool = False
    seed: int = 0
    references: list[bytes] = field(default_factory=list)  # the caller's normal images (MMAD's 1-shot protocol)
    return_heatmap: bool = False  # put the evidence heat map and its overlay in the trace


@dataclass
class Reference:
    """A normal image found in memory."""

    id: str
    score: float
    uri: str
    category: str
    sha256: str


@dataclass
class Timing:
    stage: str
    ms: float
    compute_ms: float = 0.0


@dataclass
class HeatMap:
    """The anomaly map as 8-bit grey PNG at the query's size; pixel v means score v / 255 * scale."""

    png: bytes
    width: int
    height: int
    scale: float


@dataclass
class Evidence:
    """What the visual evidence expert found, and how it reached the Decision Maker (fields as TraceEvidence)."""

    score: float
    threshold: float
    anomalous: bool
    boxes: list[Box]
    backbone_id: str
    summary: str
    sent_as_text: bool = False
    sent_as_image: bool = False
    heatmap: HeatMap | None = None  # in the trace only when the request asks (settings.return_heatmap)
    overlay_png: bytes = b""  # likewise
    review_threshold: float = 0.0  # the review band's lower edge (== threshold, or 0: no band)
    band: str = ""  # pass, review or fail; "" when the evidence stage gives no band
    defect_type: str = ""  # Defect Classification: the nearest confirmed defects' type ("" when none answered)
    defect_summary: str = ""  # their vote in words, or why the library could not answer


@dataclass
class Trace:
    """What happened to answer a request: the audit record a plant engineer reads (fields as common.Trace)."""

    question_type: str = ""
    type_confidence: float = 0.0
    type_from_client: bool = False
    dataset: str = ""
    category: str = ""
    category_confidence: float = 0.0
    category_inferred: bool = False
    experts_used: list[str] = field(default_factory=list)
    references: list[Reference] = field(default_factory=list)
    knowledge_entry_ids: list[str] = field(default_factory=list)
    knowledge_passage_ids: list[str] = field(default_factory=list)
    timings: list[Timing] = field(default_factory=list)
    model_ids: dict[str, str] = field(default_factory=dict)
    degraded: list[str] = field(default_factory=list)
    prompt: str = ""
    unparsed: bool = False
    raw_reply: str = ""
    reasoning: str = ""
    reference_mode: str = ""
    knowledge_mode: str = ""
    answer_format: str = ""
    option_scores: dict[str, float] = field(default_factory=dict)
    prompt_sha256: str = ""
    evidence: Evidence | None = None
    verdict_source: str = ""  # where the answer's verdict comes from (services/gateway/verdict.py)
    evidence_disagrees: bool = False  # Anomaly Detection: a real model and the evidence disagree
    model_answer: str = ""  # the decision model's own letter when the evidence's replaced it
    review: str = ""  # "pending": a person should confirm this answer (services/gateway/review.py)
    review_reason: str = ""


@dataclass
class Passage:
    """A piece of knowledge given to the decision maker (fields as knowledge.Passage)."""

    id: str
    text: str
    score: float = 0.0


@dataclass
class InspectionResult:
    request_id: str
    answer: str  # an option letter, or "" when the reply named none
    answer_text: str
    trace: Trace
    # what the audit record keeps beyond the response
    image_sha256: str = ""
    knowledge: str = ""  # the knowledge text exactly as the decision maker saw it
    passages: list[Passage] = field(default_factory=list)
    evidence_images: EvidenceImages | None = None  # the heat map and overlay, whether or not the trace shows them


@dataclass
class EvidenceImages:
    """The evidence's images an audit record keeps (PNG bytes)."""

    heatmap: HeatMap
    overlay_png: bytes


@dataclass
class MemoryItem:
    """A normal image of a line's memory (fields as inspector.MemoryItem)."""

    id: str
    uri: str
    sha256: str
    line_id: str
    dataset: str
    category: str
    label: str


@dataclass
class MemoryListing:
    items: list[MemoryItem]
    total: int
    next_page_token: str


@dataclass
class Added:
    ids: list[str]
    added: int
    existing: int
    bank: BankState | None = None  # the product's evidence bank after the images joined it


@dataclass
class BankState:
    """A product's evidence bank: its normal images and calibrated threshold (0 below two images)."""

    images: int
    threshold: float
    added: int
    existing: int
    features: str = ""  # one line: the features the bank uses and why (its self-configuration record)


@dataclass
class Product:
    """A (dataset, category) on a line: its normal images, its knowledge entry, whether it can be inspected."""

    dataset: str
    category: str
    normal_images: int
    knowledge: Entry | None
    ready: bool
    readiness: str  # one line a person reads: why (not) ready, what to do
    evidence_bank_images: int = 0  # the evidence expert's bank of the same images (0: none, or the stage is down)
    evidence_threshold: float = 0.0
    evidence_features: str = ""  # the evidence bank's features and why (BankState.features)


# ---- what the stages answer (the stage-client layer turns their protos into these) -----------------------------
@dataclass
class Embedded:
    vectors: list[list[float]]
    model_id: str
    compute_ms: float
    preprocess_ms: float = 0.0


@dataclass
class EncoderInfo:
    """What the embedding stage embeds with; `texts`: it has a text tower (category prompts can be embedded)."""

    model_id: str
    dim: int
    texts: bool
    patch_tokens: bool = False


@dataclass
class CategoryGuess:
    category: str
    dataset: str
    confidence: float
    compute_ms: float


@dataclass
class MemoryStats:
    total: int
    categories: list[str]  # those holding at least one image, sorted
    items: list[MemoryItem]
    next_page_token: str
    counts: list[ProductCount] = field(default_factory=list)  # per (line, dataset, category), non-empty ones
    dim: int = 0
    engine: str = ""


@dataclass
class LineSummary:
    """A line with normal images in memory (fields as inspector.Line)."""

    line_id: str
    normal_images: int
    products: list[ProductCount]


@dataclass
class KnowledgeFound:
    """A product's knowledge entry as the knowledge contract's bytes (the gateway forwards it unread)."""

    entry: bytes
    degraded: list[str]


@dataclass
class Knowledge:
    text: str
    entry_ids: list[str]
    passage_ids: list[str]
    model_id: str
    compute_ms: float
    passages: list[Passage] = field(default_factory=list)


@dataclass
class DecisionAsk:
    """What the decision stage is asked (the domain form of DecideRequest)."""

    request_id: str
    image: bytes
    knowledge: str
    question: str
    options: dict[str, str]
    question_type: str
    reasoning: bool
    answer_format: str
    return_prompt: bool
    category: str
    reference_images: list[bytes] = field(default_factory=list)  # bytes, never paths: stages may not share a disk
    evidence: Evidence | None = None  # sent_as_text / sent_as_image say what the prompt shows
    evidence_overlay: bytes = b""  # the overlay as the extra image, when sent_as_image
    defect_example: bytes = b""  # the nearest confirmed defect's image (gateway.defect_example), after the others
    defect_example_type: str = ""


@dataclass
class DefectFound:
    """The defect library's answer for a query: the winning type, the vote in words, the nearest example."""

    defect_type: str
    summary: str
    example_image: bytes = b""  # only when asked
    example_type: str = ""


@dataclass
class Analyzed:
    """The evidence stage's answer: the evidence, its images when asked, and the stage's compute time."""

    evidence: Evidence
    images: EvidenceImages | None
    compute_ms: float


@dataclass
class Decided:
    answer: str
    unparsed: bool
    raw_reply: str
    reasoning: str
    prompt: str
    model_id: str
    compute_ms: float
    preprocess_ms: float
    scores: dict[str, float]
    prompt_sha256: str = ""
    model_kind: str = "mllm"  # DecideResponse.model_kind: "mllm", "random-weights", "evidence" or "baseline"
