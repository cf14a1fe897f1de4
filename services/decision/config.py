"""Settings of the decision stage (Reasoning Expert + Decision Maker)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class DecisionSettings(BaseModel):
    backend: Literal["transformers", "openai", "vllm", "random", "oracle"] = Field(
        "transformers",
        description=(
            "transformers: a local Qwen2-VL; openai: any OpenAI-compatible endpoint; vllm: Ray Serve LLM "
            "(GPU extra); random/oracle: baseline answerers that check the evaluation harness."
        ),
    )
    model: str = Field(
        "echo-tiny-qwen2-vl",
        description="Model path or id. 'echo-tiny-qwen2-vl' is the offline random-weight test model, built once and cached.",
    )
    model_cache: str = Field("./echo-data/models", description="Where offline test models are built and cached.")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="transformers backend device.")
    base_url: str = Field("", description="openai backend: endpoint, e.g. http://localhost:8000/v1.")
    api_key: str = Field("EMPTY", description="openai backend: API key.")
    max_pixels: int = Field(448 * 448, ge=28 * 28, description="Every image is resized to at most this many pixels.")
    min_pixels: int = Field(56 * 56, ge=28 * 28, description="Every image is resized to at least this many pixels.")
    max_images: int = Field(4, ge=1, description="Most images per prompt (vLLM limit_mm_per_prompt).")
    max_model_len: int = Field(8192, ge=256, description="Context limit in tokens.")
    max_reasoning_tokens: int = Field(128, ge=1, description="Reasoning Expert pass: most new tokens.")
    max_answer_tokens: int = Field(16, ge=1, description="Open-QA answers: most new tokens.")
    max_batch_size: int = Field(8, ge=1, description="Local backend: concurrent requests that share a generate call.")
    max_wait_ms: float = Field(10.0, ge=0, description="Local backend: longest wait to fill a batch.")
    timeout_s: float = Field(60.0, gt=0, description="Backend call timeout.")
    seed: int = Field(0, description="Seed for the random answerer and the random-weight test model.")
    oracle_data: str = Field("", description="oracle backend: the MMAD-format dataset whose answers it reads.")
