"""Settings of the decision stage (Reasoning Expert + Decision Maker)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from services.common.protocol import MMAD_MAX_PIXELS
from services.common.section import Section


class VLLMSettings(Section):
    """vllm backend: a Ray Serve LLM deployment of Qwen2-VL / Qwen2.5-VL (GPU extra `[gpu]`)."""

    app_name: str = Field("echo-llm", description="Serve application that holds the LLM deployment.")
    deployment: str = Field(
        "",
        description="LLMServer deployment to call by handle; empty: Ray Serve LLM's default name for the model id.",
    )
    accelerator_type: str = Field("", description="Ray accelerator type for the replicas (e.g. H100); empty: any GPU.")
    min_replicas: int = Field(1, ge=0, description="Autoscaling: fewest engine replicas.")
    max_replicas: int = Field(1, ge=1, description="Autoscaling: most engine replicas.")
    max_ongoing_requests: int = Field(64, ge=1, description="Requests one replica accepts at once (vLLM batches them).")
    tensor_parallel_size: int = Field(1, ge=1, description="GPUs per engine replica.")
    gpu_memory_utilization: float = Field(0.85, gt=0, le=1, description="Share of GPU memory vLLM may take.")
    enable_prefix_caching: bool = Field(
        True,
        description=(
            "Reuse the KV cache of a shared prefix (the two-pass mode repeats the first pass's prompt). Turn off "
            "on vLLM versions that mixed up identical text with different images under concurrency."
        ),
    )
    dtype: str = Field("auto", description="vLLM dtype.")


class DecisionSettings(Section):
    backend: Literal["transformers", "openai", "vllm", "evidence", "random", "oracle"] = Field(
        "transformers",
        description=(
            "transformers: a local Qwen2-VL; openai: any OpenAI-compatible endpoint; vllm: Ray Serve LLM "
            "(GPU extra); evidence: no MLLM, Anomaly Detection and Defect Localization answered from the visual "
            "evidence expert alone (other types are refused; for lines without a GPU); random/oracle: baseline "
            "answerers that check the evaluation harness."
        ),
    )
    model: str = Field(
        "echo-tiny-qwen2-vl",
        description=(
            "Model path or id. 'echo-tiny-qwen2-vl' is the offline random-weight test model, built once and cached."
        ),
    )
    model_cache: str = Field("./echo-data/models", description="Where offline test models are built and cached.")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="transformers backend device.")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="transformers backend dtype; auto: bfloat16 on CUDA, float32 on CPU."
    )
    base_url: str = Field(
        "",
        description=(
            "openai backend: endpoint, e.g. http://localhost:8000/v1. vllm backend: when set, the Serve LLM "
            "app's OpenAI route (or a `vllm serve`) is called over HTTP instead of by deployment handle."
        ),
    )
    api_key: str = Field("EMPTY", description="openai backend: API key.")
    served_model: str = Field(
        "", description="openai/vllm backends: the model name the endpoint serves; empty: the model setting."
    )
    openai_constraint: Literal["structured_outputs", "response_format", "logit_bias", "none"] = Field(
        "structured_outputs",
        description=(
            "openai backend: how the answer is constrained to the option letters. structured_outputs: vLLM's "
            "`structured_outputs.choice`; response_format: an OpenAI JSON schema with an enum (hosted models); "
            "logit_bias: +100 on the letters' token ids (needs the tokenizer; works with `transformers serve`); "
            "none. The reply is parsed in every case."
        ),
    )
    tokenizer: str = Field(
        "", description="openai backend with logit_bias: tokenizer folder for the letter token ids; empty: the model."
    )
    prompt_style: Literal["mmad", "echo"] = Field(
        "mmad",
        description=(
            "mmad: the official MMAD query prompt for Qwen-VL (the protocol the paper measured), Echo's knowledge "
            "and reasoning where the paper puts them; echo: Echo-IAD's own wording with named sections."
        ),
    )
    max_pixels: int = Field(
        MMAD_MAX_PIXELS,
        ge=28 * 28,
        description=(
            "Every image is resized to at most this many pixels: one visual token per 28x28 block. MMAD's Qwen-VL "
            "script uses 1280*28*28 (about 1.0 MP); small defects vanish at 448*448 (0.2 MP)."
        ),
    )
    min_pixels: int = Field(
        56 * 56,
        ge=28 * 28,
        description="Every image is resized to at least this many pixels (Qwen2-VL's own floor; MMAD uses 64*28*28).",
    )
    max_images: int = Field(4, ge=1, description="Most images per prompt (vLLM limit_mm_per_prompt).")
    max_model_len: int = Field(8192, ge=256, description="Context limit in tokens.")
    max_reasoning_tokens: int = Field(
        512,
        ge=1,
        description=(
            "Reasoning Expert pass: most new tokens. 512 leaves room for the four guided steps (128 cut them "
            "short) and stays within what MMAD's scripts allow a reply (128 new tokens for Qwen, 600 for GPT-4V)."
        ),
    )
    max_answer_tokens: int = Field(16, ge=1, description="Open-QA answers: most new tokens.")
    answer_mode: Literal["constrained", "free"] = Field(
        "constrained",
        description=(
            "constrained: the answer is held to the option letters (Yes/No for true/false); free: generated like "
            "MMAD's scripts (up to free_answer_tokens) and parsed as MMAD does (the last A-E, then difflib)."
        ),
    )
    free_answer_tokens: int = Field(128, ge=1, description="answer_mode free: most new tokens (MMAD's max_new_tokens).")
    max_text_tokens: int = Field(256, ge=1, description="Complete RPC (knowledge refinement): default most new tokens.")
    max_batch_size: int = Field(8, ge=1, description="Local backend: concurrent requests that share a generate call.")
    max_wait_ms: float = Field(
        10.0,
        ge=0,
        description=(
            "Local backend: longest wait to fill a batch. It only waits while other decisions are in flight, "
            "so a lone request never waits."
        ),
    )
    timeout_s: float = Field(60.0, gt=0, description="Backend call timeout.")
    seed: int = Field(0, description="Seed for the random answerer and the random-weight test model.")
    oracle_data: str = Field("", description="oracle backend: the MMAD-format dataset whose answers it reads.")
    vllm: VLLMSettings = Field(default_factory=VLLMSettings)

    @model_validator(mode="after")
    def _pixel_budget_is_ordered(self) -> DecisionSettings:
        if self.min_pixels > self.max_pixels:
            raise ValueError(f"min_pixels ({self.min_pixels}) is above max_pixels ({self.max_pixels})")
        return self
