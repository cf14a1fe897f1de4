"""Settings of the gateway (Inspector): planning, fan-out, stage addresses."""

from __future__ import annotations

from pydantic import Field, model_validator

from services.common.protocol import PRODUCT_EXPERT_MAP
from services.common.section import Section
from services.common.stage_client import StageEndpoint

# The product's map (services/common/protocol.py says what was measured); the `paper` protocol pins the paper's.
DEFAULT_EXPERT_MAP: dict[str, list[str]] = {k: list(v) for k, v in PRODUCT_EXPERT_MAP.items()}


class GatewaySettings(Section):
    embedding: StageEndpoint = Field(default_factory=lambda: StageEndpoint(timeout_share=0.3))
    retrieval: StageEndpoint = Field(default_factory=lambda: StageEndpoint(timeout_share=0.2))
    knowledge: StageEndpoint = Field(default_factory=lambda: StageEndpoint(timeout_share=0.3))
    decision: StageEndpoint = Field(default_factory=lambda: StageEndpoint(timeout_share=1.0, retries=0))
    evidence: StageEndpoint = Field(default_factory=lambda: StageEndpoint(timeout_share=0.3))
    expert_map: dict[str, list[str]] = Field(
        default_factory=lambda: {k: list(v) for k, v in DEFAULT_EXPERT_MAP.items()},
        description=(
            "Question type -> experts activated (reference, knowledge, reasoning, evidence). The decision maker "
            "always runs."
        ),
    )
    evidence_as_text: bool = Field(
        True,
        description=(
            "Give the Decision Maker the visual evidence as text: the anomaly score against the product's "
            "threshold, the verdict and the anomalous regions in MMAD's position words (the evidence stage's summary)."
        ),
    )
    evidence_as_image: bool = Field(
        False,
        description=(
            "Also give the Decision Maker the heat map over the query as an extra image (after the query image). "
            "One more image per prompt: it counts toward decision.max_images."
        ),
    )
    classify_defects: bool = Field(
        True,
        description=(
            "Defect Classification with the evidence expert on: also ask the product's defect library (operator-"
            "confirmed defects) for the nearest confirmed defects of the options' types. The trace carries their vote; "
            "decision.backend evidence answers from it (an empty library: FAILED_PRECONDITION naming what to add)."
        ),
    )
    defect_example: bool = Field(
        False,
        description=(
            "Defect Classification: give the Decision Maker the product's nearest confirmed defect as one more example "
            "image, with its type (needs classify_defects and the evidence expert; one more image per prompt, counted "
            "toward max_prompt_images). Off by default: whether it helps is decided by measurement only where an MLLM "
            "can run (docs/defects.md)."
        ),
    )
    hold_review_band: bool = Field(
        True,
        description=(
            "Where the evidence answers Anomaly Detection for a model that cannot judge (the offline random model, "
            "or a reply naming no option), a part in the review band answers Yes: it waits for the person who "
            "reviews it instead of passing unseen (about evidence.review_rate more normal parts held; the trace's "
            "review_reason says so). False: only the fail band answers Yes. A real model's answer is never "
            "replaced (docs/review.md)."
        ),
    )
    audit_evidence_images: bool = Field(
        True,
        description=(
            "With the audit log on, keep each inspection's heat map and overlay in the audit image store (the "
            "console shows the overlay); off: the record keeps the score, verdict and boxes only."
        ),
    )
    default_deadline_ms: float = Field(30_000, gt=0, description="Deadline when neither the request nor gRPC sets one.")
    default_reference_mode: str = Field("1-shot*", description="0-shot, 1-shot, 1-shot* or k-shot.")
    default_k_shots: int = Field(2, ge=1, description="References for k-shot when a request leaves k unset.")
    max_concurrent: int = Field(64, ge=1, description="Inspections in flight before new ones get RESOURCE_EXHAUSTED.")
    admission_deadline_share: float = Field(
        0.5,
        gt=0,
        le=1,
        description=(
            "Past capacity, an inspection expected (Little's law over recent ones) to take more than this share of "
            "its deadline gets RESOURCE_EXHAUSTED at once instead of queueing into a timeout."
        ),
    )
    admission_horizon_s: float = Field(
        15.0,
        gt=0,
        description=(
            "Admission control judges by the inspections answered in the last this many seconds, so an outage's "
            "slow answers stop counting soon after the stage is back."
        ),
    )
    max_deadline_ms: float = Field(
        3_600_000, gt=0, description="Longest settings.deadline_ms a request may ask; longer is INVALID_ARGUMENT."
    )
    max_prompt_images: int = Field(
        4,
        ge=1,
        description=(
            "Most images one decision prompt holds (the query, references, heat map): a request whose k_shots or "
            "references cannot fit is refused at the door. Must agree with decision.max_images (the decision "
            "stage's own limit); a settings tree where they differ is refused at start."
        ),
    )
    max_inflight_bytes: int = Field(
        2 * 1024**3,
        ge=1,
        description=(
            "Memory budget: decoded image bytes of the inspections in flight (width x height x channels from each "
            "image's header, before any pixels are allocated, times the copies the stages decode: limits.py); one that "
            "would pass it gets RESOURCE_EXHAUSTED. A lone inspection is always admitted."
        ),
    )
    max_pixels_per_byte: float = Field(
        100.0,
        gt=0,
        description=(
            "Decompression-ratio guard: an image over 4 megapixels with more decoded pixels per encoded byte than "
            "this (a flat PNG 'bomb': 36 MP in 120 KB is 300) is INVALID_ARGUMENT before it is decoded."
        ),
    )
    default_dataset: str = Field("", description="Dataset namespace used when a request names none (empty: any).")
    stage_token_file: str = Field(
        "",
        description=(
            "File holding the bearer token the gateway sends the stages when they check tokens (cluster mode; "
            "else $ECHO_IAD_STAGE_TOKEN). The embedded server mints its own."
        ),
    )
    refine_knowledge: bool = Field(
        False,
        description=(
            "Ask the Knowledge Guide for LLM-refined CSK (the paper's GPT-4o extraction, here the decision stage's "
            "model; cached, hand-reviewable: `echo-iad knowledge refine`, refine-export, refine-import)."
        ),
    )
    in_process: bool = Field(
        True,
        description=(
            "Embedded mode: call this process's own stages through an in-process channel (the same servicers, "
            "interceptors and token checks, serialized messages, deadlines and status codes, without the socket); "
            "false: through the gRPC port, as in the cluster."
        ),
    )
    planner_min_confidence: float = Field(
        0.35, ge=0, le=1, description="Below this, the free-form classifier's guess is flagged."
    )

    @model_validator(mode="after")
    def _k_fits_the_prompt(self) -> GatewaySettings:
        if self.default_k_shots > self.max_prompt_images - 1:
            raise ValueError(
                f"default_k_shots ({self.default_k_shots}) leaves no room for the query in a prompt of "
                f"max_prompt_images ({self.max_prompt_images})"
            )
        return self
