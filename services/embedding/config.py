"""Settings of the embedding stage (open_clip image and text towers)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class EmbeddingSettings(BaseModel):
    model: str = Field(
        "echo-tiny-clip",
        description="open_clip model name, e.g. ViT-B-16. 'echo-tiny-clip' is the offline random-weight test model.",
    )
    weights: str = Field(
        "random",
        description=(
            "Weights source: an open_clip pretrained tag (e.g. 'openai', read from the local hub cache), "
            "a checkpoint path, 'local-dir:DIR' (an open_clip hub-style folder), or 'random' "
            "(random init; only for offline tests)."
        ),
    )
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto: CUDA when present, else CPU.")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field("auto", description="auto: bf16 on CUDA, fp32 on CPU.")
    max_batch_size: int = Field(32, ge=1, description="Dynamic batching: most images per model call.")
    max_wait_ms: float = Field(5.0, ge=0, description="Dynamic batching: longest wait to fill a batch.")
    gpu_decode: bool = Field(True, description="On CUDA, decode JPEG/PNG with nvjpeg; falls back to the CPU.")
    preprocess_workers: int = Field(2, ge=1, description="Threads that decode and resize off the event loop.")
    seed: int = Field(0, description="Seed for the random-weight test model, so every replica agrees.")
